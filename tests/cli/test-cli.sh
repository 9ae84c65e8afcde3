#!/usr/bin/env bash
# The oft command line, end to end; prints TAP. Usage: test-cli.sh OFT_EXE CLI_HELPER
# (OFT_GOLDEN_DIR points at the golden data).
set -u
OFT=$1
. "$(dirname "$0")/tap.sh"
HELPER=$2
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}

cases="oft_linear oft_linear_coft oft_linear_neumann oft_linear_block_share oft_conv3x3 oft_conv1x1 boft_linear"

expect_ok "oft --help" "$OFT" --help
expect_out "oft --help lists the commands" "inspect.*adapter|adapter" 
expect_ok "oft --version" "$OFT" --version
expect_fail "unknown command fails" "unknown command" "$OFT" frobnicate
expect_ok "oft inspect --help" "$OFT" inspect --help
expect_ok "oft adapter merge --help" "$OFT" adapter merge --help
expect_out "merge --help names its options" "--base.*" 

# inspect: a safetensors file
run "$OFT" inspect "$G/oft_layers/oft_conv3x3/tensors.safetensors"
if [ $rc -eq 0 ] && grep -Eq '^ +weight +F32 +\[32, 16, 3, 3\] +18432$' "$T/out" \
   && grep -Eq '^ +oft_R +F32 +\[9, 120\] +4320$' "$T/out" && grep -q '^total: ' "$T/out"; then
  ok "inspect safetensors lists names, dtypes, shapes and sizes"
else not_ok "inspect safetensors lists names, dtypes, shapes and sizes"; fi
run "$OFT" inspect "$G/oft_layers/oft_linear/adapter/adapter_model.safetensors"
expect_out "inspect safetensors shows metadata" "format = pt"

# inspect: adapter folders
run "$OFT" inspect "$G/oft_layers/oft_linear/adapter"
if [ $rc -eq 0 ] && grep -q 'peft_type: OFT' "$T/out" && grep -q 'block size: 16' "$T/out" \
   && grep -q 'exact Cayley' "$T/out" && grep -Eq '^ +layer +64 +16 +4 +480$' "$T/out"; then
  ok "inspect OFT adapter: config and block layout"
else not_ok "inspect OFT adapter: config and block layout"; fi
run "$OFT" inspect "$G/unet_oft/adapter"
if [ $rc -eq 0 ] && grep -q 'modules: 128, parameters: 21728' "$T/out" && grep -q 'Cayley-Neumann series, 5 terms' "$T/out" \
   && grep -Eq '^ +down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q +32 +8 +4 +112$' "$T/out"; then
  ok "inspect UNet adapter: 128 modules"
else not_ok "inspect UNet adapter: 128 modules"; fi
run "$OFT" inspect "$G/oft_layers/boft_linear/adapter"
if [ $rc -eq 0 ] && grep -q 'peft_type: BOFT' "$T/out" && grep -q 'butterfly factors: 2' "$T/out" \
   && grep -Eq '^ +layer +64 +8 +2x8 +1088$' "$T/out"; then
  ok "inspect BOFT adapter"
else not_ok "inspect BOFT adapter"; fi
expect_fail "inspect a missing file fails naming it" "$T/missing.safetensors" "$OFT" inspect "$T/missing.safetensors"
printf 'not a safetensors file' >"$T/junk.safetensors"
expect_fail "inspect a corrupt file fails naming it" "$T/junk.safetensors" "$OFT" inspect "$T/junk.safetensors"

# merge every golden case: layer.weight must become weight_merged
for c in $cases; do
  D="$G/oft_layers/$c"
  "$HELPER" make-base "$D/tensors.safetensors" "$T/base-$c.safetensors" || echo "# make-base failed for $c"
  run "$OFT" adapter merge --base "$T/base-$c.safetensors" --adapter "$D/adapter" --out "$T/merged-$c.safetensors"
  if [ $rc -eq 0 ] && run "$HELPER" check-merged "$T/merged-$c.safetensors" "$D/tensors.safetensors" && [ $rc -eq 0 ]; then
    ok "merge $c reproduces weight_merged: $(cat "$T/out")"
  else not_ok "merge $c reproduces weight_merged"; fi
