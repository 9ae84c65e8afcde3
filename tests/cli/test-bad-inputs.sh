#!/usr/bin/env bash
# The bad-input matrix: hostile or corrupt files and absurd arguments, generated here, each given to the
# oft CLI under `timeout 60`. Every case must exit non-zero (not by a signal or the timeout), print a
# message on stderr that names the file or the problem, and no sanitizer report. Prints TAP.
# Usage: test-bad-inputs.sh OFT_EXE   (OFT_GOLDEN_DIR points at the golden data)
set -u
OFT=$1
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
# bad WHAT PATTERN CMD...: the case passes when CMD fails cleanly and stderr matches PATTERN (ERE)
bad () {
  local what=$1 pat=$2; shift 2
  n=$((n + 1))
  local t0=$SECONDS
  timeout 60 "$@" >"$T/out" 2>"$T/err" </dev/null
  local rc=$? why=""
  if [ $rc -eq 0 ]; then why="exit 0"
  elif [ $rc -eq 124 ]; then why="timed out"
  elif [ $rc -ge 128 ]; then why="killed by signal $((rc - 128))"
  elif grep -Eq "AddressSanitizer|LeakSanitizer|runtime error|UndefinedBehaviorSanitizer" "$T/err"; then why="sanitizer report"
  elif grep -Eq "CRITICAL|assertion" "$T/err"; then why="GLib critical/assertion"
  elif ! grep -Eq -- "$pat" "$T/err"; then why="stderr lacks /$pat/"
  fi
  if [ -z "$why" ]; then
    echo "ok $n - $what ($((SECONDS - t0)) s): $(head -c 160 "$T/err" | tr '\n' ' ')"
  else
    echo "not ok $n - $what: $why (exit $rc)"
    head -c 2000 "$T/err" | sed 's/^/# /'
  fi
}
py () { python3 -c "$@"; }

# ---- safetensors (oft inspect) ----
: >"$T/empty.safetensors"
bad "zero-length safetensors" "empty.safetensors.*too short" "$OFT" inspect "$T/empty.safetensors"
A="$G/oft_layers/oft_linear/adapter/adapter_model.safetensors"
head -c $(( $(stat -c %s "$A") - 100 )) "$A" >"$T/trunc.safetensors"
bad "truncated safetensors (data cut)" "trunc.safetensors.*(outside|truncated)" "$OFT" inspect "$T/trunc.safetensors"
head -c 20 "$A" >"$T/trunc-header.safetensors"
bad "truncated safetensors (header cut)" "trunc-header.safetensors.*(runs past|truncated)" "$OFT" inspect "$T/trunc-header.safetensors"
py 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<Q", 1<<62) + b"{}")' "$T/hugehdr.safetensors"
bad "header length 2^62" "hugehdr.safetensors.*header length" "$OFT" inspect "$T/hugehdr.safetensors"
mkst () { # mkst FILE HEADER-JSON DATA-BYTES
  py 'import struct,sys; h=sys.argv[2].encode("utf-8","surrogateescape"); open(sys.argv[1],"wb").write(struct.pack("<Q",len(h))+h+b"\0"*int(sys.argv[3]))' "$@"
}
mkst "$T/notjson.safetensors" '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]' 4
bad "header not JSON" "notjson.safetensors.*JSON" "$OFT" inspect "$T/notjson.safetensors"
py 'import struct,sys; h=b"{\"w\xff\xfe\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}"; open(sys.argv[1],"wb").write(struct.pack("<Q",len(h))+h+b"\0"*4)' "$T/nonutf8.safetensors"
bad "non-UTF-8 tensor name" "nonutf8.safetensors.*UTF-8" "$OFT" inspect "$T/nonutf8.safetensors"
mkst "$T/dtype.safetensors" '{"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}' 4
bad "unsupported dtype" "dtype.safetensors.*dtype" "$OFT" inspect "$T/dtype.safetensors"
mkst "$T/shape.safetensors" '{"w": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 16]}}' 16
bad "shape disagrees with byte range" "shape.safetensors.*byte count" "$OFT" inspect "$T/shape.safetensors"
mkst "$T/bigshape.safetensors" '{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 16]}}' 16
bad "huge declared shape" "bigshape.safetensors.*w" "$OFT" inspect "$T/bigshape.safetensors"
mkst "$T/overlap.safetensors" '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}' 12
bad "overlapping tensors" "overlap.safetensors.*overlap" "$OFT" inspect "$T/overlap.safetensors"
mkst "$T/offsets.safetensors" '{"w": {"dtype": "F32", "shape": [1048576], "data_offsets": [0, 4194304]}}' 16
bad "data_offsets past the end of the file" "offsets.safetensors.*outside" "$OFT" inspect "$T/offsets.safetensors"

