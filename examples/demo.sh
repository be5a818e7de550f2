#!/usr/bin/env bash
# The demo behind `make demo`: the whole pipeline on embedded data, ending in runs/demo/report.html.
# Output in $1 (default runs/demo). About 14 minutes on 2 idle CPU cores (13 min 31 s measured with `make demo`
# after the experiment gained the oracle arms and the classical baselines).
#
# A few CPU minutes train only a weak generator, so the demo trains a short run itself (to show that
# training works) and takes the generated images of the experiment and the analyses from generators
# shipped in examples/checkpoints/ (the same tiny ALAE, trained longer by the commands in its README).
set -euo pipefail
OUT=${1:-runs/demo}
HERE=$(cd "$(dirname "$0")" && pwd)
N_REAL=${N_REAL:-1000}
TRAIN_STEPS=${TRAIN_STEPS:-600}
SHIPPED="$HERE/checkpoints"
mkdir -p "$OUT"
step() { echo; echo "== $*"; }

step "plugins"
galaug plugins

step "real galaxies: $N_REAL simulated g,r,i,z bulge+disk+knots galaxies, 32x32 at 0.4 arcsec/pixel"
galaug simulate bulgedisk "$OUT/real.zarr" -n "$N_REAL" --size 32 --set pixel_scale=0.4 --seed 0 --workers 2 --overwrite
galaug info "$OUT/real.zarr"

step "split into train and validation (seeded, disjoint)"
galaug split "$OUT/real.zarr" --val 0.2 --seed 0 --overwrite
galaug show "$OUT/real-train.zarr" "$OUT/real-train.png" -n 25 --overwrite

step "degrade the validation set: Gaussian PSF and noise (the denoiser's inputs)"
galaug degrade "$OUT/real-val.zarr" "$OUT/real-val-degraded.zarr" \
  --degrade "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)" --seed 0 --overwrite
galaug show "$OUT/real-val-degraded.zarr" "$OUT/real-val-degraded.png" -n 25 --overwrite

step "FITS out and back in"
galaug export "$OUT/real-val.zarr" "$OUT/real-val-fits" --limit 50 --overwrite
galaug ingest "$OUT/real-val-fits" "$OUT/real-val-reingested.zarr" --overwrite

step "real Hubble Deep Field stamps (scikit-image's image) through the Python API"
python "$HERE/hubble_deep_field.py" "$OUT/hdf.zarr" --size 48 -n 120 --overwrite
galaug show "$OUT/hdf.zarr" "$OUT/hdf.png" -n 25 --overwrite