done
# the same with an F16 base: merged in f32, stored back as F16
for c in $cases; do
  D="$G/oft_layers/$c"
  "$HELPER" make-base "$D/tensors.safetensors" "$T/b16-$c.safetensors" f16 || echo "# make-base failed for $c"
  run "$OFT" adapter merge --base "$T/b16-$c.safetensors" --adapter "$D/adapter" --out "$T/m16-$c.safetensors"
  if [ $rc -eq 0 ] && run "$HELPER" check-merged "$T/m16-$c.safetensors" "$D/tensors.safetensors" f16 && [ $rc -eq 0 ]; then
    ok "merge $c into an F16 base: $(cat "$T/out")"
  else not_ok "merge $c into an F16 base"; fi
done

# failures: a base whose weight does not fit the adapter, missing files, a missing module
"$HELPER" make-base "$G/oft_layers/oft_linear/tensors.safetensors" "$T/wide.safetensors" wide
cp "$T/wide.safetensors" "$T/out-existing.safetensors"
expect_fail "merge onto a [96, 48] weight fails naming the shape problem" "layer\.weight.*\[96, 48\].*oft_R\.weight has shape \[4, 120\]" \
  "$OFT" adapter merge --base "$T/wide.safetensors" --adapter "$G/oft_layers/oft_linear/adapter" --out "$T/out-existing.safetensors"
if cmp -s "$T/wide.safetensors" "$T/out-existing.safetensors" && [ "$(ls -A "$T" | grep -c '^\.')" -eq 0 ]; then
  ok "a failed merge leaves the existing output untouched and no temporary file"
else not_ok "a failed merge leaves the existing output untouched and no temporary file"; fi
expect_fail "merge with a missing base fails naming it" "$T/nope.safetensors" \
  "$OFT" adapter merge --base "$T/nope.safetensors" --adapter "$G/oft_layers/oft_linear/adapter" --out "$T/x.safetensors"
expect_fail "merge with a missing adapter fails naming its config" "$T/noadapter/adapter_config.json" \
  "$OFT" adapter merge --base "$T/base-oft_linear.safetensors" --adapter "$T/noadapter" --out "$T/x.safetensors"
expect_fail "merge with an adapter module absent from the base fails" "no tensor 'down_blocks\..*\.weight' for module" \
  "$OFT" adapter merge --base "$T/base-oft_linear.safetensors" --adapter "$G/unet_oft/adapter" --out "$T/x.safetensors"
expect_fail "merge without --out is a usage error" "required" \
  "$OFT" adapter merge --base "$T/base-oft_linear.safetensors" --adapter "$G/oft_layers/oft_linear/adapter"
[ -e "$T/x.safetensors" ] && echo "# x.safetensors should not exist" && fails=$((fails + 1))

# generate: the golden DDIM run of prompt 0 (10 steps, guidance 7.5, 128×128) from its initial noise
P="$G/pipeline"
"$HELPER" extract "$P/reference.safetensors" ddim_init_latents 0 "$T/noise0.safetensors"
gen () { run "$OFT" generate --model "$P" --prompt "a photo of a cat" --steps 10 --guidance 7.5 \
         --scheduler ddim --init-noise "$T/noise0.safetensors" "$@"; }
gen --out "$T/cat.png"
if [ $rc -eq 0 ] && run "$HELPER" compare-png "$T/cat.png" "$P/ddim_image_0.png" && [ $rc -eq 0 ]; then
  ok "generate matches diffusers' ddim_image_0.png: $(cat "$T/out")"
else not_ok "generate matches diffusers' ddim_image_0.png"; fi
for mode in on-the-fly merged; do
  extra=; [ $mode = merged ] && extra=--merge
  gen --adapter "$G/unet_oft/adapter" $extra --out "$T/cat-oft.png"
  if [ $rc -eq 0 ] && run "$HELPER" compare-png "$T/cat-oft.png" "$G/unet_oft/pipeline_image_0.png" && [ $rc -eq 0 ]; then
    ok "generate with the OFT adapter ($mode) matches PEFT's pipeline_image_0.png: $(cat "$T/out")"
  else not_ok "generate with the OFT adapter ($mode) matches PEFT's pipeline_image_0.png"; fi
done
if run "$HELPER" compare-png "$T/cat.png" "$T/cat-oft.png" && [ $rc -ne 0 ]; then
  ok "the adapter changes the image"
