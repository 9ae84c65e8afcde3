#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each with libFuzzer, two at a time, and prints
# TAP with the executions per target. Builds build-fuzz (clang, ASan+UBSan, libFuzzer coverage over all
# of oftcore) on first use; seeds come from the golden folder through make-seeds.py into a temporary
# corpus, never into the source tree. A crash input is kept in build-fuzz/crashes/ and named in the output.
# Usage: tests/fuzz/run.sh SECONDS [TARGET...]   (OFT_FUZZ_JOBS: parallel targets, default 2;
#   OFT_FUZZ_FORK=N: N libFuzzer worker processes per target, executions summed;
#   OFT_FUZZ_PACK=DIR: run a pack made by tests/fuzz/pack.sh on another machine, without building)
set -u
secs=${1:?usage: run.sh SECONDS [TARGET...]}; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bdir=${OFT_FUZZ_BUILD:-$root/build-fuzz}
golden=${OFT_GOLDEN_DIR:-$root/../shared/golden}
jobs=${OFT_FUZZ_JOBS:-2}
all=(safetensors ckpt adapter model-config scheduler tokenizer image haar shape-predictor palette prefs)
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

declare -A max_len=([safetensors]=16384 [ckpt]=16384 [adapter]=16384 [model-config]=8192 [scheduler]=4096
                    [tokenizer]=32768 [image]=16384 [haar]=16384 [shape-predictor]=16384 [palette]=16384
                    [prefs]=8192)

pack=${OFT_FUZZ_PACK:-}
fork=${OFT_FUZZ_FORK:-0}
if [ -n "$pack" ]; then
  bdir=$pack
elif [ ! -f "$bdir/build.ninja" ]; then
  CC=clang meson setup "$bdir" "$root" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
    >"$bdir.setup.log" 2>&1 || { echo "Bail out! meson setup of $bdir failed (clang?); see $bdir.setup.log"; exit 1; }
fi
built=()
[ -n "$pack" ] || for t in "${targets[@]}"; do [ -n "$(find "$root/tests/fuzz" -name "fuzz-$t.c")" ] && built+=("tests/fuzz/fuzz-$t"); done
# prefs needs GIMP's headers; a target meson did not define is reported as skipped below
avail=()
for b in "${built[@]}"; do ninja -C "$bdir" -t query "$b" >/dev/null 2>&1 && avail+=("$b"); done
[ ${#avail[@]} -eq 0 ] || ninja -C "$bdir" "${avail[@]}" >"$bdir/fuzz-build.log" 2>&1 ||
  { tail -30 "$bdir/fuzz-build.log"; echo "Bail out! build failed"; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$bdir/crashes"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

run_one () { # target → $work/<t>.result "ok|not ok|skip" line
  local t=$1 exe="$bdir/tests/fuzz/fuzz-$t" log="$work/$t.log"
  if [ ! -x "$exe" ]; then echo "skip fuzz-$t: not built (needs GIMP headers?)" >"$work/$t.result"; return; fi
  if [ -n "$pack" ]; then
    cp -r "$pack/seeds/$t" "$work/seeds-$t"
  else
    python3 "$root/tests/fuzz/make-seeds.py" "$t" "$work/seeds-$t" "$golden" || true
  fi
  mkdir -p "$work/corpus-$t"
  local par=()
  [ "$fork" -gt 0 ] && par=(-fork="$fork" -ignore_crashes=0)
  "$exe" "$work/corpus-$t" "$work/seeds-$t" -max_total_time="$secs" -max_len="${max_len[$t]:-65536}" "${par[@]}" \
    -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 -artifact_prefix="$bdir/crashes/$t-" >"$log" 2>&1
  local rc=$? execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # fork mode: the parent's last status line "#N: cov: ..." counts the workers' executions together
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\):.*/\1/p' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "ok fuzz-$t: ${execs:-?} executions in $secs s, corpus $(ls "$work/corpus-$t" | wc -l) inputs" >"$work/$t.result"
  else
    { echo "not ok fuzz-$t: exit $rc after ${execs:-?} executions"
      grep -E "ERROR|SUMMARY|Test unit written|runtime error|==[0-9]+==" "$log" | head -15 | sed 's/^/# /'; } >"$work/$t.result"
  fi
}

running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

echo "1..${#targets[@]}"
i=0 failed=0
for t in "${targets[@]}"; do
  i=$((i + 1))
  line=$(cat "$work/$t.result" 2>/dev/null || echo "not ok fuzz-$t: no result")
  case $line in
    "ok "*) echo "ok $i - ${line#ok }" ;;
    "skip "*) echo "ok $i - # SKIP ${line#skip }" ;;
    *) echo "not ok $i - ${line#not ok }"; failed=$((failed + 1)) ;;
  esac
done
exit $((failed > 0))
