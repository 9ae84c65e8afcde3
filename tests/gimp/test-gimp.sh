#!/usr/bin/env bash
# The GIMP plug-in end to end, headless: gimp-console-2.10 with a fresh profile and the built plug-in on
# its plug-in path runs Script-Fu on the golden tiny pipeline (128×128, 2 steps): set the preferences
# (model = the golden pipeline), generate onto a layer with the preferred model,
# a Canny layer, train 2 steps into an adapter (from the visible layers), generate with that adapter,
# save PNG and XCF, reload the XCF. gimp-console exits 0 even when a batch fails, so every check reads
# the log or the files. The pixels are checked against the `oft` CLI on the same settings (the CLI is
# itself checked against diffusers' goldens in test-cli.sh): the plug-in must add nothing and lose
# nothing between oftcore and the layer. Then LANGUAGE=de shows a translated layer name.
# Usage: test-gimp.sh PLUGIN_EXE OFT_EXE PO_BUILD_DIR   (OFT_CLI, if set, replaces OFT_EXE for training)
set -u
PLUGIN=$1 OFT=$2 PODIR=$3
P=${OFT_GOLDEN_DIR:-../shared/golden}/pipeline
n=0 failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
skip () { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check () { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
# gegl-imgcmp A B: 0 only when both files exist and their pixels are identical
same () { [ -s "$1" ] && [ -s "$2" ] && gegl-imgcmp "$1" "$2" >/dev/null 2>&1; }

if ! command -v gimp-console-2.10 >/dev/null || ! command -v gegl-imgcmp >/dev/null; then
  echo "1..0 # SKIP gimp-console-2.10 or gegl-imgcmp missing (Debian packages gimp, gegl)"; exit 0
fi
if [ ! -f "$P/model_index.json" ]; then echo "1..0 # SKIP golden pipeline missing: $P"; exit 0; fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/plug-ins/gimp-oft"
# a link: the build tree's rpath ($ORIGIN-relative) must still find liboftcore
ln -s "$(realpath "$PLUGIN")" "$T/plug-ins/gimp-oft/gimp-oft"
echo "(plug-in-path \"$T/plug-ins:/usr/lib/gimp/2.0/plug-ins\")" > "$T/gimprc"
# GIMP's and GTK's own allocations outlive the plug-in by design: no leak report under ASan (memory
# errors are still reported, and the first check looks for them)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export OFT_CLI=${OFT_CLI:-$OFT} OFT_LOCALEDIR=$PODIR OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
have_train=1
"$OFT_CLI" train --help >/dev/null 2>&1 || have_train=0

# GIMP2_DIRECTORY absent before the first run: GIMP creates the profile itself (platform notes)
gimp () {
  GIMP2_DIRECTORY="$T/profile" timeout 120 gimp-console-2.10 -i -d -f --gimprc="$T/gimprc" "$@" -b '(gimp-quit 0)' 2>&1
}
# One batch (each -b has its own globals): a failing stage stops the later ones, which their checks show.
gen='(plug-in-oft-preferences RUN-NONINTERACTIVE "'"$P"'" "'"$T"'/adapters" "cpu")
(define img (car (gimp-image-new 128 128 RGB)))
(define bg (car (gimp-layer-new img 128 128 RGB-IMAGE "Background" 100 LAYER-MODE-NORMAL)))
(gimp-image-insert-layer img bg 0 0)
(gimp-drawable-fill bg FILL-WHITE)
(define gen (car (plug-in-oft-generate RUN-NONINTERACTIVE img bg "a photo of a cat" "" "" "" 42 2 7.5 "ddim" 0 0 "none" -1 1.0)))
(file-png-save-defaults RUN-NONINTERACTIVE img gen "'"$T"'/gen.png" "gen.png")
(gimp-message (string-append "RECIPE " (caddr (car (gimp-item-get-parasite gen "oft-recipe")))))
(gimp-message "STAGE generate done")'
canny='(define canny (car (plug-in-oft-condition RUN-NONINTERACTIVE img gen "canny" 100 200)))
(file-png-save-defaults RUN-NONINTERACTIVE img canny "'"$T"'/canny.png" "canny.png")
(gimp-message "STAGE canny done")'
train='(plug-in-oft-train RUN-NONINTERACTIVE img gen "" "a photo of sks cat" "" "'"$P"'" "oft" 0 6e-5 2 1e-3 0 0 "'"$T"'/adapter")
(gimp-message "STAGE train done")'
gen2='(define gen2 (car (plug-in-oft-generate RUN-NONINTERACTIVE img canny "a photo of sks cat" "" "'"$P"'" "'"$T"'/adapter" 7 2 7.5 "ddim" 0 0 "none" -1 1.0)))
(file-png-save-defaults RUN-NONINTERACTIVE img gen2 "'"$T"'/gen2.png" "gen2.png")
(gimp-message "STAGE adapter-generate done")'
save='(gimp-xcf-save RUN-NONINTERACTIVE img gen "'"$T"'/out.xcf" "out.xcf")
(define img2 (car (gimp-file-load RUN-NONINTERACTIVE "'"$T"'/out.xcf" "out.xcf")))
(gimp-message (string-append "LAYERS" (apply string-append (map (lambda (l) (string-append " | " (car (gimp-item-get-name l)))) (vector->list (cadr (gimp-image-get-layers img2)))))))
(gimp-message (string-append "XCF-RECIPE " (caddr (car (gimp-item-get-parasite (vector-ref (cadr (gimp-image-get-layers img2)) (- (car (gimp-image-get-layers img2)) 2)) "oft-recipe")))))
(gimp-message "STAGE save done")'
start=$(date +%s)
if [ $have_train = 1 ]; then
  gimp -b "$gen $canny $train $gen2 $save" > "$T/log"
else
  gimp -b "$gen $canny $save" > "$T/log"
fi
echo "# gimp-console: $(( $(date +%s) - start )) s"
sed 's/^/# /' "$T/log" | head -60

check "no batch command failed (log has no 'execution error', 'Error' or CRITICAL)" \
  "! grep -qE 'execution error|^Error|CRITICAL|AddressSanitizer|runtime error:' '$T/log'"
check "preferences: oft-preferences.json in the profile holds the model folder" \
  "grep -qF '\"model-folder\" : \"$P\"' '$T/profile/oft-preferences.json'"
check "generate: the layer was added and saved as PNG" "grep -q 'STAGE generate done' '$T/log' && [ -s '$T/gen.png' ]"
"$OFT" generate --model "$P" --prompt "a photo of a cat" --seed 42 --steps 2 --guidance 7.5 --width 128 \
  --height 128 --out "$T/gen-cli.png" >/dev/null 2>&1
check "generate: the layer's pixels are oft generate's with the same seed (gegl-imgcmp: identical)" \
  "same '$T/gen.png' '$T/gen-cli.png'"
check "generate: the oft-recipe parasite holds prompt, seed, steps, model and version" \
  "grep 'RECIPE ' '$T/log' | grep -q '\"prompt\":\"a photo of a cat\"' && grep 'RECIPE ' '$T/log' | grep -q '\"seed\":42' \
   && grep 'RECIPE ' '$T/log' | grep -q '\"steps\":2' && grep 'RECIPE ' '$T/log' | grep -qF '\"model\":\"$P\"' \
   && grep 'RECIPE ' '$T/log' | grep -q '\"oft-version\"'"
check "canny: a condition layer saved as PNG" "grep -q 'STAGE canny done' '$T/log' && [ -s '$T/canny.png' ]"
"$OFT" canny "$T/gen.png" "$T/canny-cli.png" >/dev/null 2>&1
check "canny: the layer is oft canny of the generated layer (identical)" \
  "same '$T/canny.png' '$T/canny-cli.png'"
if [ $have_train = 1 ]; then
  check "train: 2 steps from the visible layers wrote a PEFT adapter, a checkpoint and the layer images" \
    "grep -q 'STAGE train done' '$T/log' && [ -s '$T/adapter/adapter_config.json' ] \
     && [ -s '$T/adapter/adapter_model.safetensors' ] && [ -d '$T/adapter/checkpoint' ] \
     && [ \$(ls '$T/adapter/instance-images' | wc -l) = 3 ]"
  # the same call again: the checkpoint makes the plug-in pass --resume; at step 2 of 2 nothing changes
  sum1=$(sha256sum < "$T/adapter/adapter_model.safetensors" 2>/dev/null)
  gimp -b '(let* ((i (car (gimp-file-load RUN-NONINTERACTIVE "'"$T"'/out.xcf" "out.xcf")))) (plug-in-oft-train RUN-NONINTERACTIVE i (car (gimp-image-get-active-layer i)) "'"$T"'/adapter/instance-images" "a photo of sks cat" "" "" "oft" 0 6e-5 2 1e-3 0 0 "'"$T"'/adapter") (gimp-message "STAGE resume done"))' > "$T/log-resume"
  sed 's/^/# /' "$T/log-resume" | grep -v '^# *$' | head -8
  check "train again into the same folder resumes from the checkpoint (step 2 of 2) and keeps the adapter" \
    "grep -q 'STAGE resume done' '$T/log-resume' && grep -q 'resuming at step 2 of 2' '$T/log-resume' \
     && [ \"\$(sha256sum < '$T/adapter/adapter_model.safetensors')\" = '$sum1' ]"
  "$OFT" generate --model "$P" --adapter "$T/adapter" --prompt "a photo of sks cat" --seed 7 --steps 2 \
    --guidance 7.5 --width 128 --height 128 --out "$T/gen2-cli.png" >/dev/null 2>&1
  check "generate with the trained adapter: identical to oft generate --adapter" \
    "grep -q 'STAGE adapter-generate done' '$T/log' && same '$T/gen2.png' '$T/gen2-cli.png'"
  check "layers after reloading the XCF: adapter layer, Canny, generated, background (top first)" \
    "grep -q 'LAYERS | Generated: a photo of sks cat | Canny edges | Generated: a photo of a cat | Background' '$T/log'"
else
  skip "train: 2 steps into an adapter" "train CLI not available (oft train)"
  skip "train again resumes from the checkpoint" "train CLI not available (oft train)"
  skip "generate with the trained adapter" "train CLI not available (oft train)"
  check "layers after reloading the XCF: Canny, generated, background (top first)" \
    "grep -q 'LAYERS | Canny edges | Generated: a photo of a cat | Background' '$T/log'"
fi
if [ $have_train = 1 ]; then
  # conditioned generation: a control adapter (adapter + condition encoder, trained by the CLI), the
  # canny layer as the condition; the layer must be oft generate --condition's image
  mkdir -p "$T/pairs"
  cp "$T/gen.png" "$T/pairs/i.png"; cp "$T/canny.png" "$T/pairs/c.png"
  echo '{"image": "i.png", "condition": "c.png", "caption": "a photo of a cat"}' > "$T/pairs/m.jsonl"
  "$OFT_CLI" train -m "$P" --task control --pairs "$T/pairs/m.jsonl" --steps 1 --resolution 64 --out "$T/ctl" \
    >/dev/null 2>&1
  cond='(let* ((i (car (gimp-file-load RUN-NONINTERACTIVE "'"$T"'/canny.png" "canny.png"))) (c (car (gimp-image-get-active-layer i))) (g (car (plug-in-oft-generate RUN-NONINTERACTIVE i c "a photo of a cat" "" "'"$P"'" "'"$T"'/ctl" 5 2 7.5 "ddim" 0 0 "canny" c 1.0)))) (file-png-save-defaults RUN-NONINTERACTIVE i g "'"$T"'/gen-cond.png" "gen-cond.png") (gimp-message "STAGE condition-generate done"))'
  nocond='(let* ((i (car (gimp-file-load RUN-NONINTERACTIVE "'"$T"'/canny.png" "canny.png"))) (c (car (gimp-image-get-active-layer i)))) (plug-in-oft-generate RUN-NONINTERACTIVE i c "cat" "" "'"$P"'" "'"$T"'/adapter" 5 2 7.5 "ddim" 0 0 "canny" c 1.0))'
  gimp -b "$cond" -b "$nocond" > "$T/log-ctl"
  sed 's/^/# /' "$T/log-ctl" | grep -v '^# *$' | head -8
  "$OFT" generate --model "$P" --adapter "$T/ctl" --condition "$T/canny.png" --prompt "a photo of a cat" --seed 5 \
    --steps 2 --guidance 7.5 --width 128 --height 128 --out "$T/gen-cond-cli.png" >/dev/null 2>&1
  check "conditioned generation (canny layer + control adapter) equals oft generate --condition" \
    "grep -q 'STAGE condition-generate done' '$T/log-ctl' && same '$T/gen-cond.png' '$T/gen-cond-cli.png'"
  check "a condition with an adapter that has no condition encoder fails clearly" \
    "grep -q 'needs a control adapter' '$T/log-ctl'"
else
  skip "conditioned generation" "train CLI not available (oft train)"
  skip "a condition without a condition encoder" "train CLI not available (oft train)"
fi
check "the recipe parasite survives the XCF round trip" "grep 'XCF-RECIPE ' '$T/log' | grep -q '\"seed\":42'"

# the three conditions on the golden condition images, each saved as PNG: Canny and landmarks against the
# OpenCV / dlib goldens, the segmentation map against `oft segmap`
C=${OFT_GOLDEN_DIR:-../shared/golden}/conditions
cond () { # image type out
  echo "(let* ((i (car (gimp-file-load RUN-NONINTERACTIVE \"$C/$1\" \"$1\"))) (l (car (gimp-image-get-active-layer i))) (c (car (plug-in-oft-condition RUN-NONINTERACTIVE i l \"$2\" 100 200)))) (file-png-save-defaults RUN-NONINTERACTIVE i c \"$T/$3\" \"$3\"))"
}
have_faces=1
[ -f /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml ] \
  && [ -f /usr/share/dlib/shape_predictor_68_face_landmarks.dat ] || have_faces=0
faces_batch=
[ $have_faces = 1 ] && faces_batch=$(cond images/grace_hopper.png landmarks landmarks.png)
# one gimp-console for the conditions and the bad inputs (each -b fails on its own): the bad inputs'
# execution errors are expected in this log
bad1='(let* ((i (car (gimp-image-new 64 64 RGB))) (l (car (gimp-layer-new i 64 64 RGB-IMAGE "x" 100 LAYER-MODE-NORMAL)))) (gimp-image-insert-layer i l 0 0) (plug-in-oft-generate RUN-NONINTERACTIVE i l "cat" "" "'"$T"'/no-such-model" "" 1 2 7.5 "ddim" 0 0 "none" -1 1.0))'
bad2='(let* ((i (car (gimp-image-new 64 64 RGB))) (l (car (gimp-layer-new i 64 64 RGB-IMAGE "x" 100 LAYER-MODE-NORMAL)))) (gimp-image-insert-layer i l 0 0) (plug-in-oft-generate RUN-NONINTERACTIVE i l "cat" "" "'"$P"'" "" 1 2 7.5 "warp" 0 0 "none" -1 1.0))'
gimp -b "$(cond images/astronaut.png canny canny-astronaut.png) $(cond seg/painted.png segmentation seg.png) $faces_batch (gimp-message \"STAGE conditions done\")" \
  -b "$bad1" -b "$bad2" > "$T/log-cond"
check "conditions: the batch ran to its end without memory errors" \
  "grep -q 'STAGE conditions done' '$T/log-cond' && ! grep -qE 'CRITICAL|AddressSanitizer|runtime error:' '$T/log-cond'"
check "condition canny 100/200 of astronaut.png is cv2.Canny's (golden canny/astronaut__rgb100_200.png)" \
  "same '$T/canny-astronaut.png' '$C/canny/astronaut__rgb100_200.png'"
"$OFT" segmap "$C/seg/painted.png" "$T/seg-cli.png" >/dev/null 2>&1
check "condition segmentation of painted.png is oft segmap's ADE20K snapping" "same '$T/seg.png' '$T/seg-cli.png'"
if [ $have_faces = 1 ]; then
  check "condition landmarks of grace_hopper.png is dlib's 68 points (golden faces/grace_hopper__landmarks.png)" \
    "same '$T/landmarks.png' '$C/faces/grace_hopper__landmarks.png'"
else
  skip "condition landmarks" "opencv-data or libdlib-data not installed"
fi

# bad input fails with the plug-in's message, not a crash
check "a missing model is an execution error naming the path" \
  "grep -q 'execution error' '$T/log-cond' && grep -q 'no-such-model' '$T/log-cond'"
check "an unknown scheduler is refused with the list of valid ones" "grep -q 'expected ddim, euler' '$T/log-cond'"

# i18n: the same domain through GIMP with LANGUAGE=de (C.UTF-8: gettext ignores LANGUAGE in the C locale)
LANG=C.UTF-8 LC_ALL= LANGUAGE=de gimp -b '(let* ((i (car (gimp-image-new 64 64 RGB))) (l (car (gimp-layer-new i 64 64 RGB-IMAGE "x" 100 LAYER-MODE-NORMAL)))) (gimp-image-insert-layer i l 0 0) (gimp-drawable-fill l FILL-WHITE) (gimp-message (string-append "NAME " (car (gimp-item-get-name (car (plug-in-oft-condition RUN-NONINTERACTIVE i l "canny" 100 200)))))))' > "$T/log-de"
check "LANGUAGE=de: the condition layer is named 'Canny-Kanten' by the plug-in in GIMP" "grep -q 'NAME Canny-Kanten' '$T/log-de'"
check "LANGUAGE=de: the menu label _Generate... is '_Erzeugen …' in the domain's catalogue" \
  "[ \"\$(LANG=C.UTF-8 LC_ALL= LANGUAGE=de TEXTDOMAINDIR='$PODIR' gettext -d gimp-oft '_Generate...')\" = '_Erzeugen …' ]"

echo "1..$n"
[ $failed = 0 ]