else not_ok "the adapter changes the image"; fi
# a whole pipeline folder merged with the adapter generates PEFT's adapter image without --adapter
expect_ok "adapter merge --base MODEL_DIR writes a pipeline folder" \
  "$OFT" adapter merge --base "$P" --adapter "$G/unet_oft/adapter" --out "$T/merged-pipeline"
run "$OFT" generate --model "$T/merged-pipeline" --prompt "a photo of a cat" --steps 10 --guidance 7.5 \
  --init-noise "$T/noise0.safetensors" --out "$T/cat-merged-folder.png"
if [ $rc -eq 0 ] && run "$HELPER" compare-png "$T/cat-merged-folder.png" "$G/unet_oft/pipeline_image_0.png" && [ $rc -eq 0 ]; then
  ok "the merged pipeline folder matches PEFT's pipeline_image_0.png: $(cat "$T/out")"
else not_ok "the merged pipeline folder matches PEFT's pipeline_image_0.png"; fi
expect_fail "adapter merge into an existing folder is refused" "already exists" \
  "$OFT" adapter merge --base "$P" --adapter "$G/unet_oft/adapter" --out "$T/merged-pipeline"
expect_fail "a failed folder merge leaves nothing behind" "not a Linear|no tensor" \
  "$OFT" adapter merge --base "$P" --adapter "$G/oft_layers/oft_linear/adapter" --out "$T/merged-bad"
if ls "$T" | grep -q "merged-bad"; then not_ok "no merged-bad* folder remains"; else ok "no merged-bad* folder remains"; fi
expect_fail "generate with a bad size fails clearly" "width and height must be multiples of [0-9]+" \
  "$OFT" generate --model "$P" --prompt x --steps 2 --width 100 --out "$T/bad.png"
expect_fail "generate with a missing model says so" "nomodel: no such file or folder" \
  "$OFT" generate --model "$T/nomodel" --prompt x --out "$T/bad.png"
mkdir -p "$T/notpipeline"
expect_fail "generate with a folder that is no pipeline names model_index.json" "model_index.json" \
  "$OFT" generate --model "$T/notpipeline" --prompt x --out "$T/bad.png"
expect_fail "generate with an unknown scheduler lists the known ones" "dpmpp-2m-karras" \
  "$OFT" generate --model "$P" --prompt x --scheduler plms --out "$T/bad.png"
expect_fail "generate with an adapter for other modules fails naming the module" "not a Linear or Conv2d of this UNet" \
  "$OFT" generate --model "$P" --prompt x --steps 2 --adapter "$G/oft_layers/oft_linear/adapter" --out "$T/bad.png"
[ -e "$T/bad.png" ] && echo "# bad.png should not exist" && fails=$((fails + 1))
# no --model: the bundled default model (data/default-model), at its native 64×64
run "$OFT" generate --prompt "a red circle on a blue background" --steps 4 --guidance 4 --seed 1 --out "$T/default.png"
if [ $rc -eq 0 ] && grep -q "no --model given: the bundled default model .*default-model" "$T/err" \
   && [ "$(od -An -tu1 -j16 -N8 "$T/default.png" | tr -s ' ')" = " 0 0 0 64 0 0 0 64" ]; then
  ok "generate without --model uses the bundled default model (64×64)"
else not_ok "generate without --model (exit $rc)"; fi
expect_ok "tokenize prints ids" "$OFT" tokenize --model "$P" "a photo of a cat"
expect_out "tokenize matches transformers" "^\[\[49406, 320, 1125, 539, 320, 2368, 49407, 49407"

# hyperspherical energy: an OFT adapter (Cayley–Neumann, nearly orthogonal) leaves it unchanged
run "$OFT" eval energy --model "$P" --adapter "$G/unet_oft/adapter"
if [ $rc -eq 0 ] && grep -q '"total_merged"' "$T/out" && grep -q "128 layers" "$T/err" \
   && awk -F'"max_relative_change": ' 'NF > 1 { split ($2, a, "}"); exit !(a[1] + 0 < 1e-3) }' "$T/out"; then
  ok "eval energy: 128 layers, unchanged by the OFT adapter (< 1e-3 relative)"
else not_ok "eval energy"; fi
expect_fail "eval energy with an adapter for other modules fails naming the module" "module 'layer' is not in the UNet" \
  "$OFT" eval energy --model "$P" --adapter "$G/oft_layers/oft_linear/adapter"

finish
