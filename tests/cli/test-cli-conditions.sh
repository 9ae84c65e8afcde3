#!/usr/bin/env bash
# oft canny / segmap / eval against the condition goldens; prints TAP. Usage: test-cli-conditions.sh OFT_EXE
set -u
OFT=$1
. "$(dirname "$0")/tap.sh"
G=${OFT_GOLDEN_DIR:?OFT_GOLDEN_DIR must be set}/conditions
# same_edges WHAT OURS GOLDEN: identical binary maps (accuracy exactly 1 by oft eval canny, whose metric
# test-conditions checks against the golden numbers)
same_edges () {
  local what=$1; run "$OFT" eval canny "$2" "$3"
  if [ $rc -eq 0 ] && grep -Eq '"accuracy" : 1(\.0)?,?$' "$T/out"; then ok "$what"; else not_ok "$what"; fi
}

# canny: one case of each golden variant, reproduced pixel for pixel
run "$OFT" canny "$G/images/astronaut.png" "$T/a_rgb.png"
expect_out "canny reports the golden edge count" "23596 edge pixels"
same_edges "canny on RGB reproduces astronaut__rgb100_200.png" "$T/a_rgb.png" "$G/canny/astronaut__rgb100_200.png"
run "$OFT" canny --l2 --low 50 --high 150 "$G/images/coffee_gray.png" "$T/c_l2.png"
same_edges "canny --l2 50/150 reproduces coffee__g50_150_l2.png" "$T/c_l2.png" "$G/canny/coffee__g50_150_l2.png"
run "$OFT" canny --aperture 5 --low 400 --high 1000 "$G/images/camera_gray.png" "$T/k5.png"
same_edges "canny --aperture 5 reproduces camera__g400_1000_k5.png" "$T/k5.png" "$G/canny/camera__g400_1000_k5.png"
run "$OFT" canny --gray --blur "$G/images/chelsea.png" "$T/blur.png"
same_edges "canny --gray --blur reproduces chelsea__blur_g100_200.png" "$T/blur.png" "$G/canny/chelsea__blur_g100_200.png"
run "$OFT" canny --gray "$G/images/rocket.png" "$T/rg.png"
same_edges "canny --gray on RGB equals canny of the golden gray (rocket__g100_200.png)" "$T/rg.png" "$G/canny/rocket__g100_200.png"
expect_fail "canny --aperture 4 fails clearly" "aperture 4: expected 3, 5 or 7" \
  "$OFT" canny --aperture 4 "$G/images/astronaut.png" "$T/bad.png"
expect_fail "canny on a missing file names it" "$T/missing.png" "$OFT" canny "$T/missing.png" "$T/bad.png"
printf 'not an image' >"$T/junk.png"
expect_fail "canny on a non-image names it" "$T/junk.png: not a" "$OFT" canny "$T/junk.png" "$T/bad.png"
expect_fail "canny without OUT fails" "expected IN and OUT" "$OFT" canny "$G/images/astronaut.png"
[ -e "$T/bad.png" ] && echo "# bad.png should not exist" && fails=$((fails + 1))

# eval canny: the golden metric, on files and on folders of same-named PNGs
run "$OFT" eval canny "$G/canny/astronaut__blur_g100_200.png" "$G/canny/astronaut__g100_200.png"
expect_out "eval canny prints the golden IoU" '"iou" : 0\.4870630568882796'
expect_out "eval canny prints the golden F1" '"f1" : 0\.655067119893990'
expect_err "eval canny prints a human line" "IoU 0\.4871  F1 0\.6551"
mkdir -p "$T/pred" "$T/target"
for img in astronaut grace_hopper coffee chelsea camera rocket brick clock; do
  cp "$G/canny/${img}__blur_g100_200.png" "$T/pred/$img.png"
  cp "$G/canny/${img}__g100_200.png" "$T/target/$img.png"
