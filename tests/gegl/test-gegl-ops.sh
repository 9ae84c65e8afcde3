#!/usr/bin/env bash
# The oft: GEGL operations run by the gegl CLI and compared with gegl-imgcmp; prints TAP.
# Usage: test-gegl-ops.sh GEGL GEGL_IMGCMP MODULE_DIR GEGL_PLUGINS_DIR OFT_EXE
# (OFT_GOLDEN_DIR points at the golden data). Without the gegl CLI (Debian package gegl) every case
# is skipped, saying so; cases that need opencv-data / libdlib-data skip without them.
set -u
GEGL=$1 IMGCMP=$2 MODDIR=$3 PLUGINS=$4 OFT=$5
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}
C=$G/conditions
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

n=0
fails=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
skip () { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
not_ok () { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$T/out" "$T/err" 2>/dev/null; }
run () { "$@" >"$T/out" 2>"$T/err"; rc=$?; }

if [ -z "$GEGL" ] || [ ! -x "$GEGL" ] || [ -z "$IMGCMP" ] || [ ! -x "$IMGCMP" ]; then
  echo "1..1"
  echo "ok 1 - gegl operations # SKIP the gegl CLI / gegl-imgcmp are not installed (Debian package gegl)"
  exit 0
fi

# GEGL_PATH replaces GEGL's module path: keep its own operations (load, png-save, ...) on it. A private
# XDG_DATA_HOME keeps a per-user installed gegl-oft out (the same type names would clash).
export GEGL_PATH="$MODDIR:$PLUGINS"
export XDG_DATA_HOME="$T/xdg" XDG_CACHE_HOME="$T/cache" GEGL_SWAP=RAM
unset OFT_MODEL
# A sanitizer build of the module inside the uninstrumented gegl CLI: the ASan runtime has to be
# loaded first; GEGL's own buffers still alive at exit are not ours to report.
asan=$(ldd "$MODDIR/gegl-oft.so" 2>/dev/null | awk '/libasan/ { print $3 }')
if [ -n "$asan" ]; then
  # (the later of repeated options wins: ours go last)
  export LD_PRELOAD="$asan" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi

# gegl_to OUT OPS...: run a chain into OUT (exit status in $rc, messages in $T/err)
gegl_to () { local out=$1; shift; rm -f "$out"; run "$GEGL" -o "$out" -- "$@"; }
crashed () { [ "$rc" -ge 128 ]; }
# same WHAT A B: the pixels are equal (gegl-imgcmp with error 0 exits 0 only when no pixel differs)
same () {
  if [ "$rc" -eq 0 ] && [ -f "$2" ] && "$IMGCMP" "$2" "$3" 0 >>"$T/out" 2>&1; then ok "$1"; else not_ok "$1 (gegl exit $rc)"; fi
}

# ---- registration -------------------------------------------------------------------------------
run "$GEGL" --list-all
missing=""
for op in oft:canny oft:segmap oft:landmarks oft:generate; do
  grep -qx "$op" "$T/out" || missing="$missing $op"
done
if [ $rc -eq 0 ] && [ -z "$missing" ]; then ok "gegl --list-all lists the four oft: operations"; else not_ok "registered (missing:$missing)"; fi

# (the categories GIMP's GEGL tool shows are checked by test-gegl-generate, through the GEGL API)

# ---- oft:canny against cv2.Canny's goldens --------------------------------------------------------
canny_case () {
  local name=$1 input=$2 variant=$3; shift 3
  gegl_to "$T/c.png" load path="$C/images/$input.png" oft:canny "$@"
  same "oft:canny $* on $input = canny/${name}__$variant.png" "$T/c.png" "$C/canny/${name}__$variant.png"
}
canny_case astronaut astronaut rgb100_200 low=100 high=200
canny_case astronaut astronaut_gray g100_200
canny_case grace_hopper grace_hopper_gray g50_150_l2 low=50 high=150 l2=true
canny_case rocket rocket_gray g400_1000_k5 low=400 high=1000 aperture=5
canny_case chelsea chelsea blur_g100_200 gray=true blur=true

# ---- oft:segmap against oft segmap ----------------------------------------------------------------
run "$OFT" segmap "$C/seg/painted.png" "$T/seg-cli.png"
if [ $rc -ne 0 ]; then
  not_ok "oft segmap painted.png (the reference) failed"
else
  gegl_to "$T/seg.png" load path="$C/seg/painted.png" oft:segmap
  same "oft:segmap on seg/painted.png = oft segmap's output" "$T/seg.png" "$T/seg-cli.png"
fi

# ---- oft:landmarks against the golden condition images ---------------------------------------------
if [ -f /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml ] &&
   [ -f /usr/share/dlib/shape_predictor_68_face_landmarks.dat ]; then
  gegl_to "$T/lm.png" load path="$C/images/astronaut.png" oft:landmarks
  same "oft:landmarks (detected face) on astronaut = faces/astronaut__landmarks.png" "$T/lm.png" \
    "$C/faces/astronaut__landmarks.png"
  # the golden's Haar box given explicitly: faces/manifest.json grace_hopper haar.used_box_xywh
  box=$(python3 -c "import json; b=json.load(open('$C/faces/manifest.json'))['faces']['grace_hopper']['haar']['used_box_xywh']; print('box-x=%d box-y=%d box-width=%d box-height=%d' % tuple(b))")
  # shellcheck disable=SC2086
  gegl_to "$T/lm.png" load path="$C/images/grace_hopper.png" oft:landmarks $box
  same "oft:landmarks $box on grace_hopper = faces/grace_hopper__landmarks.png" "$T/lm.png" \
    "$C/faces/grace_hopper__landmarks.png"
  gegl_to "$T/lm.png" load path="$C/images/astronaut.png" oft:landmarks predictor="$T/none.dat"
  if ! crashed && grep -q "libdlib-data" "$T/err"; then ok "oft:landmarks: a missing predictor warns naming libdlib-data"
  else not_ok "oft:landmarks: missing predictor (exit $rc)"; fi
else
  skip "oft:landmarks" "opencv-data or libdlib-data is not installed"
fi

# ---- oft:generate against oft generate (tiny golden pipeline) ---------------------------------------
P=$G/pipeline
gen_args=(prompt="a red fox in the snow" negative="blurry" seed=42 steps=2 width=128 height=128)
run "$OFT" generate -m "$P" -p "a red fox in the snow" -n "blurry" --seed 42 --steps 2 -W 128 -H 128 -o "$T/gen-cli.png"
gen_ok=$rc
run "$OFT" generate -m "$P" -p "a red fox in the snow" -n "blurry" --seed 42 --steps 2 -W 128 -H 128 -s euler \
  -o "$T/gen-cli-euler.png"
gen_ok=$((gen_ok + rc))
# oft:generate outputs floats; `oft generate` rounds half to even (numpy) and babl's float→u8 rounds a
# few values the other way: one 8-bit level is under 1 ΔE, so gegl-imgcmp gets a threshold of 1.
# (test-gegl-generate compares the floats themselves, exactly.)
near () {
  if [ "$rc" -eq 0 ] && [ -f "$2" ] && "$IMGCMP" "$2" "$3" 1 >>"$T/out" 2>&1; then ok "$1"; else not_ok "$1 (gegl exit $rc)"; fi
}
if [ $gen_ok -ne 0 ]; then
  not_ok "oft generate (the reference) failed"
else
  gegl_to "$T/gen.png" oft:generate model="$P" "${gen_args[@]}" gegl:convert-format format="R'G'B'A u8"
  near "oft:generate as a source = oft generate (128×128, 2 DDIM steps)" "$T/gen.png" "$T/gen-cli.png"
  gegl_to "$T/gen.png" load path="$C/images/astronaut.png" oft:generate model="$P" "${gen_args[@]}" \
    scheduler=euler gegl:convert-format format="R'G'B'A u8"
  w=$(file "$T/gen.png" 2>/dev/null)
  case "$w" in *"128 x 128"*) size=ok ;; *) size="" ;; esac
  if [ -n "$size" ]; then
    near "oft:generate as a filter (input ignored, scheduler=euler) = oft generate -s euler, 128×128" "$T/gen.png" \
      "$T/gen-cli-euler.png"
  else
    not_ok "oft:generate as a filter: output is 128×128 ($w)"
  fi
