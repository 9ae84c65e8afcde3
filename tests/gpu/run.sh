#!/usr/bin/env bash
# The GPU check in one script: the kernel tests (test-cuda-kernels, test-cuda-kernels-bwd when built), the
# golden GPU tests (test-cuda-golden), then the GPU benches (bench-gpu, bench-gpu-kernels --quick), and a
# summary. Stays under 5 minutes: every step has a timeout and all of them share one deadline.
#
#   tests/gpu/run.sh                  build build-cuda here (meson -Dcuda=enabled) if needed, then run
#   tests/gpu/run.sh --build DIR      use a prebuilt CUDA build folder
#   tests/gpu/run.sh --bundle DIR     use DIR/bundle.tar.xz made by tests/gpu/pack.sh (binaries, libraries and
#                                     golden files, for a GPU machine without the build dependencies)
# Options: --quick (fewer bench repetitions), --logs DIR (keep every step's log there; default a temp dir),
# --deadline SECONDS (default 285), --module PATH (another CUDA module, e.g. the tests' CPU stand-in
# build/tests/oftcore-cuda-mock.so for a dry run of this script without a GPU; with --no-bench).
# Exit status: 0 when nothing failed, 1 otherwise. A skip (no usable GPU) is a failure when nvidia-smi
# lists a GPU, since then the module should have found it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=build build_dir="" bundle="" quick="" logs="" deadline_s=285 module="" no_bench=""

while [ $# -gt 0 ]; do
  case "$1" in
    --build) build_dir=$2; shift 2 ;;
    --bundle) mode=bundle; bundle=$2; shift 2 ;;
    --quick) quick=--quick; shift ;;
    --logs) logs=$2; shift 2 ;;
    --deadline) deadline_s=$2; shift 2 ;;
    --module) module=$2; shift 2 ;;
    --no-bench) no_bench=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
deadline=$((start + deadline_s))
logs=${logs:-$(mktemp -d /tmp/oft-gpu-logs.XXXXXX)}
mkdir -p "$logs"

# CUDA's shared libraries: /usr/local/cuda, else the ones pip's nvidia-* wheels (PyTorch's) carry
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublas.so.13" ] && cuda_dirs="$cuda_dirs:$d"
done
if [ -z "$cuda_dirs" ] && command -v python3 >/dev/null; then
  for d in $(python3 - <<'EOF' 2>/dev/null
import glob, os, site
for s in site.getsitepackages():
    for lib in glob.glob(os.path.join(s, "nvidia", "*", "lib")):
        print(lib)
EOF
  ); do cuda_dirs="$cuda_dirs:$d"; done
fi

if [ "$mode" = bundle ]; then
  if [ -f "$bundle/bundle.tar.xz" ]; then
    b=$(mktemp -d /tmp/oft-gpu-bundle.XXXXXX)
    tar -xJf "$bundle/bundle.tar.xz" -C "$b" || { echo "run.sh: cannot unpack $bundle/bundle.tar.xz"; exit 1; }
    b=$b/oft-gpu
  elif [ -d "$bundle/bin" ]; then
    b=$(cd "$bundle" && pwd)
  else
    echo "run.sh: $bundle holds neither bundle.tar.xz nor an unpacked bundle (bin/, lib/)"; exit 1
  fi
  bin=$b/bin
  export LD_LIBRARY_PATH="$b/lib$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OFT_GOLDEN_DIR=$b/golden OFT_DATA_DIR=$b/data OFT_CUDA_MODULE=$b/lib/oftcore-cuda.so
  kernels=$bin/test-cuda-kernels kernels_bwd=$bin/test-cuda-kernels-bwd golden=$bin/test-cuda-golden bench=$bin/bench-gpu
  bench_kernels=$bin/bench-gpu-kernels
  echo "bundle: $b ($(cat "$b/BUILD-INFO" 2>/dev/null | head -1))"
else
  if [ -z "$build_dir" ]; then
    build_dir=$root/build-cuda
    if [ ! -f "$build_dir/build.ninja" ]; then
      echo "== configuring $build_dir"
      meson setup "$build_dir" "$root" -Dcuda=enabled -Dgimp=disabled -Dgegl=disabled > "$logs/setup.log" 2>&1 \
        || { tail -30 "$logs/setup.log"; echo "run.sh: meson setup failed (log: $logs/setup.log)"; exit 1; }
    fi
    echo "== building (log: $logs/build.log)"
    targets="oftcore/cuda/oftcore-cuda.so tests/test-cuda-golden bench/bench-gpu"
    for t in tests/gpu/test-cuda-kernels tests/gpu/test-cuda-kernels-bwd tests/gpu/bench-gpu-kernels; do
      ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q "^$t:" && targets="$targets $t"
    done
    ninja -C "$build_dir" $targets > "$logs/build.log" 2>&1 \
      || { tail -40 "$logs/build.log"; echo "run.sh: the build failed (log: $logs/build.log)"; exit 1; }
  fi
  build_dir=$(cd "$build_dir" && pwd)
  export LD_LIBRARY_PATH="${cuda_dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OFT_GOLDEN_DIR=${OFT_GOLDEN_DIR:-$root/../shared/golden} OFT_DATA_DIR=$root/data
  export OFT_CUDA_MODULE=$build_dir/oftcore/cuda/oftcore-cuda.so
  kernels=$build_dir/tests/gpu/test-cuda-kernels kernels_bwd=$build_dir/tests/gpu/test-cuda-kernels-bwd
  golden=$build_dir/tests/test-cuda-golden bench=$build_dir/bench/bench-gpu
  bench_kernels=$build_dir/tests/gpu/bench-gpu-kernels
