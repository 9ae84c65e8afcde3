#!/usr/bin/env bash
# Packs the fuzz targets for a longer run on a bigger machine that has none of the build dependencies:
# build-fuzz's targets and liboftcore (in their build layout, so their rpath holds), every other library
# they load (tools/bundle-libs), the seed corpora made here from the golden folder, and run.sh, as
# DEST/fuzz-pack.tar.xz. There:
#   tar xJf fuzz-pack.tar.xz && LD_LIBRARY_PATH=$PWD/fuzz-pack/lib OFT_FUZZ_PACK=$PWD/fuzz-pack \
#     OFT_FUZZ_JOBS=10 fuzz-pack/run.sh SECONDS [TARGET...]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:?usage: tests/fuzz/pack.sh DEST}
bdir=${OFT_FUZZ_BUILD:-$root/build-fuzz}
golden=${OFT_GOLDEN_DIR:-$root/../shared/golden}
[ -x "$bdir/tests/fuzz/fuzz-safetensors" ] || "$root/tests/fuzz/run.sh" 1 >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
p=$stage/fuzz-pack
mkdir -p "$p/tests/fuzz" "$p/oftcore" "$p/seeds"
for f in "$bdir"/tests/fuzz/fuzz-*; do
  [ -x "$f" ] && [ -f "$f" ] && cp "$f" "$p/tests/fuzz/" && \
    python3 "$root/tests/fuzz/make-seeds.py" "${f##*/fuzz-}" "$p/seeds/${f##*/fuzz-}" "$golden" >/dev/null
done
cp -L "$bdir"/oftcore/liboftcore.so.? "$p/oftcore/"
"$root/tools/bundle-libs" "$p/lib" "$p"/tests/fuzz/fuzz-*
rm -f "$p"/lib/liboftcore.so*
cp "$root/tests/fuzz/run.sh" "$p/"
mkdir -p "$dest"
XZ_OPT=${XZ_OPT:--6 -T2} tar -cJf "$dest/fuzz-pack.tar.xz" -C "$stage" fuzz-pack
echo "pack.sh: $dest/fuzz-pack.tar.xz, $(du -h "$dest/fuzz-pack.tar.xz" | cut -f1)"
