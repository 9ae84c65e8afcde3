#!/usr/bin/env bash
# Cancelling training in GIMP leaves a resumable checkpoint. gimp-console-2.10 (fresh profile, the built
# plug-in) runs plug-in-oft-train on the golden pipeline (64 px, 60 steps, a checkpoint every 6):
#  1. once the first checkpoint exists the plug-in is SIGKILLed as GIMP's cancel does it (found under
#     /proc by its executable; its process group only if it leads one): the worker must stop, leaving a
#     complete checkpoint written after the kill;
#  2. the same call resumes; once it has gone further, gimp-console itself is SIGKILLed: the plug-in and
#     the worker must not outlive it, and the checkpoint must again be complete;
#  3. the same call resumes from there and finishes: the adapter loads and equals an uninterrupted
#     `oft train` run on the same settings byte for byte.
# gimp-console exits 0 even when a batch fails: every check reads the log, /proc or the files.
# Prints TAP. Usage: test-gimp-kill.sh PLUGIN_EXE OFT_EXE   (OFT_GOLDEN_DIR: the golden data)
set -u
PLUGIN=$(realpath "$1") OFT=$(realpath "$2")
P=${OFT_GOLDEN_DIR:-../shared/golden}/pipeline
IMGS=${OFT_GOLDEN_DIR:-../shared/golden}/conditions/images
if ! command -v gimp-console-2.10 >/dev/null; then
  echo "1..0 # SKIP gimp-console-2.10 is not installed (Debian package gimp)"; exit 0
fi
if [ ! -f "$P/model_index.json" ]; then echo "1..0 # SKIP golden pipeline missing: $P"; exit 0; fi

