#!/usr/bin/env bash
# oft train end to end on the golden pipeline; prints TAP. Usage: test-train.sh OFT_EXE
# Resume after SIGKILL and after Ctrl-C must give the uninterrupted run's adapter byte for byte;
# a diverging run stops with a clear error and keeps its last checkpoint; bad input fails cleanly.
set -u
OFT=$1
. "$(dirname "$0")/tap.sh"
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}
# the step stored in a checkpoint (its safetensors metadata)
ckpt_step () { grep -ao '"step":"[0-9]*"' "$1/checkpoint/state.safetensors" | grep -o '[0-9]*'; }

# four subject images from the base pipeline
mkdir -p "$T/img"
for i in 0 1 2 3; do
  "$OFT" generate -m "$G/pipeline" -p "a photo of a red dog" --steps 3 --seed $i -W 64 -H 64 -o "$T/img/s$i.png" \
    >/dev/null 2>&1
done
# 64 px (8x8 latents) keeps every step short; flips, accumulation, a cosine schedule and prior
# preservation exercise every RNG draw and piece of state that a resume must restore
A=(-m "$G/pipeline" --images "$T/img" --prompt "a photo of sks dog" --class-prompt "a photo of a dog"
   --class-images "$T/cls" --num-class-images 2 --resolution 64 --flip --batch 2 --grad-accum 2
   --lr 1e-3 --lr-schedule cosine --warmup 3 --seed 11 --checkpoint-every 2)
STEPS=16

run "$OFT" train "${A[@]}" --steps $STEPS --out "$T/full"
if [ $rc -eq 0 ] && [ -s "$T/full/adapter_model.safetensors" ] && [ "$(ls "$T/cls" | wc -l)" = 2 ] \
   && grep -q '"r": 4' "$T/full/adapter_config.json"; then
  ok "uninterrupted run writes the adapter (r = 4 blocks) and generates the class images"
else
  not_ok "uninterrupted run (exit $rc)"
fi
run "$OFT" inspect "$T/full"
if [ $rc -eq 0 ] && grep -q "PEFT adapter" "$T/out"; then ok "the result loads as a PEFT adapter"; else not_ok "inspect the result"; fi

# SIGKILL as soon as the first checkpoint exists, then --resume
"$OFT" train "${A[@]}" --steps $STEPS --out "$T/killed" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 3000); do [ -f "$T/killed/checkpoint/state.safetensors" ] && break; sleep 0.01; done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
s=$(ckpt_step "$T/killed")
if [ -n "$s" ] && [ "$s" -lt $STEPS ] && [ ! -f "$T/killed/adapter_model.safetensors" ]; then
  ok "SIGKILL mid-run leaves a checkpoint at step $s of $STEPS"
else
  not_ok "SIGKILL mid-run (checkpoint step '${s}')"
fi
run "$OFT" train "${A[@]}" --steps $STEPS --resume --out "$T/killed"
if [ $rc -eq 0 ] && cmp -s "$T/full/adapter_model.safetensors" "$T/killed/adapter_model.safetensors"; then
  ok "--resume after SIGKILL equals the uninterrupted run byte for byte"
else
  not_ok "--resume after SIGKILL (exit $rc) differs from the uninterrupted run"
fi

# Ctrl-C: stops after the current step with a checkpoint
"$OFT" train "${A[@]}" --steps $STEPS --out "$T/int" >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 3000); do [ -f "$T/int/checkpoint/state.safetensors" ] && break; sleep 0.01; done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
s=$(ckpt_step "$T/int")
if [ $rc -ne 0 ] && grep -q "cancelled after step $s of $STEPS" "$T/err"; then
  ok "SIGINT stops after the current step with a checkpoint (step $s)"
else
  not_ok "SIGINT (exit $rc, checkpoint step '${s}')"
fi
run "$OFT" train "${A[@]}" --steps $STEPS --resume --out "$T/int"
if [ $rc -eq 0 ] && cmp -s "$T/full/adapter_model.safetensors" "$T/int/adapter_model.safetensors"; then
  ok "--resume after SIGINT equals the uninterrupted run byte for byte"
else
  not_ok "--resume after SIGINT (exit $rc) differs"
fi
run "$OFT" train "${A[@]}" --steps 20 --resume --out "$T/int"
if [ $rc -ne 0 ] && grep -q "other settings" "$T/err"; then ok "--resume with other settings is refused"; else not_ok "--resume with other settings (exit $rc)"; fi

# divergence: a huge learning rate makes the loss NaN; the last good checkpoint stays
B=(-m "$G/pipeline" --images "$T/img" --prompt sks --resolution 64 --max-grad-norm 0 --checkpoint-every 1)
run "$OFT" train "${B[@]}" --steps 10 --lr 1e30 --out "$T/nan"
s=$(ckpt_step "$T/nan")
if [ $rc -ne 0 ] && grep -Eq "step [0-9]+: .*(nan|NaN|inf).*checkpoint .* is kept" "$T/err" && [ -n "$s" ] \
   && grep -q "step $((s + 1)):" "$T/err" && [ ! -f "$T/nan/adapter_model.safetensors" ]; then
  ok "a NaN loss stops with a clear error, keeping the checkpoint of step $s"