# ---- PEFT adapters (oft adapter merge) ----
# base weights for the adapters below: the golden layer's "weight" as "layer.weight"
py '
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
w = h["weight"]
data = b[8 + n + w["data_offsets"][0]: 8 + n + w["data_offsets"][1]]
hdr = json.dumps({"layer.weight": {"dtype": w["dtype"], "shape": w["shape"], "data_offsets": [0, len(data)]}}).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hdr)) + hdr + data)' "$G/oft_layers/oft_linear/tensors.safetensors" "$T/base.safetensors"
base="$T/base.safetensors"
py '
import json, struct, sys
hdr = json.dumps({"layer.weight": {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 60]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + bytes(60))' "$T/small-base.safetensors"
mkadapter () { mkdir -p "$T/$1"; cp "$G/oft_layers/oft_linear/adapter/adapter_config.json" "$G/oft_layers/oft_linear/adapter/adapter_model.safetensors" "$T/$1/"; }
mkadapter nan
py '
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
k = next(k for k in h if k != "__metadata__")
b[8 + n + h[k]["data_offsets"][0]: 8 + n + h[k]["data_offsets"][0] + 8] = struct.pack("<2f", float("nan"), float("inf"))
open(p, "wb").write(b)' "$T/nan/adapter_model.safetensors"
bad "adapter with NaN/inf weights" "nan.*(NaN|finite|Inf)" "$OFT" adapter merge -b "$base" -a "$T/nan" -o "$T/nan-out.safetensors"
mkadapter cfg; echo '{"peft_type": "OFT", "r": ' >"$T/cfg/adapter_config.json"
bad "adapter_config.json not JSON" "adapter_config.json" "$OFT" adapter merge -b "$base" -a "$T/cfg" -o "$T/o.safetensors"
mkadapter rneg; py 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["r"]=-5; c["oft_block_size"]=-7; json.dump(c,open(p,"w"))' "$T/rneg/adapter_config.json"
bad "adapter with negative r / block size" "adapter_config.json.*(r|block)" "$OFT" adapter merge -b "$base" -a "$T/rneg" -o "$T/o.safetensors"
mkadapter latin1; printf '{"peft_type": "OFT", "r": 4, "target_modules": ["caf\xe9"]}' >"$T/latin1/adapter_config.json"
bad "adapter_config.json not UTF-8" "adapter_config.json" "$OFT" adapter merge -b "$base" -a "$T/latin1" -o "$T/o.safetensors"
mkadapter mism
bad "adapter shapes do not match the base weights" "(shape|expected|match)" "$OFT" adapter merge -b "$T/small-base.safetensors" -a "$T/mism" -o "$T/o.safetensors"

# ---- PyTorch checkpoints (oft inspect x.ckpt) ----
ckpt () { # ckpt FILE PICKLE-PY-EXPR [MEMBERS-PY-EXPR]
  py '
import io, sys, zipfile, zlib
path, pkl = sys.argv[1], eval(sys.argv[2])
members = eval(sys.argv[3]) if len(sys.argv) > 3 else {}
with zipfile.ZipFile(path, "w") as z:
    if pkl is not None:
        z.writestr("archive/data.pkl", pkl)
    for name, (data, method) in members.items():
        z.writestr(zipfile.ZipInfo(name), data, compress_type=method)' "$@"
}
ckpt "$T/evil.ckpt" 'b"\x80\x02cos\nsystem\nX\x05\x00\x00\x00touch\x85R."'
bad "pickle calling os.system" "evil.ckpt.*refusing global os.system" "$OFT" inspect "$T/evil.ckpt"
py 'import sys,zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr(zipfile.ZipInfo("archive/data.pkl"), bytes(300 << 20), compress_type=zipfile.ZIP_DEFLATED)' "$T/pklbomb.ckpt"
bad "zip bomb: 300 MB data.pkl in $(( $(stat -c %s "$T/pklbomb.ckpt") / 1024 )) KiB" "pklbomb.ckpt.*data.pkl" "$OFT" inspect "$T/pklbomb.ckpt"
# a state dict whose one tensor's storage is a deflated 256 MiB member (a 1000:1 bomb)
py '
import struct, sys, zipfile
pkl = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
       b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x00\x00\x00\x04tQK\x00J\x00\x00\x00\x04\x85K\x01\x85\x89}tRs.")
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("archive/data.pkl", pkl)
    z.writestr(zipfile.ZipInfo("archive/data/0"), bytes(256 << 20), compress_type=zipfile.ZIP_DEFLATED)' "$T/storagebomb.ckpt"