step "train the ALAE generator (preset tiny, $TRAIN_STEPS steps)"
rm -rf "$OUT/runs"
galaug train alae "$OUT/real-train.zarr" --preset tiny --steps "$TRAIN_STEPS" --run-dir "$OUT/runs" --device cpu
RUN=$(ls -d "$OUT"/runs/*-alae-* | tail -1)
galaug info "$RUN"

step "samples of the demo's own short run"
galaug generate alae "$RUN" "$OUT/gen-demo-run.zarr" -n 200 --seed 0 --overwrite
galaug show "$OUT/gen-demo-run.zarr" "$OUT/gen-demo-run.png" -n 25 --overwrite

N_TRAIN=$(python -c "import galaug, sys; print(len(galaug.open_dataset(sys.argv[1])))" "$OUT/real-train.zarr")
if [ "$N_REAL" = 1000 ] && [ -z "${GEN_RUN:-}" ]; then
  # trained on exactly this training set (bulgedisk seed 0, split seed 0): the experiment stays fair
  GEN_RUN="$SHIPPED/alae-bulgedisk-tiny"
  GEN_FROM="the shipped generator examples/checkpoints/alae-bulgedisk-tiny (the same tiny ALAE trained on this training set for $(python -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" "$GEN_RUN/options.json") steps)"
  GEN_NAME="the shipped ALAE"  # the report describes it once, in its introduction
else
  GEN_RUN=${GEN_RUN:-$RUN}
  GEN_FROM="the generator $GEN_RUN"
  GEN_NAME=$GEN_FROM
fi
step "generate 5x the training set in two processes (the same images as one) with $GEN_FROM"
T0=$(date +%s.%N)
galaug generate alae "$GEN_RUN" "$OUT/gen.zarr" -n $((5 * N_TRAIN)) --seed 0 --overwrite --nproc 2
timing() { python -c "import json, sys; json.dump({'images': int(sys.argv[2]), 'seconds': float(sys.argv[3]) - float(sys.argv[4]), 'size': 32}, open(sys.argv[1], 'w'))" "$@"; }
timing "$OUT/gen-timing.json" $((5 * N_TRAIN)) "$(date +%s.%N)" "$T0"
galaug show "$OUT/gen.zarr" "$OUT/gen.png" -n 25 --overwrite

step "mix: 10% of the real training set + 5x generated (the study's scarce-data arm)"
galaug mix "$OUT/mix-10real+gen.zarr" --real-data "$OUT/real-train.zarr" --real 0.1 \
  --gen-data "$OUT/gen.zarr" --gen 5x --seed 0 --overwrite
galaug info "$OUT/mix-10real+gen.zarr"

step "denoiser on the 10% real + generated mix, evaluated on the validation set (nominal and shifted test sets)"
rm -rf "$OUT/task-runs"
galaug task train denoise "$OUT/mix-10real+gen.zarr" --degrade "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)" \
  --run-dir "$OUT/task-runs" --set epochs=3 --set width=16 --set blocks=3 --set batch_size=32 \
  --set max_steps_per_epoch=25 --device cpu
TASK_RUN=$(ls -d "$OUT"/task-runs/*-denoise-* | tail -1)
galaug task eval denoise "$TASK_RUN" "$OUT/real-val.zarr" --device cpu --overwrite

step "the ratio experiment (reduced: ${EXP_SEEDS:-2} seeds, 75 steps per arm, the study's arms with the oracle)"
cat > "$OUT/experiment.toml" <<TOML
task = "denoise"
real = "real-train.zarr"
val = "real-val.zarr"
gen = "gen.zarr"
oracle = true          # the real set is simulated: arms with fresh draws of its simulator, and each arm's usefulness
degrade = "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)"
seeds = [$(seq -s, 0 $((${EXP_SEEDS:-2} - 1)))]
out = "experiment"
metric = "mse"

[task_config]
width = 16
blocks = 3
epochs = 3
batch_size = 32
steps_per_epoch = 25   # every arm 3 x 25 = 75 gradient steps, whatever its number of images
lr = 0.002

[[arms]]
name = "100% real"
real = "1.0"

[[arms]]
name = "10% real"
real = "0.1"

[[arms]]
name = "5x gen"
real = "0"
gen = "5x"

[[arms]]
name = "5x gen + 100% real"
real = "1.0"
gen = "5x"

[[arms]]
name = "5x gen + 10% real"
real = "0.1"
gen = "5x"
TOML
rm -rf "$OUT/experiment"
galaug experiment ratios "$OUT/experiment.toml"

step "latent structure of the shipped Sersic-trained generator (examples/checkpoints/alae-sersic-tiny)"
# control images from the source it was trained on (32x32 at 0.792"/pixel, Gaussian PSF FWHM 1", noise 1% of the peak)
galaug simulate sersic "$OUT/sersic-control.zarr" -n 300 --size 32 --set pixel_scale=0.792 \
  --set noise_std=0.4428649139404297 --seed 11 --overwrite
galaug analyze latent-structure "$SHIPPED/alae-sersic-tiny" "$OUT/sersic-control.zarr" "$OUT/latent" \
  --set n="${LATENT_N:-600}" --set walk_latents=4 --set control=300 --seed 0 --overwrite

step "attribute editing: each sample moved along the latent direction of each Sersic parameter, -2 to +2 sigma"
galaug analyze attribute-editing "$SHIPPED/alae-sersic-tiny" "$OUT/latent" "$OUT/editing" \
  --set n="${EDIT_N:-40}" --seed 1 --overwrite

step "interpolation between four latents, and between four encoded validation galaxies"
galaug analyze interpolate "$GEN_RUN" "$OUT/interpolate" --seed 3 --overwrite
galaug analyze interpolate "$GEN_RUN" "$OUT/real-val.zarr" "$OUT/interpolate-encoded" \
  --set corners=encode --set rows=0,1,2,3 --overwrite

step "realism: generated vs held-out real galaxies, real training vs held-out as the floor"
galaug analyze realism "$OUT/gen.zarr" "$OUT/real-val.zarr" "$OUT/real-train.zarr" "$OUT/realism" \
  --set n="${REALISM_N:-150}" --set band=r --set workers=2 --seed 0 --overwrite
galaug analyze realism "$OUT/gen-demo-run.zarr" "$OUT/real-val.zarr" "$OUT/realism-demo-run" \
  --set n="${REALISM_N:-150}" --set band=r --set workers=2 --seed 0 --overwrite

step "memorisation: generated galaxies against their nearest training galaxy, held-out real galaxies as the yardstick"
galaug analyze memorisation "$OUT/gen.zarr" "$OUT/real-train.zarr" "$OUT/real-val.zarr" "$OUT/memorisation" \
  --seed 0 --overwrite

step "a second generator: a short diffusion run of the demo's own, and samples from the shipped diffusion model"
rm -rf "$OUT/runs-diffusion"
galaug train diffusion "$OUT/real-train.zarr" --preset tiny --steps "${DIFF_STEPS:-100}" --run-dir "$OUT/runs-diffusion" \
  --device cpu
DIFF_OWN=$(ls -d "$OUT"/runs-diffusion/*-diffusion-* | tail -1)
if [ "$N_REAL" = 1000 ] && [ -z "${DIFF_RUN:-}" ]; then
  DIFF_RUN="$SHIPPED/diffusion-bulgedisk-tiny"  # trained on exactly this training set, like the shipped ALAE
  DIFF_FROM="the shipped diffusion model examples/checkpoints/diffusion-bulgedisk-tiny"
else
  DIFF_RUN=${DIFF_RUN:-$DIFF_OWN}
  DIFF_FROM="the diffusion model $DIFF_RUN"
fi
T0=$(date +%s.%N)
galaug generate diffusion "$DIFF_RUN" "$OUT/gen-diffusion.zarr" -n "${DIFF_N:-400}" --seed 0 --overwrite --nproc 2
timing "$OUT/gen-diffusion-timing.json" "${DIFF_N:-400}" "$(date +%s.%N)" "$T0"
galaug show "$OUT/gen-diffusion.zarr" "$OUT/gen-diffusion.png" -n 25 --overwrite
galaug analyze realism "$OUT/gen-diffusion.zarr" "$OUT/real-val.zarr" "$OUT/real-train.zarr" "$OUT/realism-diffusion" \
  --set n="${REALISM_N:-150}" --set band=r --set workers=2 --seed 0 --overwrite
galaug analyze memorisation "$OUT/gen-diffusion.zarr" "$OUT/real-train.zarr" "$OUT/real-val.zarr" \
  "$OUT/memorisation-diffusion" --seed 0 --overwrite
python "$HERE/compare_generators.py" "$OUT/generators.md" \
  --generator "ALAE:run=$GEN_RUN,realism=$OUT/realism,memorisation=$OUT/memorisation,timing=$OUT/gen-timing.json" \
  --generator "diffusion:run=$DIFF_RUN,realism=$OUT/realism-diffusion,memorisation=$OUT/memorisation-diffusion,timing=$OUT/gen-diffusion-timing.json"

step "conditioning: the shipped Sersic diffusion model asked for r_half, n, q and flux on a grid, each image fitted"
# control images from the source it was trained on (as the ALAE's, but with flux drawn from 200 to 5000)
galaug simulate sersic "$OUT/sersic-control-flux.zarr" -n 200 --size 32 --set pixel_scale=0.792 \
  --set psf_fwhm=1.0 --set noise_std=0.4429 --set flux_range=200,5000 --seed 12 --overwrite
galaug analyze condition-check "$SHIPPED/diffusion-sersic-tiny" "$OUT/sersic-control-flux.zarr" \
  "$OUT/condition-check" --set grid="${COND_GRID:-5}" --set per_value="${COND_PER:-8}" --set max_control=100 \
  --seed 0 --overwrite

step "report"
cat > "$OUT/report.toml" <<TOML
title = "galaug demo"
intro = """Everything below was produced by make demo (examples/demo.sh) on this machine: $N_REAL simulated \
g, r, i, z bulge + disk galaxies split into training and validation sets, a tiny ALAE trained for $TRAIN_STEPS \
steps to show that training works, and the analyses. Generated images of the experiment, the interpolation and \
the realism section come from $GEN_FROM; the latent structure from the shipped Sersic-trained generator \
examples/checkpoints/alae-sersic-tiny. Each section says which."""

[[section]]
title = "Real and generated galaxies"
text = "Real (simulated) training galaxies next to generated ones: the generators should reproduce sizes, shapes, colours and the sky noise."
images = [
  {path = "real-train.png", caption = "25 galaxies of the real training set (i, r, g as R, G, B; asinh stretch)."},
  {path = "gen.png", caption = "25 images generated by $GEN_NAME."},
  {path = "gen-demo-run.png", caption = "25 images from the demo's own $TRAIN_STEPS-step run; the quality gate below and the last section measure them against the real galaxies."},
  {path = "hdf.png", caption = "Real galaxies: stamps cut from the Hubble Deep Field image that ships with scikit-image."},
  {path = "real-val-degraded.png", caption = "Validation galaxies degraded by the experiment's PSF and noise: the denoiser's inputs."},
]

[[section]]
title = "The quality gate"
text = "galaug generate holds its output to the statistics of the generator's training data (per-band pixel quantiles, flux and size) and refuses output far outside them; the verdicts, and any statistic outside the training range."
quality = ["gen.zarr", "gen-demo-run.zarr"]

[[section]]
title = "Does generated data help the denoiser?"
text = "The ratio experiment (reduced: 75 gradient steps per arm, ${EXP_SEEDS:-2} seeds): a denoiser trained on each mix of real and generated ($GEN_NAME) images, and on the same mixes with perfect generated images (the oracle: fresh draws of the simulator), evaluated on the same validation set beside four classical baselines; mean squared error, lower is better. docs/study.md has the full-length run."
experiment = "experiment"

[[section]]
title = "Is the latent space ordered by the Sersic parameters?"
text = "The shipped Sersic-trained generator: 7 parameters fitted to every generated image with BFGS; per parameter a hyperplane separates low from high values, and latents are projected on its normal (out of fold)."
analysis = "latent"

[[section]]
title = "Attribute editing along the latent directions"
text = "The same generator: ${EDIT_N:-40} samples moved along the direction of each parameter by -2 to +2 standard deviations of the projection; the median change of every fitted parameter (rows: the parameter edited), and one sample edited."
analysis = "editing"

[[section]]
title = "Interpolation between four random latents"
text = "Bilinear interpolation in w with $GEN_NAME; the table compares the largest neighbour step with a pixel cross-fade."
analysis = "interpolate"

[[section]]
title = "Interpolation between four encoded validation galaxies"
text = "The corners are the encodings of validation galaxies 0 to 3 (the encoder of $GEN_NAME)."
analysis = "interpolate-encoded"

[[section]]
title = "Realism: generated against real"
text = "Morphology (statmorph, after the same PSF and noise), power spectra, colours and pixel values of $GEN_NAME against held-out real galaxies, next to the floor: real training against held-out."
analysis = "realism"

[[section]]
title = "Memorisation: copies of training galaxies?"
text = "For each image generated by $GEN_NAME, the distance to its nearest training galaxy (per-image flux normalisation, up to rotations and flips), against held-out real galaxies' distances to the same training set: copies fall below the 1st percentile of the held-out distances."
analysis = "memorisation"

[[section]]
title = "A second generator: diffusion beside ALAE"
text = "The same measures for ${DIFF_N:-400} images of $DIFF_FROM (a conditional flow-matching U-Net, plugins/diffusion) and for the ALAE's images above: realism distances against the same floor, memorisation, training time (from each run's metrics) and the images/s of galaug generate in this demo (two processes). docs/diffusion.md has the full comparison, with the denoiser experiment."
table = "generators.md"
images = [
  {path = "gen-diffusion.png", caption = "25 images generated by $DIFF_FROM."},
  {path = "gen.png", caption = "25 images generated by $GEN_NAME, for comparison."},
]

[[section]]
title = "Realism of the diffusion model's images"
text = "Morphology, power spectra, colours and pixel values of $DIFF_FROM against held-out real galaxies, next to the floor."
analysis = "realism-diffusion"

[[section]]
title = "Conditioning: does the diffusion model make what it is asked for?"
text = "The shipped Sersic diffusion model (conditional on r_half, n, q and flux) sampled on a grid of requested values; each image fitted with a single Sersic profile; Spearman between requested and fitted values, next to the same fit of real control images against their true values."
analysis = "condition-check"

[[section]]
title = "Realism of the demo's own short run"
text = "The same measures for the $TRAIN_STEPS-step run (no floor row: compare with the section above)."
analysis = "realism-demo-run"
TOML
galaug report "$OUT/report.toml" "$OUT/report.html" --overwrite

step "results"
echo "The ratio experiment ($(head -1 "$OUT/experiment/results.md")):"
tail -n +2 "$OUT/experiment/results.md"
echo
echo "Latent structure of the shipped Sersic generator:"
python -c "import json, sys; print(json.load(open(sys.argv[1]))['results']['table'])" "$OUT/latent/report.json"
echo
echo "Realism ($GEN_FROM):"
cat "$OUT/realism/table.md"
echo
echo "Memorisation: $(python -c "import json, sys; print(json.load(open(sys.argv[1]))['results']['summary'])" "$OUT/memorisation/report.json")"
echo
echo "Diffusion beside ALAE (this demo):"
cat "$OUT/generators.md"
echo
echo "Conditioning of the shipped Sersic diffusion model:"
python -c "import json, sys; print(json.load(open(sys.argv[1]))['results']['table'])" "$OUT/condition-check/report.json"
echo
echo "report:     $OUT/report.html"
echo "datasets:   $OUT/real.zarr (+ -train, -val, -val-degraded, -val-reingested), hdf.zarr, gen.zarr, mix-10real+gen.zarr"
echo "runs:       $RUN and $DIFF_OWN (the demo's own), $TASK_RUN (denoiser); analyses in $OUT/latent, editing,"
echo "            interpolate*, realism*, memorisation*, condition-check"
