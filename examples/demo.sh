#!/usr/bin/env bash
# The demo behind `make demo`: every step of the pipeline that exists so far, on embedded data.
# Output in $1 (default runs/demo). About 8 minutes on 2 CPU cores.
set -euo pipefail
OUT=${1:-runs/demo}
HERE=$(cd "$(dirname "$0")" && pwd)
N_REAL=${N_REAL:-1000}
TRAIN_STEPS=${TRAIN_STEPS:-600}
mkdir -p "$OUT"
step() { echo; echo "== $*"; }

step "plugins"
galaug plugins

step "real galaxies: $N_REAL simulated g,r,i,z bulge+disk+knots galaxies, 32x32 at 0.4 arcsec/pixel"
galaug simulate bulgedisk "$OUT/real.zarr" -n "$N_REAL" --size 32 --set pixel_scale=0.4 --seed 0 --workers 2 --overwrite
galaug info "$OUT/real.zarr"

step "split into train and validation (seeded, disjoint)"
galaug split "$OUT/real.zarr" --val 0.2 --seed 0 --overwrite
galaug show "$OUT/real-train.zarr" -o "$OUT/real-train.png" -n 25 --overwrite

step "degrade the validation set: Gaussian PSF and noise (the denoiser's inputs)"
galaug degrade "$OUT/real-val.zarr" "$OUT/real-val-degraded.zarr" \
  --pipeline "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)" --seed 0 --overwrite
galaug show "$OUT/real-val-degraded.zarr" -o "$OUT/real-val-degraded.png" -n 25 --overwrite

step "FITS out and back in"
galaug export "$OUT/real-val.zarr" --fits "$OUT/real-val-fits" --limit 50 --overwrite
galaug ingest "$OUT/real-val-fits" "$OUT/real-val-reingested.zarr" --overwrite

step "real Hubble Deep Field stamps (scikit-image's image) through the Python API"
python "$HERE/hubble_deep_field.py" "$OUT/hdf.zarr" --size 48 -n 120 --overwrite
galaug show "$OUT/hdf.zarr" -o "$OUT/hdf.png" -n 25 --overwrite

step "train the ALAE generator (preset tiny, $TRAIN_STEPS steps)"
rm -rf "$OUT/runs"
galaug train alae "$OUT/real-train.zarr" --preset tiny --steps "$TRAIN_STEPS" --run-dir "$OUT/runs" --device cpu
RUN=$(ls -d "$OUT"/runs/*-alae-* | tail -1)

step "generate 5x the training set"
N_TRAIN=$(python -c "import galaug, sys; print(len(galaug.open_dataset(sys.argv[1])))" "$OUT/real-train.zarr")
galaug generate alae "$RUN" "$OUT/gen.zarr" -n $((5 * N_TRAIN)) --seed 0 --overwrite
galaug show "$OUT/gen.zarr" -o "$OUT/gen.png" -n 25 --overwrite

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

step "the ratio experiment (reduced: ${EXP_SEEDS:-2} seeds, 3 short epochs per arm)"
cat > "$OUT/experiment.toml" <<TOML
task = "denoise"
real = "real-train.zarr"
val = "real-val.zarr"
gen = "gen.zarr"
degrade = "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)"
seeds = [$(seq -s, 0 $((${EXP_SEEDS:-2} - 1)))]
out = "experiment"
metric = "mse"

[task_config]
width = 16
blocks = 3
epochs = 3
batch_size = 32
max_steps_per_epoch = 25
lr = 0.002
TOML
rm -rf "$OUT/experiment"
galaug experiment ratios "$OUT/experiment.toml"

step "done"
cat <<MSG
datasets:  $OUT/real.zarr (+ -train, -val, -val-degraded, -val-reingested), $OUT/hdf.zarr, $OUT/gen.zarr,
           $OUT/mix-10real+gen.zarr
run:       $RUN (options.json, metrics.jsonl, checkpoints/, samples-*.png)
figures:   $OUT/real-train.png  $OUT/real-val-degraded.png  $OUT/hdf.png  $OUT/gen.png
experiment: $OUT/experiment/results.md (table), results.png (figure), results.csv, results.json
FITS:      $OUT/real-val-fits/
MSG