n=0 failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check () { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

T=$(mktemp -d)
pids=()   # every process this test may leave behind, killed by pid on exit
cleanup () { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$T/plug-ins/gimp-oft" "$T/imgs"
ln -s "$PLUGIN" "$T/plug-ins/gimp-oft/gimp-oft"
echo "(plug-in-path \"$T/plug-ins:/usr/lib/gimp/2.0/plug-ins\")" > "$T/gimprc"
cp "$IMGS/astronaut.png" "$IMGS/brick.png" "$T/imgs/"
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export OFT_CLI=$OFT OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=$T/adapter
CK=$OUT/checkpoint/state.safetensors
STEPS=60
train='(let* ((i (car (gimp-image-new 64 64 RGB))) (l (car (gimp-layer-new i 64 64 RGB-IMAGE "x" 100 LAYER-MODE-NORMAL)))) (gimp-image-insert-layer i l 0 0) (plug-in-oft-train RUN-NONINTERACTIVE i l "'"$T/imgs"'" "a photo of sks thing" "" "'"$P"'" "oft" 0 6e-5 '$STEPS' 1e-3 64 3 "'"$OUT"'") (gimp-message "STAGE train done"))'

# start_gimp LOG: gimp-console with the training batch in the background; sets $tpid (timeout) and $gpid
start_gimp () {
  GIMP2_DIRECTORY="$T/profile" timeout 300 gimp-console-2.10 -i -d -f --gimprc="$T/gimprc" -b "$train" \
    -b '(gimp-quit 0)' >"$1" 2>&1 &
  tpid=$!; pids+=("$tpid")
  gpid=
  for _ in $(seq 100); do gpid=$(pgrep -P "$tpid" | head -1); [ -n "$gpid" ] && break; sleep 0.05; done
  pids+=("$gpid")
}
# the child of $1 running the executable $2, from /proc
child_running () {
  local c
  for c in $(pgrep -P "$1"); do [ "$(readlink "/proc/$c/exe")" = "$2" ] && { echo "$c"; return; }; done
}
# running: the process exists and is not a zombie
alive () { [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# wait_gone SECONDS PID...: 0 once none of them runs
wait_gone () {
  local end=$((SECONDS + $1)) p busy; shift
  while :; do
    busy=0
    for p in "$@"; do alive "$p" && busy=1; done
    [ $busy = 0 ] && return 0
    [ $SECONDS -ge $end ] && return 1
    sleep 0.05
  done
}
# the checkpoint's step as oft inspect reads it; "bad" when it does not load
ckpt_step () {
  [ -e "$CK" ] || return 0
  "$OFT" inspect "$CK" >"$T/inspect" 2>&1 && grep -q '^  format = oft-train-state-1$' "$T/inspect" || { echo bad; return 0; }
  sed -n 's/^  step = \([0-9][0-9]*\)$/\1/p' "$T/inspect"
}
# wait_for_step SECONDS MIN: until the checkpoint holds a step >= MIN (polls the file's change time)
wait_for_step () {
  local end=$((SECONDS + $1)) last= m s
  while [ $SECONDS -lt $end ] && alive "$gpid"; do
    m=$(stat -c %z "$CK" 2>/dev/null)
    if [ -n "$m" ] && [ "$m" != "$last" ]; then
      last=$m; s=$(ckpt_step)
      [ "$s" != bad ] && [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0
    fi
    sleep 0.02
  done
  return 1
}
# only the checkpoint and, at most, temporary files of killed writes beside it
clean_folder () { ! ls -A "$OUT/checkpoint" | grep -qvx -e 'state.safetensors' -e '\.state\.safetensors\.[A-Za-z0-9]\{6\}'; }

# 1. GIMP's cancel: SIGKILL the plug-in
start=$SECONDS
start_gimp "$T/log1"
wait_for_step 240 1
s0=$(ckpt_step)
ppid=$(child_running "$gpid" "$PLUGIN")
wpid=$(child_running "$ppid" "$OFT")
pids+=("$ppid" "$wpid")
echo "# gimp-console $gpid, plug-in $ppid, worker $wpid; first checkpoint at step ${s0:-none} after $((SECONDS - start)) s"
# bit 13 of SigIgn: SIGPIPE; the worker's stderr is a pipe to the plug-in, which dies first
sigign=$(awk '/^SigIgn:/ {print $2}' "/proc/$wpid/status" 2>/dev/null)
check "the worker ignores SIGPIPE (SigIgn $sigign), so its last lines cannot kill it before its checkpoint" \
  "[ -n '$sigign' ] && (( 0x$sigign & 0x1000 ))"
if [ -n "$ppid" ] && [ -n "$wpid" ] && [ -n "$s0" ] && [ "$s0" != bad ]; then
  touch "$T/kill-time"
  # as gimp_plug_in_close (GIMP 2.10) does it
  if [ "$(ps -o pgid= -p "$gpid")" != "$(ps -o pgid= -p "$ppid")" ]; then how="its process group"; kill -KILL -- "-$ppid"
  else how="the plug-in alone"; kill -KILL "$ppid"; fi
  ok "the plug-in ($ppid) and its worker ($wpid) found under /proc; SIGKILL to $how at checkpoint step $s0"
else
  not_ok "plug-in, worker or first checkpoint not found (plug-in '$ppid', worker '$wpid', step '$s0')"
  sed 's/^/# /' "$T/log1" | head -20
fi
check "the worker stops within 30 s of the plug-in's death (no orphaned training)" "wait_gone 30 '$wpid'"
wait_gone 60 "$gpid"
wait "$tpid" 2>/dev/null
s1=$(ckpt_step)
check "GIMP reports the plug-in's death and the batch never reached its end" \
  "grep -q 'Plug-in crashed: \"gimp-oft\"' '$T/log1' && ! grep -q 'STAGE train done' '$T/log1'"
check "the checkpoint loads, at step $s1 ($s0 < step < $STEPS), written after the kill; no adapter yet" \
  "[ '$s1' != bad ] && [ -n '$s1' ] && [ '$s1' -gt '${s0:-0}' ] && [ '$s1' -lt $STEPS ] && [ '$CK' -nt '$T/kill-time' ] \
   && [ ! -e '$OUT/adapter_model.safetensors' ] && clean_folder"

# 2. the same call resumes; then gimp-console itself dies
start_gimp "$T/log2"
target=$(( ${s1:-0} + 1 ))  # one checkpoint further
wait_for_step 240 "$target"
ppid=$(child_running "$gpid" "$PLUGIN")
wpid=$(child_running "$ppid" "$OFT")
pids+=("$ppid" "$wpid")
s2a=$(ckpt_step)
kill -KILL "$gpid"
{ wait "$tpid"; } 2>/dev/null
echo "# gimp-console $gpid killed at checkpoint step ${s2a:-none} (plug-in $ppid, worker $wpid)"
check "the second call resumed from step $s1" "grep -q 'resuming at step $s1 of $STEPS' '$T/log2'"
check "gimp-console SIGKILLed at step $s2a: the plug-in and the worker end within 30 s" \
  "[ -n '$ppid' ] && [ -n '$wpid' ] && wait_gone 30 '$ppid' '$wpid'"
s2=$(ckpt_step)
check "the checkpoint loads, at step $s2 ($s2a <= step < $STEPS); no adapter yet" \
  "[ '$s2' != bad ] && [ -n '$s2' ] && [ '$s2' -ge '${s2a:-0}' ] && [ '$s2' -lt $STEPS ] \
   && [ ! -e '$OUT/adapter_model.safetensors' ] && clean_folder"

# 3. the same call again finishes the run
start_gimp "$T/log3"
wait "$tpid" 2>/dev/null
sed 's/^/# /' "$T/log3" | grep -v '^# *$' | head -8
check "the third call resumed from step $s2 and finished ($((SECONDS - start)) s since the first start)" \
  "grep -q 'resuming at step $s2 of $STEPS' '$T/log3' && grep -q 'STAGE train done' '$T/log3' \
   && ! grep -q 'execution error' '$T/log3'"
"$OFT" inspect "$OUT" >"$T/inspect-adapter" 2>&1
check "the adapter loads as a PEFT adapter" "grep -q 'PEFT adapter' '$T/inspect-adapter'"
# the worker's command line, uninterrupted (the plug-in adds a checkpoint every tenth of the run)
"$OFT" train --model "$P" --images "$T/imgs" --prompt "a photo of sks thing" --method oft --eps 6e-5 --steps $STEPS \
  --lr 1e-3 --resolution 64 --seed 3 --checkpoint-every 6 --out "$T/cli" >"$T/cli.log" 2>&1
check "it equals an uninterrupted oft train run on the same settings byte for byte" \
  "cmp -s '$T/cli/adapter_model.safetensors' '$OUT/adapter_model.safetensors' \
   && cmp -s '$T/cli/adapter_config.json' '$OUT/adapter_config.json'"
check "no temporary file is left in the adapter folder" "! ls -A '$OUT' '$OUT/checkpoint' | grep -q '^\.'"
echo "1..$n"
[ $failed = 0 ]