else
  not_ok "NaN loss (exit $rc, checkpoint '${s}')"
fi

# bad input
run "$OFT" train -m "$G/pipeline" --images "$T/nothing" --prompt sks --out "$T/x"
if [ $rc -ne 0 ] && grep -q "nothing: no such image" "$T/err"; then ok "missing images: clear error"; else not_ok "missing images"; fi
run "$OFT" train "${B[@]}" --steps 2 --block-size 7 --out "$T/x"
if [ $rc -ne 0 ] && grep -q "cannot be cut into blocks of 7" "$T/err"; then ok "a block size that divides no in_features: clear error"; else not_ok "bad block size"; fi
run "$OFT" train "${B[@]}" --steps 2 --targets nope --out "$T/x"
if [ $rc -ne 0 ] && grep -q "target 'nope' matches no transformer-block Linear" "$T/err"; then ok "targets matching nothing: clear error"; else not_ok "bad targets"; fi
run "$OFT" train "${B[@]}" --steps 2 --targets to_q,conv1 --out "$T/x"
if [ $rc -ne 0 ] && grep -q "target 'conv1' matches no" "$T/err" && [ ! -e "$T/x/adapter_config.json" ]; then
  ok "one target of several matching nothing (a resnet conv): clear error"; else not_ok "a target matching nothing among others"; fi
run "$OFT" train "${B[@]}" --steps 2 --timesteps logit --out "$T/x"
if [ $rc -ne 0 ] && grep -q "\-\-timesteps logit: expected uniform or cubic" "$T/err"; then ok "a bad --timesteps: clear error"; else not_ok "bad --timesteps"; fi
run "$OFT" train "${B[@]}" --steps 2 --resume --out "$T/fresh"
if [ $rc -ne 0 ] && grep -q "no checkpoint to resume from" "$T/err"; then ok "--resume without a checkpoint: clear error"; else not_ok "--resume without checkpoint"; fi

# replay mode on the golden batch: PEFT's loss sequence (fp32 vs fp64 differ by 1.1e-7)
run "$OFT" train -m "$G/pipeline" --replay-batch "$G/unet_oft/reference.safetensors" --init-adapter "$G/unet_oft/adapter" \
  --steps 3 --lr 1e-3 --weight-decay 1e-2 --out "$T/replay"
if [ $rc -eq 0 ] && grep -Eq '^\{"losses": \[1\.0720906[0-9]*, 1\.070373[89][0-9]*, 1\.068661[45][0-9]*, 1\.066954[89][0-9]*\]\}$' "$T/out" \
   && [ -s "$T/replay/adapter_model.safetensors" ]; then
  ok "replay: 3 AdamW steps give PEFT's losses 1.0720906, 1.0703739, 1.0686614, 1.0669549"
else
  not_ok "replay (exit $rc)"
fi

# --merged-out: a pipeline folder that generates
run "$OFT" train "${B[@]}" --steps 2 --lr 1e-3 --out "$T/m" --merged-out "$T/merged"
if [ $rc -eq 0 ] && [ -f "$T/merged/model_index.json" ] && "$OFT" generate -m "$T/merged" -p dog --steps 2 -o "$T/m.png" \
   >/dev/null 2>&1; then
  ok "--merged-out writes a pipeline folder that generates"
else
  not_ok "--merged-out (exit $rc)"
fi

# BOFT (2 butterfly factors): a PEFT BOFT folder that inspect reads and merge bakes into a pipeline
run "$OFT" train "${B[@]}" --steps 2 --lr 1e-3 --method boft --butterfly-factors 2 --out "$T/boft" --merged-out "$T/boft-m"
if [ $rc -eq 0 ] && grep -q '"peft_type": "BOFT"' "$T/boft/adapter_config.json" \
   && grep -q '"boft_n_butterfly_factor": 2' "$T/boft/adapter_config.json" && grep -q '"boft_block_num": 4' "$T/boft/adapter_config.json" \
   && "$OFT" inspect "$T/boft" 2>/dev/null | grep -q "butterfly factors: 2" \
   && "$OFT" generate -m "$T/boft-m" -p dog --steps 2 -W 64 -H 64 -o "$T/boft.png" >/dev/null 2>&1; then
  ok "--method boft writes a PEFT BOFT adapter (boft_block_num 4, 2 factors) that inspect and merge read"
else not_ok "--method boft (exit $rc)"; fi
run "$OFT" train "${B[@]}" --steps 2 --method boft --butterfly-factors 4 --out "$T/x"
if [ $rc -ne 0 ] && grep -q "butterfly factors" "$T/err"; then ok "BOFT factors the block count cannot take: clear error"
else not_ok "bad butterfly factors (exit $rc)"; fi

