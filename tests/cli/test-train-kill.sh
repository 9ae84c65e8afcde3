#!/usr/bin/env bash
# Crash-safe training: `oft train` killed with SIGKILL at pseudo-random points (during a step, while a
# checkpoint is being written, while the final adapter is being written) and resumed with --resume until
# it completes must write the uninterrupted run's adapter byte for byte; after every kill the checkpoint
# folder holds one complete checkpoint (it loads, its step never goes back) and no temporary file is
# taken for one. Prints TAP. Usage: test-train-kill.sh OFT_EXE KILL_HELPER_EXE
#   OFT_KILL_SEED  seed of the kill plan (printed; set it to repeat a failing plan)
#   OFT_KILLS      number of kills (default 8; meson sets fewer under the sanitizers)
set -u
OFT=$1
KILLER=$2
. "$(dirname "$0")/tap.sh"
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}
SEED=${OFT_KILL_SEED:-$(( $(date +%s) % 100000 ))}
KILLS=${OFT_KILLS:-8}
RANDOM=$SEED
echo "# kill plan seed $SEED, $KILLS kills (rerun with OFT_KILL_SEED=$SEED OFT_KILLS=$KILLS)"

# 64 px, two images, flips and a batch of 2: short steps that still draw from every RNG a resume restores;
# a checkpoint after every step gives many writes to land in
STEPS=16
A=(-m "$G/pipeline" --images "$G/conditions/images/astronaut.png" --images "$G/conditions/images/brick.png"
   --prompt "a photo of sks thing" --resolution 64 --flip --batch 2 --lr 1e-3 --lr-schedule cosine --warmup 2
   --seed 5 --steps $STEPS --checkpoint-every 1)
now_ms () { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

t0=$(now_ms)
run "$OFT" train "${A[@]}" --out "$T/full"
full_ms=$(( $(now_ms) - t0 ))
if [ $rc -eq 0 ] && [ -s "$T/full/adapter_model.safetensors" ] && [ -s "$T/full/adapter_config.json" ]; then
  ok "uninterrupted run writes the adapter (${full_ms} ms)"
else
  not_ok "uninterrupted run (exit $rc)"; finish; exit
fi

OUT=$T/killed
CK=$OUT/checkpoint
# the step of the checkpoint as `oft inspect` reads it (empty when there is none or it does not load)
ckpt_step () {
  [ -e "$CK/state.safetensors" ] || return 0
  "$OFT" inspect "$CK/state.safetensors" >"$T/inspect" 2>&1 || { echo bad; return 0; }
  grep -q '^  format = oft-train-state-1$' "$T/inspect" || { echo bad; return 0; }
  sed -n 's/^  step = \([0-9][0-9]*\)$/\1/p' "$T/inspect"
}
prev=0
bad_state=0
resumes=0
hits=" "
# The plan: startup, a step, a checkpoint being written, one just renamed into place, then any of these;
# last the final adapter's files just renamed into place and being written.
if [ "$KILLS" -ge 5 ]; then head=(delay step ckpt-write ckpt-renamed); tail=(adapter-renamed adapter-write)
else head=(step ckpt-write); tail=(adapter-write); fi
plan=("${head[@]:0:$((KILLS > ${#tail[@]} ? KILLS - ${#tail[@]} : 0))}")
choice=(delay step step ckpt-write ckpt-renamed)
while [ $(( ${#plan[@]} + ${#tail[@]} )) -lt "$KILLS" ]; do plan+=("${choice[RANDOM % 5]}"); done
plan+=("${tail[@]:$(( KILLS < ${#tail[@]} ? ${#tail[@]} - KILLS : 0 ))}")
step_ms=$(( full_ms / STEPS + 1 ))
k=0
for mode in "${plan[@]}"; do
  k=$((k + 1))
  case $mode in
    delay) how=(delay $(( RANDOM % 300 )) 0) ;;  # loading the model, encoding the images
    step) how=(step $(( prev + 1 + RANDOM % 2 )) $(( RANDOM % step_ms ))) ;;  # inside the step after that
    ckpt-write) how=(create .state.safetensors. $(( 1 + RANDOM % 2 ))) ;;
    ckpt-renamed) how=(moved state.safetensors $(( 1 + RANDOM % 2 ))) ;;
    adapter-write) how=(create .adapter_ $(( 1 + RANDOM % 3 ))) ;;  # weights, config, patched config
    adapter-renamed) how=(moved adapter_model.safetensors 1) ;;
  esac
  resume=()
  [ -e "$CK/state.safetensors" ] && resume=(--resume) && resumes=$((resumes + 1))
  what=$("$KILLER" "$T/err" "$OUT:$CK" "${how[@]}" -- "$OFT" train "${A[@]}" "${resume[@]}" --out "$OUT")
  : >"$T/out"
  s=$(ckpt_step)
  others=$(cd "$CK" && ls -A | grep -v -x -e 'state.safetensors' -e '\.state\.safetensors\.[A-Za-z0-9]\{6\}')
  temps=$(ls -A "$OUT" "$CK" | grep -c '^\.')
  last=$(sed -n 's|^oft train: step \([0-9]*\)/.*|\1|p' "$T/err" | tail -1)
  echo "# kill $k: $mode (${how[*]}), ${resume[*]:-fresh start}: $what after step ${last:-none} was reported;" \
       "checkpoint step ${s:-none}, $temps temporary file(s)"
  [ "$what" = killed ] && hits+="$mode "
  if [ "$what" != killed ] && [ "$what" != "finished (exit 0)" ]; then
    bad_state=$((bad_state + 1)); echo "#   bad: the run failed on its own"; sed 's/^/#   /' "$T/err" | tail -5
  fi
  if [ "$s" = bad ] || [ -n "$others" ] || { [ -n "$s" ] && [ "$s" -lt $prev ]; } || { [ -z "$s" ] && [ $prev -gt 0 ]; }; then
    bad_state=$((bad_state + 1))
    echo "#   bad: checkpoint '${s}' after step $prev, other files: ${others:-none}"
    sed 's/^/#   /' "$T/inspect" 2>/dev/null | head -5
  fi
  # a published adapter file is whole whenever it exists
  if [ -e "$OUT/adapter_model.safetensors" ] && ! "$OFT" inspect "$OUT/adapter_model.safetensors" >/dev/null 2>&1; then
    bad_state=$((bad_state + 1)); echo "#   bad: adapter_model.safetensors does not load"
  fi
  [ -n "$s" ] && [ "$s" != bad ] && prev=$s
