#!/bin/bash
# Runs tests/gpu/test-cuda-kernels-bwd.c against the backward/training kernel sources executed on the CPU,
# for checking them where no GPU is lent. Every block's threads are real threads (a barrier per
# __syncthreads, per-warp barriers for shuffles and the tensor-core fragment exchanges, whose PTX layouts
# fake/cuda-bwd-mma.cuh implements); device memory is host memory; oftcu_gemm is a plain double loop.
# It checks index math, tiling, masks, barriers placement and the test itself, not timing, the real PTX,
# or the GPU's fp rounding. Small shapes only (OFT_CUDA_TEST_SMALL=1): the big ones take too long.
#
#   tools/cuda-emu/run.sh BUILD [test args]    BUILD: a CPU build (meson setup BUILD), e.g. build
#   EMU_CONV_SCRATCH=batch|image|pixels        conv scratch as whole batch / one image / a third of one
set -e
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:?usage: run.sh BUILD [test args]}" && pwd)
shift
OUT=$BUILD/cuda-emu
EMU=$SRC/tools/cuda-emu
ninja -C "$BUILD" oftcore/liboftcore.so.0.1.0 tests/libtest-common.a >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT/src"
python3 "$EMU/convert.py" "$SRC/oftcore/cuda" "$OUT/src" "$EMU/fake"
cp "$EMU"/fake/*.cuh "$OUT/src/"
CXX="g++ -std=c++20 -O1 -g -pthread -ffp-contract=off -Wall -Wno-unused-function -Wno-unused-variable -Wno-unknown-pragmas -I$OUT/src"
$CXX -x c++ -c "$OUT/src/cuda-kernels-bwd.cu" -o "$OUT/bwd.o"
$CXX -x c++ -c "$OUT/src/cuda-kernels-train.cu" -o "$OUT/train.o"
$CXX -c "$EMU/emu.cpp" -o "$OUT/emu.o"
gcc -std=c11 -O1 -g -D_GNU_SOURCE -I"$SRC/oftcore/include" -I"$OUT/src" -I"$SRC/tests" -I"$BUILD" \
  $(pkg-config --cflags glib-2.0 json-glib-1.0 openblas) -c "$SRC/tests/gpu/test-cuda-kernels-bwd.c" -o "$OUT/test.o"
g++ -pthread -o "$OUT/test-cuda-kernels-bwd-emu" "$OUT/test.o" "$OUT/bwd.o" "$OUT/train.o" "$OUT/emu.o" \
  "$BUILD/tests/libtest-common.a" -L"$BUILD/oftcore" -Wl,-rpath,"$BUILD/oftcore" -l:liboftcore.so.0.1.0 \
  $(pkg-config --libs glib-2.0 json-glib-1.0 openblas) -lm
OFT_CUDA_TEST_SMALL=${OFT_CUDA_TEST_SMALL-1} OFT_GOLDEN_DIR=${OFT_GOLDEN_DIR-$SRC/../shared/golden} \
  "$OUT/test-cuda-kernels-bwd-emu" "$@"
