#!/usr/bin/env bash
# oft faces / landmarks / eval landmarks end to end; prints TAP. Usage: test-cli-faces.sh OFT_EXE
# (OFT_GOLDEN_DIR points at the golden data). Checks that need opencv-data / libdlib-data are
# skipped, saying so, when those Debian packages are absent.
set -u
OFT=$1
. "$(dirname "$0")/tap.sh"
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}/conditions
CASCADE=/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml
PREDICTOR=/usr/share/dlib/shape_predictor_68_face_landmarks.dat
skip () { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
# python3 reads JSON; the golden numbers come from the manifest
py () { python3 -c "$@"; }

expect_fail "missing cascade names opencv-data" "opencv-data" "$OFT" faces "$G/images/astronaut.png" --cascade "$T/none.xml"
expect_fail "missing predictor names libdlib-data" "libdlib-data" \
  "$OFT" landmarks "$G/images/astronaut.png" --box 1,1,50,50 --predictor "$T/none.dat" --json "$T/x.json"
expect_fail "landmarks needs --json" "--json" "$OFT" landmarks "$G/images/astronaut.png"
expect_fail "a bad --box is refused" "X,Y,W,H" "$OFT" landmarks "$G/images/astronaut.png" --box 1,2,3 --json "$T/x.json"

if [ -f "$CASCADE" ]; then
  run "$OFT" faces "$G/images/grace_hopper.png"
  if [ $rc -eq 0 ] && py "
import json,sys
got=json.load(open('$T/out')); want=json.load(open('$G/faces/manifest.json'))['faces']['grace_hopper']['haar']['boxes_xywh']
sys.exit(0 if got==want else 1)"; then ok "faces: grace_hopper boxes equal OpenCV's"; else not_ok "faces: grace_hopper boxes equal OpenCV's"; fi
  python3 -c "
import struct,zlib
w,h=120,90
raw=b''.join(b'\x00'+bytes([128])*w for _ in range(h))
def chunk(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
open('$T/flat.png','wb').write(b'\x89PNG\r\n\x1a\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',w,h,8,0,0,0,0))+chunk(b'IDAT',zlib.compress(raw))+chunk(b'IEND',b''))"
  run "$OFT" faces "$T/flat.png"
  if [ $rc -eq 0 ] && grep -qx '\[\]' "$T/out" && grep -q "no face found" "$T/err"; then ok "faces: flat image prints [] and says no face"; else not_ok "faces: flat image prints [] and says no face"; fi
  if [ -f "$PREDICTOR" ]; then
    expect_fail "landmarks without a face asks for --box" "no face found.*--box" "$OFT" landmarks "$T/flat.png" --json "$T/x.json"
    [ -e "$T/x.json" ] && not_ok "no JSON written for a failed run" || ok "no JSON written for a failed run"
  else skip "landmarks without a face" "$PREDICTOR missing (libdlib-data)"; fi
else
  skip "faces checks" "$CASCADE missing (opencv-data)"
fi

if [ -f "$PREDICTOR" ]; then
  # the golden Haar box of astronaut: points equal dlib's, the render equals the golden condition image
  run "$OFT" landmarks "$G/images/astronaut.png" --box 177,66,95,95 --json "$T/a.json" --render "$T/a.png"
  if [ $rc -eq 0 ] && py "
import json,sys
got=json.load(open('$T/a.json')); c=json.load(open('$G/faces/manifest.json'))['faces']['astronaut']['landmarks']['haar_rgb']
pts=[v for p in got['points'] for v in p]
ok = got['box']==[177,66,95,95] and len(got['points'])==68 and max(abs(a-b) for a,b in zip(pts,c['parts_float']))<2e-6 \
     and [int((v+0.5)//1) for v in pts]==c['parts']
sys.exit(0 if ok else 1)"; then ok "landmarks --box: dlib's points"; else not_ok "landmarks --box: dlib's points"; fi
  # pixel equality with the golden image is checked by test-faces (/faces/render); here: a PNG was written
  if [ $rc -eq 0 ] && [ "$(head -c 8 "$T/a.png" | od -An -tx1 | tr -d ' ')" = "89504e470d0a1a0a" ]; then
    ok "landmarks --render writes a PNG"; else not_ok "landmarks --render writes a PNG"; fi
  # landmark-error example: shifted image, same box
  run "$OFT" landmarks "$G/faces/astronaut__shift_dx3_dy0.png" --box 177,66,95,95 --json "$T/s.json"
  run "$OFT" eval landmarks "$T/s.json" "$T/a.json"
  want=$(py "import json; print(json.load(open('$G/faces/manifest.json'))['landmark_error_example']['same_box']['error_float'])")
  if [ $rc -eq 0 ] && py "import sys; sys.exit(0 if abs(float(open('$T/out').read())-$want)<1e-6 else 1)"; then
    ok "eval landmarks files: the golden error_float"; else not_ok "eval landmarks files: the golden error_float ($want)"; fi
  # folders: mean of per-pair errors
  mkdir -p "$T/A" "$T/B"; cp "$T/a.json" "$T/A/1.json"; cp "$T/s.json" "$T/B/1.json"; cp "$T/a.json" "$T/A/2.json"; cp "$T/a.json" "$T/B/2.json"
  run "$OFT" eval landmarks "$T/A" "$T/B"
  if [ $rc -eq 0 ] && py "import sys; v=float(open('$T/out').read().split()[-1]); sys.exit(0 if abs(v-$want/2)<1e-6 else 1)"; then
    ok "eval landmarks folders: mean over pairs"; else not_ok "eval landmarks folders: mean over pairs"; fi
  rm "$T/B/2.json"
  expect_fail "eval landmarks folders: a missing counterpart is named" "2.json" "$OFT" eval landmarks "$T/A" "$T/B"
  if [ -f "$CASCADE" ]; then
    run "$OFT" landmarks "$G/images/grace_hopper.png" --json "$T/g.json"
    if [ $rc -eq 0 ] && py "
import json,sys
got=json.load(open('$T/g.json')); c=json.load(open('$G/faces/manifest.json'))['faces']['grace_hopper']['landmarks']['haar_rgb']
sys.exit(0 if got['box']==[130,89,192,192] and [int((v+0.5)//1) for p in got['points'] for v in p]==c['parts'] else 1)"; then
      ok "landmarks without --box uses the largest Haar face"; else not_ok "landmarks without --box uses the largest Haar face"; fi
  fi
else
  skip "landmarks checks" "$PREDICTOR missing (libdlib-data)"
fi
echo '{"points": [[1, 2]]}' > "$T/one.json"
echo '{"points": [[1, 2], [3, 4]]}' > "$T/two.json"
expect_fail "eval landmarks: different point counts" "1 points.*2" "$OFT" eval landmarks "$T/one.json" "$T/two.json"
echo '{"box": []}' > "$T/bad.json"
expect_fail "eval landmarks: a file without points is named" "bad.json" "$OFT" eval landmarks "$T/bad.json" "$T/two.json"

finish
