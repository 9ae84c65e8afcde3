#!/usr/bin/env bash
# Packs what tests/gpu/run.sh --bundle needs on a GPU machine that has CUDA 13 and a C runtime but none of the
# build dependencies (GLib, json-glib, OpenBLAS, libpng, libjpeg, libzip) nor ../shared: the GPU test programs
# and bench, the CUDA module, liboftcore, every shared library they load except glibc's, the C++ runtime and
# CUDA's own (found there in /usr/local/cuda or PyTorch's wheels), the golden files the GPU tests read and the
# SD1.5 configs the bench reads, as DEST/bundle.tar.xz (about 30 MB).
#
#   tests/gpu/pack.sh DEST [--build DIR]     DIR: a CUDA build folder (default build-cuda, configured and
#                                             built here when needed)
# Runs here, on the build machine. On the GPU machine: tests/gpu/run.sh --bundle DEST.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${1:?usage: tests/gpu/pack.sh DEST [--build DIR]}
shift
build=$root/build-cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    *) echo "pack.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
golden=${OFT_GOLDEN_DIR:-$root/../shared/golden}
[ -f "$golden/pipeline/reference.safetensors" ] || { echo "pack.sh: no golden data in $golden (set OFT_GOLDEN_DIR)"; exit 1; }

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" -Dcuda=enabled -Dgimp=disabled -Dgegl=disabled
fi
targets="oftcore/cuda/oftcore-cuda.so tests/test-cuda-golden bench/bench-gpu"
for t in tests/gpu/test-cuda-kernels tests/gpu/test-cuda-kernels-bwd tests/gpu/bench-gpu-kernels; do
  ninja -C "$build" -t targets all | grep -q "^$t:" && targets="$targets $t"
done
ninja -C "$build" $targets
# a launcher the module calls but no kernel file defines (a branch not merged yet) would make dlopen fail there
undefined=$(nm -D --undefined-only "$build/oftcore/cuda/oftcore-cuda.so" | awk '$2 ~ /^oftcu_/ { print $2 }')
if [ -n "$undefined" ]; then
  echo "pack.sh: the CUDA module calls launchers no kernel file defines, so it cannot load:" $undefined
  exit 1
fi

mkdir -p "$dest"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
b=$stage/oft-gpu
mkdir -p "$b/bin" "$b/lib" "$b/golden" "$b/data"
for t in $targets; do
  case "$t" in
    *.so) cp "$build/$t" "$b/lib/" ;;
    *) cp "$build/$t" "$b/bin/" ;;
  esac
done
# liboftcore under its soname, the name the programs ask for
oftcore=$(readlink -f "$build/oftcore/liboftcore.so")
soname=$(objdump -p "$oftcore" | awk '/SONAME/ { print $2 }')
cp "$oftcore" "$b/lib/$soname"

# every library the programs and the module load, but glibc's, the C++ runtime and CUDA's (liboftcore is there)
"$root/tools/bundle-libs" "$b/lib" "$b"/bin/* "$b"/lib/*

# the golden files test-cuda-golden reads (see ../shared/golden/README.md), and the configs bench-gpu reads
mkdir -p "$b/golden/pipeline" "$b/golden/unet_oft"
cp "$golden/pipeline/model_index.json" "$golden/pipeline/reference.safetensors" "$b/golden/pipeline/"
cp -r "$golden/pipeline/unet" "$golden/pipeline/vae" "$golden/pipeline/text_encoder" "$golden/pipeline/tokenizer" \
  "$golden/pipeline/scheduler" "$b/golden/pipeline/"
cp "$golden/unet_oft/reference.safetensors" "$b/golden/unet_oft/"
cp -r "$golden/unet_oft/adapter" "$b/golden/unet_oft/"
cp -r "$root/data/sd15-config" "$b/data/"
chmod -R u+w "$b"
cp "$here/run.sh" "$b/"
{
  echo "gimp-oft $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), packed $(date -u '+%F %T') UTC on $(hostname)"
  echo "programs: $(ls "$b/bin" | tr '\n' ' ')"
  echo "libraries: $(ls "$b/lib" | tr '\n' ' ')"
} > "$b/BUILD-INFO"

XZ_OPT=${XZ_OPT:--6 -T2} tar -cJf "$dest/bundle.tar.xz.tmp" -C "$stage" oft-gpu
mv "$dest/bundle.tar.xz.tmp" "$dest/bundle.tar.xz"
size=$(stat -c %s "$dest/bundle.tar.xz")
echo "pack.sh: $dest/bundle.tar.xz, $((size / 1024 / 1024)) MiB ($(du -sh "$b" | cut -f1) unpacked)"
sed -n '2,3p' "$b/BUILD-INFO"
[ "$size" -lt $((40 * 1024 * 1024)) ] || echo "pack.sh: warning: over 40 MiB"