# --fit-magnitude: the magnitude stage after the OFT steps; killed inside it and resumed, it ends where an
# uninterrupted run does; the adapter says gimp_oft_magnitude and merges
M=(-m "$G/pipeline" --images "$T/img" --prompt "a photo of sks dog" --resolution 64 --lr 1e-2 --magnitude-lr 1e-2
   --seed 5 --checkpoint-every 1 --steps 2 --fit-magnitude 6)
run "$OFT" train "${M[@]}" --out "$T/mag" --merged-out "$T/mag-m"
if [ $rc -eq 0 ] && grep -q '"gimp_oft_magnitude": true' "$T/mag/adapter_config.json" \
   && grep -q 'then 6 magnitude steps' "$T/out" && "$OFT" inspect "$T/mag" 2>/dev/null | grep -q "magnitude: per-output" \
   && "$OFT" generate -m "$T/mag-m" -p dog --steps 2 -W 64 -H 64 -o "$T/mag.png" >/dev/null 2>&1; then
  ok "--fit-magnitude writes oft_s with gimp_oft_magnitude; inspect and merge read it"
else not_ok "--fit-magnitude (exit $rc)"; fi
"$OFT" train "${M[@]}" --out "$T/magk" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 3000); do s=$(ckpt_step "$T/magk" 2>/dev/null); [ -n "$s" ] && [ "$s" -ge 3 ] && break; sleep 0.005; done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
s=$(ckpt_step "$T/magk")
run "$OFT" train "${M[@]}" --resume --out "$T/magk"
if [ $rc -eq 0 ] && cmp -s "$T/mag/adapter_model.safetensors" "$T/magk/adapter_model.safetensors"; then
  ok "killed at step $s of 2 + 6 and resumed: the same adapter byte for byte"
else not_ok "--fit-magnitude resume from step '$s' (exit $rc) differs"; fi

# the control task: image/condition/caption pairs, then generation from a condition and from a photo
mkdir -p "$T/pairs"
for name in astronaut coffee; do
  cp "$G/conditions/images/$name.png" "$T/pairs/$name.png"
  cp "$G/conditions/canny/${name}__rgb100_200.png" "$T/pairs/$name-edges.png"
  echo "{\"image\": \"$name.png\", \"condition\": \"$name-edges.png\", \"caption\": \"a photo of a $name\"}" >>"$T/pairs/m.jsonl"
done
run "$OFT" train -m "$G/pipeline" --task control --pairs "$T/pairs/m.jsonl" --steps 2 --resolution 64 --out "$T/ctl"
if [ $rc -eq 0 ] && [ -s "$T/ctl/condition_encoder.safetensors" ] && grep -q '"coft": true' "$T/ctl/adapter_config.json" \
   && grep -q 'ff.net.0.proj' "$T/ctl/adapter_config.json"; then
  ok "control task: adapter (COFT, with the GEGLU projection) and condition encoder written"
else not_ok "control task (exit $rc)"; fi
GEN=(generate -m "$G/pipeline" -p "a photo of an astronaut" --steps 2 --seed 3 -W 64 -H 64)
run "$OFT" "${GEN[@]}" --adapter "$T/ctl" --condition "$T/pairs/astronaut-edges.png" -o "$T/c1.png"
r1=$rc
run "$OFT" "${GEN[@]}" --adapter "$T/ctl" --condition-from "$T/pairs/astronaut.png" --condition-type canny -o "$T/c2.png"
if [ $r1 -eq 0 ] && [ $rc -eq 0 ] && [ -s "$T/c1.png" ] && [ -s "$T/c2.png" ]; then
  ok "generate with --condition and with --condition-from"
else not_ok "generate with a condition (exit $r1 / $rc)"; fi
run "$OFT" "${GEN[@]}" --condition "$T/pairs/astronaut-edges.png" -o "$T/c3.png"
if [ $rc -ne 0 ] && grep -q "needs a condition encoder" "$T/err" && [ ! -e "$T/c3.png" ]; then
  ok "a condition without an encoder is refused clearly"
else not_ok "a condition without an encoder (exit $rc)"; fi
echo '{"image": "nope.png", "condition": "x.png", "caption": "c"}' >"$T/pairs/bad.jsonl"
run "$OFT" train -m "$G/pipeline" --task control --pairs "$T/pairs/bad.jsonl" --steps 1 --out "$T/bad"
if [ $rc -ne 0 ] && grep -q "bad.jsonl: line 1: image .*nope.png does not exist" "$T/err"; then
  ok "a manifest naming a missing file is refused with its line"
else not_ok "a bad manifest (exit $rc)"; fi
# an `oft scenes --conditions` manifest has no "condition": the --condition-type key ("canny") stands in
run "$OFT" scenes --count 2 --size 64 --conditions --out "$T/scn"
run "$OFT" train -m "$G/pipeline" --task control --pairs "$T/scn/manifest.jsonl" --steps 1 --resolution 64 --out "$T/sctl"
if [ $rc -eq 0 ] && [ -s "$T/sctl/condition_encoder.safetensors" ]; then
  ok "a scenes manifest trains with its canny images as the conditions"
else not_ok "control task on a scenes manifest (exit $rc)"; fi

finish
