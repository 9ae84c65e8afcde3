#!/usr/bin/env bash
# oft scenes / oft scenes analyse; prints TAP. Usage: test-cli-scenes.sh OFT_EXE
set -u
OFT=$1
. "$(dirname "$0")/tap.sh"

expect_ok "scenes writes a dataset with conditions" "$OFT" scenes --count 12 --seed 5 --out "$T/d" --conditions
if [ "$(wc -l < "$T/d/manifest.jsonl")" -eq 12 ] && [ -f "$T/d/00011.png" ] && [ -f "$T/d/00011-canny.png" ] \
   && [ -f "$T/d/00011-seg.png" ] && [ -f "$T/d/00011-segidx.png" ]; then
  ok "12 manifest lines, images and condition images"
else
  not_ok "12 manifest lines, images and condition images"
fi
expect_ok "the same seed again" "$OFT" scenes --count 12 --seed 5 --out "$T/e" --conditions
if cmp -s "$T/d/manifest.jsonl" "$T/e/manifest.jsonl" && cmp -s "$T/d/00007.png" "$T/e/00007.png"; then
  ok "same seed, same bytes"; else not_ok "same seed, same bytes"; fi
if grep -q '"split": "train"' "$T/d/manifest.jsonl" && ! grep -q '"split": "heldout"' "$T/d/manifest.jsonl"; then
  ok "the default split holds training captions only"; else not_ok "the default split holds training captions only"; fi
run "$OFT" scenes analyse --manifest "$T/d/manifest.jsonl"
expect_out "the analyser matches every caption of the dataset" '"images": 12, "matched": 12'
expect_ok "heldout split" "$OFT" scenes --count 4 --split heldout --size 96 --out "$T/h"
if [ "$(grep -c '"split": "heldout"' "$T/h/manifest.jsonl")" -eq 4 ]; then ok "heldout captions only"; else
  not_ok "heldout captions only"; fi
expect_ok "pattern instances" "$OFT" scenes --count 3 --pattern --out "$T/p"
if [ "$(grep -c '"caption": "a sks star"' "$T/p/manifest.jsonl")" -eq 3 ]; then ok "pattern captions are 'a sks star'"
else not_ok "pattern captions are 'a sks star'"; fi
run "$OFT" scenes analyse "$T/p/00000.png" --caption "a sks star"
expect_out "analyse --caption on a pattern render matches" '"match": true'
run "$OFT" scenes analyse "$T/p/00000.png" --caption "a red star"
expect_out "a plain-star caption does not match the pattern" '"match": false'
expect_fail "a caption outside the grammar fails clearly" "word 2 'purple'.*expected|expected a colour" \
  "$OFT" scenes analyse "$T/p/00000.png" --caption "a purple hexagon"
expect_fail "a missing image fails clearly" "nope.png" "$OFT" scenes analyse "$T/nope.png"
expect_fail "--split bad fails clearly" "expected train, heldout or any" "$OFT" scenes --split bad --out "$T/x"
expect_fail "--size 4 fails clearly" "size of 16..4096" "$OFT" scenes --size 4 --out "$T/x"
expect_fail "no --out fails clearly" "expected --out DIR" "$OFT" scenes --count 2

finish