bad "zip bomb: 256 MiB storage deflated to $(( $(stat -c %s "$T/storagebomb.ckpt") / 1024 )) KiB" "storagebomb.ckpt.*(expands|bomb|compress)" "$OFT" inspect "$T/storagebomb.ckpt"
ckpt "$T/traversal.ckpt" 'None' '{"../../../tmp/oft-evil/data.pkl": (b"\x80\x02}.", zipfile.ZIP_STORED), "/etc/data.pkl": (b"\x80\x02}.", zipfile.ZIP_STORED)}'
bad "path traversal in zip member names" "traversal.ckpt.*data.pkl" "$OFT" inspect "$T/traversal.ckpt"
[ ! -e /tmp/oft-evil ] || echo "# /tmp/oft-evil exists: something extracted the archive"
head -c 200 "$G/pipeline/model_index.json" >/dev/null
ckpt "$T/ok.ckpt" 'b"\x80\x02}."' ; head -c 60 "$T/ok.ckpt" >"$T/trunc.ckpt"
bad "truncated zip" "trunc.ckpt.*zip" "$OFT" inspect "$T/trunc.ckpt"
printf '\x80\x02}q\x00.' >"$T/legacy.ckpt"
bad "legacy bare-pickle checkpoint" "legacy.ckpt.*(legacy|pickle)" "$OFT" inspect "$T/legacy.ckpt"
: >"$T/empty.ckpt"
bad "zero-length checkpoint" "empty.ckpt" "$OFT" inspect "$T/empty.ckpt"