fi

# ---- bad settings: a warning, no crash ------------------------------------------------------------
warns () {
  local what=$1 pat=$2; shift 2
  gegl_to "$T/bad.png" "$@"
  if ! crashed && grep -Eq -- "$pat" "$T/err"; then ok "$what"; else not_ok "$what (exit $rc, wanted /$pat/)"; fi
}
warns "oft:canny aperture=4 warns" "aperture 4: expected 3, 5 or 7" \
  load path="$C/images/astronaut.png" oft:canny aperture=4
warns "oft:generate with a missing model file warns naming it" "$T/none" \
  oft:generate model="$T/none" prompt=x steps=2 width=128 height=128
# no model property and no $OFT_MODEL: the bundled default model (data/default-model, 64×64), as `oft generate`
# without --model draws it
run "$OFT" generate -p "a red circle on a blue background" --seed 42 --steps 2 -o "$T/def-cli.png"
if [ "$rc" -ne 0 ]; then
  not_ok "oft generate without --model (the reference) failed"
else
  env -u OFT_MODEL "$GEGL" -o "$T/def.png" -- oft:generate prompt="a red circle on a blue background" seed=42 steps=2 \
    width=64 height=64 gegl:convert-format format="R'G'B'A u8" >"$T/out" 2>"$T/err"
  rc=$?
  near "oft:generate without a model = oft generate without --model (the bundled default model)" "$T/def.png" \
    "$T/def-cli.png"
fi
warns "oft:generate with a size the model cannot make warns" "multiples of" \
  oft:generate model="$P" prompt=x steps=2 width=100 height=128
warns "oft:generate with a condition but no condition encoder warns" "needs a condition encoder" \
  load path="$C/images/astronaut.png" oft:generate model="$P" prompt=x steps=2 width=128 height=128 condition-type=canny
warns "oft:segmap with a missing palette warns naming it" "$T/none.json" \
  load path="$C/seg/painted.png" oft:segmap palette="$T/none.json"

echo "1..$n"
[ $fails -eq 0 ]
