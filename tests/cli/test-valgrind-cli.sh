#!/usr/bin/env bash
# The oft CLI under valgrind memcheck: a few fast commands, successful and failing, must run without
# memory errors or definite leaks (exit 9 is valgrind's). Normal builds only (meson does not register it
# under a sanitizer). Prints TAP. Usage: test-valgrind-cli.sh OFT_EXE   (OFT_GOLDEN_DIR: golden data)
set -u
OFT=$1
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}
if ! command -v valgrind >/dev/null; then echo "1..0 # SKIP valgrind is not installed"; exit 0; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OFT_NO_REEXEC=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
n=0
# vg WHAT WANT-EXIT CMD...: memcheck clean, and the command's own exit status as wanted (0 or "fail")
vg () {
  local what=$1 want=$2; shift 2
  n=$((n + 1))
  timeout 300 valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    --log-file="$T/vg.log" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -eq 9 ] || [ -s "$T/vg.log" ]; then
    echo "not ok $n - $what: memcheck errors"; head -60 "$T/vg.log" | sed 's/^/# /'
  elif [ $rc -eq 124 ] || [ $rc -ge 128 ]; then
    echo "not ok $n - $what: exit $rc (timeout or signal)"
  elif { [ "$want" = 0 ] && [ $rc -ne 0 ]; } || { [ "$want" = fail ] && [ $rc -eq 0 ]; }; then
    echo "not ok $n - $what: exit $rc"; head -c 1000 "$T/err" | sed 's/^/# /'
  else
    echo "ok $n - $what"
  fi
}

vg "inspect a safetensors file" 0 "$OFT" inspect "$G/oft_layers/oft_conv3x3/tensors.safetensors"
vg "inspect an adapter folder" 0 "$OFT" inspect "$G/oft_layers/boft_linear/adapter"
python3 -c '
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); w = h["weight"]
data = b[8 + n + w["data_offsets"][0]: 8 + n + w["data_offsets"][1]]
hdr = json.dumps({"layer.weight": {"dtype": w["dtype"], "shape": w["shape"], "data_offsets": [0, len(data)]}}).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hdr)) + hdr + data)' "$G/oft_layers/oft_linear/tensors.safetensors" "$T/base.safetensors"
vg "adapter merge" 0 "$OFT" adapter merge -b "$T/base.safetensors" -a "$G/oft_layers/oft_linear/adapter" -o "$T/m.safetensors"
vg "canny" 0 "$OFT" canny "$G/conditions/images/camera_gray.png" "$T/c.png" --blur
vg "tokenize" 0 "$OFT" tokenize -m "$G/pipeline" "a photo of an astronaut riding a horse"
vg "generate 1 step at 64 px" 0 "$OFT" generate -m "$G/pipeline" -p "a cat" --steps 1 --seed 1 -W 64 -H 64 -o "$T/g.png"
# error paths free what they allocated too
printf '\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.' >"$T/data.pkl"
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], "w"); z.write(sys.argv[2], "archive/data.pkl"); z.close()' \
  "$T/evil.ckpt" "$T/data.pkl"
vg "inspect a checkpoint calling os.system (refused)" fail "$OFT" inspect "$T/evil.ckpt"
head -c 1500 "$G/oft_layers/oft_linear/adapter/adapter_model.safetensors" >"$T/trunc.safetensors"
vg "inspect a truncated safetensors (refused)" fail "$OFT" inspect "$T/trunc.safetensors"
vg "generate with steps -1 (refused)" fail "$OFT" generate -m "$G/pipeline" -p x --steps -1 -o "$T/g.png"
echo "1..$n"