# ---- images (oft canny IN OUT) ----
png_header () { # png_header FILE W H: a valid signature and IHDR (with CRC), one empty IDAT, no pixels
  py '
import struct, sys, zlib
w, h = int(sys.argv[2]), int(sys.argv[3])
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))' "$@"
}
png_header "$T/huge.png" 30000 30000
bad "PNG claiming 30000x30000" "huge.png.*(30000|too large|pixels)" "$OFT" canny "$T/huge.png" "$T/o.png"
png_header "$T/zero.png" 0 0
bad "PNG of 0x0" "zero.png" "$OFT" canny "$T/zero.png" "$T/o.png"
: >"$T/empty.png"
bad "zero-length PNG" "empty.png" "$OFT" canny "$T/empty.png" "$T/o.png"
P="$G/conditions/images/camera_gray.png"
head -c $(( $(stat -c %s "$P") / 2 )) "$P" >"$T/trunc.png"
bad "truncated PNG" "trunc.png" "$OFT" canny "$T/trunc.png" "$T/o.png"
py '
import struct, sys
def seg(m, b): return bytes([0xFF, m]) + struct.pack(">H", len(b) + 2) + b
huff = seg(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00") + seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
open(sys.argv[1], "wb").write(b"\xff\xd8" + seg(0xDB, b"\x00" + bytes([1] * 64)) +
    seg(0xC0, b"\x08" + struct.pack(">HH", 30000, 30000) + b"\x01\x01\x11\x00") + huff +
    seg(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f\xff\xd9")' "$T/huge.jpg"
bad "JPEG claiming 30000x30000" "huge.jpg.*(30000|too large|pixels)" "$OFT" canny "$T/huge.jpg" "$T/o.png"
echo "not an image at all" >"$T/text.png"
bad "text file named .png" "text.png" "$OFT" canny "$T/text.png" "$T/o.png"

# ---- tokenizer, configs (oft tokenize, oft generate) ----
mkdir -p "$T/tok"
printf '{"a": 0, "\xff\xfe": 1}' >"$T/tok/vocab.json"; cp "$G/pipeline/tokenizer/merges.txt" "$T/tok/"
bad "vocab.json not UTF-8" "vocab.json" "$OFT" tokenize -m "$T/tok" "a photo"
mkdir -p "$T/tok2"; cp "$G/pipeline/tokenizer/vocab.json" "$T/tok2/"; head -c 100000 /dev/urandom >"$T/tok2/merges.txt"
bad "merges.txt of random bytes" "merges.txt" "$OFT" tokenize -m "$T/tok2" "a photo"
bad "prompt that is not UTF-8" "(UTF-8|utf-8|encoding|invalid)" "$OFT" tokenize -m "$G/pipeline" "$(printf 'caf\xe9')"
# a pipeline folder of links to the golden one, with one config replaced
mkpipe () {
  rm -rf "$T/pipe"; mkdir -p "$T/pipe"
  for d in "$G/pipeline"/*; do ln -s "$d" "$T/pipe/"; done
  rm "$T/pipe/$1"; mkdir -p "$T/pipe/$1"
  for f in "$G/pipeline/$1"/*; do ln -s "$f" "$T/pipe/$1/"; done
  rm "$T/pipe/$1/$2"; cp "$G/pipeline/$1/$2" "$T/pipe/$1/$2"
  py 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.update(json.loads(sys.argv[2])); json.dump(c,open(p,"w"))' "$T/pipe/$1/$2" "$3"
}
gen=("$OFT" generate -m "$T/pipe" -p "a cat" --steps 1 --seed 1 -W 64 -H 64 -o "$T/g.png")
mkpipe unet config.json '{"block_out_channels": [-32, 64]}'
bad "UNet config with negative channels" "unet.*config.json.*block_out_channels" "${gen[@]}"
mkpipe unet config.json '{"cross_attention_dim": 1000000000}'
bad "UNet config with an absurd attention width" "config.json.*cross_attention_dim" "${gen[@]}"
mkpipe scheduler scheduler_config.json '{"num_train_timesteps": -1}'
bad "scheduler with -1 training steps" "scheduler_config.json.*num_train_timesteps" "${gen[@]}"
mkpipe scheduler scheduler_config.json '{"beta_start": {"num_train_timesteps": 91}}'
bad "scheduler with an object for beta_start (fuzz find)" "scheduler_config.json.*beta_start" "${gen[@]}"
mkpipe text_encoder config.json '{"hidden_size": "wide"}'
bad "text encoder config with a string width" "config.json.*hidden_size" "${gen[@]}"

# ---- absurd arguments ----
bad "generate --steps -5" "steps" "$OFT" generate -m "$G/pipeline" -p x --steps -5 -o "$T/g.png"
bad "generate 30000x30000" "(width|height|30000|large)" "$OFT" generate -m "$G/pipeline" -p x --steps 1 -W 30000 -H 30000 -o "$T/g.png"
bad "generate width not a multiple of 8" "(width|8)" "$OFT" generate -m "$G/pipeline" -p x --steps 1 -W 61 -H 64 -o "$T/g.png"
bad "generate --guidance nan" "guidance" "$OFT" generate -m "$G/pipeline" -p x --steps 1 --guidance nan -o "$T/g.png"
bad "canny --aperture 4" "aperture" "$OFT" canny "$P" "$T/o.png" --aperture 4
bad "canny --low -1e30" "(low|threshold)" "$OFT" canny "$P" "$T/o.png" --low -1e30 --high nan
bad "train --steps -1" "steps" "$OFT" train -m "$G/pipeline" -i "$P" -p "a sks cat" --steps -1 -o "$T/ad"
bad "segmap --legend-scale 1000" "legend-scale" "$OFT" segmap "$G/conditions/seg/painted.png" "$T/o.png" --legend-scale 1000
bad "faces --scale-factor 0.5" "scale.factor" "$OFT" faces "$P" --scale-factor 0.5
bad "landmarks --box -5,-5,0,0" "box" "$OFT" landmarks "$P" --box -5,-5,0,0 -o "$T/l.json"

# ---- faces and palettes ----
if [ -f /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml ]; then
  head -c 50000 /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml >"$T/cut.xml"
else
  printf '<?xml version="1.0"?><opencv_storage><cascade><stageType>BOOST</stage' >"$T/cut.xml"
fi
bad "truncated Haar cascade XML" "cut.xml" "$OFT" faces "$P" -c "$T/cut.xml"
head -c 5000 /dev/urandom >"$T/garbage.dat"
bad "random bytes as a dlib predictor" "garbage.dat" "$OFT" landmarks "$P" --box 10,10,100,100 -p "$T/garbage.dat" -o "$T/l.json"
printf '{"classes": [{"name": "sky", "color": [1, 2]}' >"$T/pal.json"
bad "truncated palette JSON" "pal.json" "$OFT" segmap "$G/conditions/seg/painted.png" "$T/o.png" --palette "$T/pal.json"

echo "1..$n"