done
missed=""
for m in $(printf '%s\n' "${plan[@]}" | sort -u); do [[ $hits == *" $m "* ]] || missed+=" $m"; done
if [ -z "$missed" ]; then ok "the kills landed where planned:$hits"; else : >"$T/out"; : >"$T/err"; not_ok "no kill landed in:$missed"; fi
if [ $bad_state -eq 0 ]; then
  ok "after each of $KILLS kills the checkpoint is a complete one at a step that never goes back (last: $prev)"
else
  not_ok "$bad_state kill(s) left a missing, partial or older checkpoint"
fi

resume=()
[ -e "$CK/state.safetensors" ] && resume=(--resume) && resumes=$((resumes + 1))
run "$OFT" train "${A[@]}" "${resume[@]}" --out "$OUT"
if [ $rc -eq 0 ] && { [ -z "${resume[*]}" ] || grep -q "^oft train: resuming at step $prev of $STEPS" "$T/err"; }; then
  ok "the last run completes (${resume[*]:-fresh start}, $resumes resumes in all)"
else
  not_ok "the last run (exit $rc, ${resume[*]:-fresh start} from step $prev)"
fi
if cmp -s "$T/full/adapter_model.safetensors" "$OUT/adapter_model.safetensors" \
   && cmp -s "$T/full/adapter_config.json" "$OUT/adapter_config.json"; then
  ok "the adapter equals the uninterrupted run's byte for byte"
else
  not_ok "the adapter after kills and resumes differs from the uninterrupted run's"
fi
run "$OFT" inspect "$OUT"
if [ $rc -eq 0 ] && grep -q "PEFT adapter" "$T/out"; then ok "it loads as a PEFT adapter"; else not_ok "inspect the adapter"; fi
left=$(ls -A "$OUT" "$CK" | grep -c '^\.')
if [ "$left" -eq 0 ]; then ok "no temporary file is left once training completes"; else
  ls -lA "$OUT" "$CK" >"$T/out"; not_ok "$left temporary file(s) left behind"; fi
finish