fi
export G_DEBUG=fatal-criticals OMP_WAIT_POLICY=passive
[ -n "$module" ] && export OFT_CUDA_MODULE=$(readlink -f "$module")
gpu_present=""
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && gpu_present=1

echo "== $(date -u '+%F %T') UTC on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
  --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
if [ ! -e "$OFT_CUDA_MODULE" ]; then
  echo "run.sh: the CUDA module $OFT_CUDA_MODULE is missing"; exit 1
fi
missing=$(ldd "$OFT_CUDA_MODULE" 2>/dev/null | grep 'not found')
[ -n "$missing" ] && { echo "run.sh: the CUDA module cannot find:"; echo "$missing"; }
undefined=$(nm -D --undefined-only "$OFT_CUDA_MODULE" 2>/dev/null | awk '$2 ~ /^oftcu_/ { print $2 }')
[ -n "$undefined" ] && echo "run.sh: the CUDA module calls launchers no kernel file defines (it will not load):" $undefined

results=()
failed=0
# step NAME TIMEOUT_MAX COMMAND...: runs with the smaller of its timeout and what the deadline leaves
step () {
  local name=$1 max=$2; shift 2
  local now left t rc status
  now=$(date +%s)
  left=$((deadline - now))
  t=$(( max < left ? max : left ))
  if [ ! -x "$1" ]; then
    results+=("$(printf '%-22s %-8s %s' "$name" "absent" "(not built: $1)")")
    return
  fi
  if [ "$t" -lt 10 ]; then
    results+=("$(printf '%-22s %-8s %s' "$name" "NOT RUN" "(the deadline is reached)")")
    failed=1
    return
  fi
  echo "== $name (timeout ${t}s, log: $logs/$name.log)"
  local t0=$(date +%s)
  timeout -k 5 "$t" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=PASS ;;
    77) if [ -n "$gpu_present" ]; then status="SKIP!"; failed=1; else status=SKIP; fi ;;
    124|137) status=TIMEOUT; failed=1 ;;
    *) status="FAIL($rc)"; failed=1 ;;
  esac
  local oks nots
  oks=$(grep -c '^ok ' "$logs/$name.log")
  nots=$(grep -c '^not ok ' "$logs/$name.log")
  results+=("$(printf '%-22s %-8s %4ss  TAP: %s ok, %s not ok' "$name" "$status" "$dt" "$oks" "$nots")")
  # what failed, where the output says
  grep -E '^not ok |ERROR|FAIL|SKIP' "$logs/$name.log" | head -20 | sed 's/^/    /'
}

step kernels 90 "$kernels" --tap
step kernels-bwd 75 "$kernels_bwd" --tap
# golden: 74 s on the H200 in run 1 with 9 tests; the training tests (loss, 128 gradients, replay) add 4
step golden 150 "$golden" --tap
if [ -n "$no_bench" ]; then
  results+=("$(printf '%-22s %-8s' bench "not run (--no-bench)")")
elif [ -n "$quick" ]; then
  step bench 120 "$bench" --quick
  step bench-kernels 40 "$bench_kernels" --quick
else
  step bench 150 "$bench"
  step bench-kernels 60 "$bench_kernels" --quick
fi

echo
echo "================ GPU summary ($(( $(date +%s) - start )) s) ================"
printf '%s\n' "${results[@]}"
if [ -f "$logs/golden.log" ]; then
  echo "-- golden GPU tests: measured errors (max abs err against the reference, and the bound)"
  grep -E 'GPU (fp32|bf16)|vs the CPU|second forward|txt2img|graph replay|eager forward vs|graph capture|DEBUG: UNet forward: captured' "$logs/golden.log" \
    | sed 's/^# */  /'
fi
if [ -f "$logs/bench.log" ]; then
  echo "-- bench"
  grep -E '^(device|summary):' "$logs/bench.log" | sed 's/^summary: */  /'
  grep -E '^profile:' "$logs/bench.log" | sed 's/^/  /'
fi
if [ -f "$logs/bench-kernels.log" ]; then
  echo "-- kernel bench (bench-gpu-kernels --quick)"
  sed 's/^/  /' "$logs/bench-kernels.log" | tail -40
fi
echo "logs: $logs"
exit $failed