done
run "$OFT" eval canny "$T/pred" "$T/target"
expect_out "eval canny on folders: the golden mean IoU of blur_pairs" '"iou" : 0\.377259562010771'
expect_out "eval canny on folders: 8 pairs" '"pairs" : 8'
rm "$T/target/clock.png"
expect_fail "eval canny names an unpaired file" "has no clock.png" "$OFT" eval canny "$T/pred" "$T/target"
expect_fail "eval canny on maps of different sizes fails" "same size" \
  "$OFT" eval canny "$G/canny/astronaut__g100_200.png" "$G/canny/coffee__g100_200.png"
run "$OFT" eval canny --detect "$G/images/grace_hopper.png" "$G/canny/grace_hopper__rgb100_200.png"
expect_out "eval canny --detect takes OFT's Canny of PRED (identical to the golden edges)" '"accuracy" : 1(\.0)?,?$'
expect_fail "eval with an unknown metric fails" "unknown metric" "$OFT" eval fid a b

# segmap: quantisation, index map, legend, --strict
expect_ok "segmap writes the colour map, index map and legend" \
  "$OFT" segmap "$G/seg/painted.png" "$T/seg.png" --index "$T/idx.png" --legend "$T/legend.png"
expect_out "segmap lists the classes used" "  2 sky +7191 px"
expect_err "segmap warns about off-palette pixels" "warning: .*483 pixels .*farther than 10 from every palette colour"
run "$OFT" eval segmentation "$T/idx.png" "$G/seg/painted_index.png"
expect_out "segmap --index equals painted_index.png (aAcc 1)" '"aAcc" : 1(\.0)?,'
if [ -s "$T/legend.png" ]; then ok "legend written"; else not_ok "legend written"; fi
expect_fail "segmap --strict fails on off-palette pixels" "483 pixels .* farther than 10" \
  "$OFT" segmap --strict "$G/seg/painted.png" "$T/strict.png"
[ -e "$T/strict.png" ] && echo "# strict.png should not exist" && fails=$((fails + 1))
expect_ok "segmap --strict accepts a map on the palette" "$OFT" segmap --strict "$T/seg.png" "$T/seg2.png"
expect_fail "segmap on a gray image fails" "expected a colour" "$OFT" segmap "$G/seg/gt_index.png" "$T/x.png"
mkdir -p "$T/data"
expect_ok "segmap falls back to the installed or source palette when OFT_DATA_DIR lacks it" \
  env OFT_DATA_DIR="$T/data" "$OFT" segmap "$G/seg/painted.png" "$T/x.png"
printf '{"classes": []}' >"$T/data/ade20k-palette.json"
expect_fail "segmap reports a broken palette in OFT_DATA_DIR by path" "$T/data/ade20k-palette.json: 0 classes" \
  env OFT_DATA_DIR="$T/data" "$OFT" segmap "$G/seg/painted.png" "$T/x.png"

# eval segmentation: the golden single and dataset numbers
run "$OFT" eval segmentation "$G/seg/pred_index.png" "$G/seg/gt_index.png"
expect_out "eval segmentation: golden mIoU" '"mIoU" : 0\.1841019923564812'
expect_out "eval segmentation: golden aAcc" '"aAcc" : 0\.9094742063492063'
expect_err "eval segmentation prints a human line" "mIoU 0\.1841  mAcc 0\.2309  aAcc 0\.9095"
mkdir -p "$T/sp" "$T/sg"
cp "$G/seg/pred_index.png" "$T/sp/a.png"; cp "$G/seg/gt_index.png" "$T/sg/a.png"
cp "$G/seg/pred2_index.png" "$T/sp/b.png"; cp "$G/seg/painted_truth_index.png" "$T/sg/b.png"
run "$OFT" eval segmentation "$T/sp" "$T/sg"
expect_out "eval segmentation on folders pools areas: golden dataset mIoU" '"mIoU" : 0\.1658923353462326'
expect_fail "eval segmentation refuses a colour map" "not a colour map|colour map" \
  "$OFT" eval segmentation "$G/seg/painted.png" "$G/seg/gt_index.png"

finish
