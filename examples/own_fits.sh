#!/usr/bin/env bash
# Your own FITS cutouts, start to finish: ingest, look, split, train a generator, generate, mix,
# train and evaluate the denoiser, measure realism and interpolation, one HTML report.
#
#   bash examples/own_fits.sh CUTOUTS_DIR OUT_DIR
#   SIZE=32 STEPS=300 BANDS=g,r,i bash examples/own_fits.sh my-cutouts/ runs/mine
#   python examples/make_fake_cutouts.py fake-cutouts/ -n 200 && bash examples/own_fits.sh fake-cutouts/ runs/fake
#   CATALOG=frames/catalog.csv bash examples/own_fits.sh frames/ runs/frames    # stamps cut from frames
#   DETECT=1 bash examples/own_fits.sh frame_drz.fits runs/detected             # at the sources found on them
#   python examples/make_fake_cutouts.py fake-frames/ -n 200 --frame 2000 && \
#     CATALOG=fake-frames/catalog.csv bash examples/own_fits.sh fake-frames/ runs/fake-frames
#
# CUTOUTS_DIR holds one FITS file per galaxy (*.fits, *.fit, *.fts, optionally .gz; not recursive): a 2-d
# image, a (C, H, W) cube or one image HDU per band (see docs/ingest.md). Band names, pixel scale and
# flux unit come from the headers (BAND1..n / FILTER / EXTNAME, PIXSCALE or the WCS, BUNIT) unless set
# below. With CATALOG or DETECT, CUTOUTS_DIR is instead a FITS frame or a folder of frames, one per band, and
# one SIZE x SIZE stamp is cut per object (galaug ingest --cutouts / --detect; docs/ingest.md).
# Everything is written under OUT_DIR, which is created; outputs there are replaced when run again.
# The ALAE training dominates the time: 600 steps at 32x32 take a few minutes on 2 CPU cores (as in the
# demo); at the default 64x64 it takes several times that. DEVICE=cuda (or auto on a GPU) is much faster.
#
# Settings (environment variables; default in brackets):
#   BANDS         band names g,r,i ... of every file's planes, in order [from the headers, else b0,b1,...]
#   SIZE          image size: 16, 32, 64, 128 or 256 pixels (the ALAE needs a power of two) [64]
#   FIT           crop (the centre SIZE x SIZE) or resize (flux-conserving resampling) [crop]
#   ON_BAD        images with NaN/Inf pixels and unreadable files: reject, fill (with 0) or skip [skip]
#   PIXEL_SCALE   e.g. "0.2 arcsec", when the headers do not say [from the headers]
#   FLUX_UNIT     e.g. nJy, when BUNIT does not say [from the headers]
#   VAL           validation share of the split: 0.2, 20% or a count [0.2]
#   SEED          seed of every random step [0]
#   STEPS         ALAE training steps (preset tiny) [600]
#   ALAE_SET      more ALAE options, space-separated KEY=VALUE (`galaug config generator alae`) [none]
#   GEN_FACTOR    generated images, as a multiple of the training set [5]
#   REAL_SHARE    share of the real training set in the mix (the study's scarce-data arm) [0.1]
#   DEGRADE       the denoiser's degradation pipeline [psf:gaussian(fwhm=PSF_FWHM) and Gaussian noise of
#                 NOISE_FACTOR x the noise measured per band on the edges of the training images]
#   PSF_FWHM      FWHM in pixels of the default DEGRADE's Gaussian PSF [2]
#   NOISE_FACTOR  the default DEGRADE's noise, in units of the data's own noise [2]
#   DENOISE_SET   denoiser options, space-separated KEY=VALUE (`galaug config task denoise`)
#                 ["epochs=10 max_steps_per_epoch=100"]
#   REALISM_N     images per set in the realism analysis (statmorph: ~0.3 s each) [100]
#   INTERP_K      interpolation grid size, K x K [7]
#   SHOW_N        images per grid figure [25]
#   DEVICE        auto, cpu or cuda [auto]
#   PYTHON        the Python that has galaug installed, for the few one-line computations [python]
#   CATALOG       a CSV catalogue (ra,dec in degrees or x,y pixels; id optional): cut a stamp per row from
#                 the frames in CUTOUTS_DIR; objects too close to an edge are skipped [none]
#   DETECT        1: cut a stamp at each source that photutils detects on the frames [0]
#   INGEST_ONLY   1: stop after ingest, info and show, to look at what was read before the long steps [0]
set -euo pipefail

usage="usage: bash $0 CUTOUTS_DIR OUT_DIR  (settings as environment variables; see the top of $0)"
if [[ $# -ne 2 ]]; then echo "$usage" >&2; exit 2; fi
SRC=$1
OUT=$2
BANDS=${BANDS:-}
SIZE=${SIZE:-64}
FIT=${FIT:-crop}
ON_BAD=${ON_BAD:-skip}
PIXEL_SCALE=${PIXEL_SCALE:-}
FLUX_UNIT=${FLUX_UNIT:-}
VAL=${VAL:-0.2}
SEED=${SEED:-0}
STEPS=${STEPS:-600}
ALAE_SET=${ALAE_SET:-}
GEN_FACTOR=${GEN_FACTOR:-5}
REAL_SHARE=${REAL_SHARE:-0.1}
DEGRADE=${DEGRADE:-}
PSF_FWHM=${PSF_FWHM:-2}
NOISE_FACTOR=${NOISE_FACTOR:-2}
DENOISE_SET=${DENOISE_SET:-epochs=10 max_steps_per_epoch=100}
REALISM_N=${REALISM_N:-100}
INTERP_K=${INTERP_K:-7}
SHOW_N=${SHOW_N:-25}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python}
CATALOG=${CATALOG:-}
DETECT=${DETECT:-0}
INGEST_ONLY=${INGEST_ONLY:-0}

fail() { echo "Error: $*" >&2; exit 2; }
step() { echo; echo "== $*"; }

# -- check the input before anything is written ---------------------------------------------------
case $DETECT in 0|1) ;; *) fail "DETECT must be 0 or 1, got $DETECT";; esac
case $INGEST_ONLY in 0|1) ;; *) fail "INGEST_ONLY must be 0 or 1, got $INGEST_ONLY";; esac
[[ -n $CATALOG && $DETECT == 1 ]] && fail "give CATALOG (positions of a catalogue) or DETECT=1 (detection), not both"
[[ -z $CATALOG || -f $CATALOG ]] || fail "CATALOG $CATALOG: no such file"
frames=$([[ -n $CATALOG || $DETECT == 1 ]] && echo 1 || echo 0)
if [[ $frames == 1 && -f $SRC ]]; then
  fits_files=("$SRC")
else
  [[ -d $SRC ]] || fail "$SRC is not a folder (expected a folder of FITS cutouts$([[ $frames == 1 ]] && echo " or frames, or a frame"))"
  shopt -s nullglob nocaseglob
  fits_files=("$SRC"/*.fits "$SRC"/*.fit "$SRC"/*.fts "$SRC"/*.fits.gz "$SRC"/*.fit.gz "$SRC"/*.fts.gz)
  shopt -u nullglob nocaseglob
fi
[[ ${#fits_files[@]} -gt 0 ]] || fail "no FITS files (*.fits, *.fit, *.fts, or .gz) in $SRC"
case $SIZE in 16|32|64|128|256) ;; *) fail "SIZE must be 16, 32, 64, 128 or 256 (the ALAE's sizes), got $SIZE";; esac
command -v galaug >/dev/null || fail "galaug is not on PATH (activate the environment it is installed in)"
set_args() { local kv; for kv in $1; do printf '%s\n' --set "$kv"; done; }
mapfile -t alae_sets < <(set_args "$ALAE_SET")
mapfile -t denoise_sets < <(set_args "$DENOISE_SET")
ingest_opts=(--format fits --size "$SIZE" --fit "$FIT" --on-bad "$ON_BAD")
[[ -n $BANDS ]] && ingest_opts+=(--bands "$BANDS")
[[ -n $PIXEL_SCALE ]] && ingest_opts+=(--pixel-scale "$PIXEL_SCALE")
[[ -n $FLUX_UNIT ]] && ingest_opts+=(--flux-unit "$FLUX_UNIT")
[[ -n $CATALOG ]] && ingest_opts+=(--cutouts "$CATALOG")
[[ $DETECT == 1 ]] && ingest_opts+=(--detect)
mkdir -p "$OUT"
echo "${#fits_files[@]} FITS files in $SRC -> $OUT"

if [[ -n $CATALOG ]]; then
  what="stamps cut from ${#fits_files[@]} FITS frames at the positions of $(basename "$CATALOG")"
  step "ingest: cut a $SIZE x $SIZE stamp per row of $CATALOG from the frames (--on-bad $ON_BAD)"
elif [[ $DETECT == 1 ]]; then
  what="stamps cut from ${#fits_files[@]} FITS frames at the sources detected on them"
  step "ingest: detect the sources on the frames and cut a $SIZE x $SIZE stamp at each (--on-bad $ON_BAD)"
else
  what="${#fits_files[@]} FITS files from ${SRC}"
  step "ingest: read the cutouts into one dataset ($SIZE x $SIZE, --fit $FIT, --on-bad $ON_BAD)"
fi
galaug ingest "$SRC" "$OUT/real.zarr" "${ingest_opts[@]}" --overwrite

step "info: bands, pixel scale, flux unit and provenance of what was read"
galaug info "$OUT/real.zarr"

step "show: a grid of the first $SHOW_N cutouts (asinh stretch, colour for 3+ bands)"
galaug show "$OUT/real.zarr" "$OUT/real.png" -n "$SHOW_N" --overwrite
if [[ $INGEST_ONLY == 1 ]]; then
  step "done (INGEST_ONLY=1): $OUT/real.zarr and $OUT/real.png"
  exit 0
fi

step "split: disjoint training and validation sets (validation share $VAL, seed $SEED)"
galaug split "$OUT/real.zarr" --val "$VAL" --seed "$SEED" --overwrite
N_TRAIN=$("$PYTHON" -c "import galaug, sys; print(len(galaug.open_dataset(sys.argv[1])))" "$OUT/real-train.zarr")

step "train: the ALAE generator, preset tiny at $SIZE x $SIZE, $STEPS steps, on the $N_TRAIN training images"
rm -rf "$OUT/runs"
galaug train alae "$OUT/real-train.zarr" --preset tiny --set image_size="$SIZE" "${alae_sets[@]}" \
  --steps "$STEPS" --run-dir "$OUT/runs" --device "$DEVICE" --seed "$SEED"
RUN=$(ls -d "$OUT"/runs/*-alae-* | tail -1)

step "generate: ${GEN_FACTOR}x the training set ($((GEN_FACTOR * N_TRAIN)) images) from the trained generator"
galaug generate alae "$RUN" "$OUT/gen.zarr" -n $((GEN_FACTOR * N_TRAIN)) --seed "$SEED" --device "$DEVICE" --overwrite
galaug show "$OUT/gen.zarr" "$OUT/gen.png" -n "$SHOW_N" --overwrite

step "mix: $REAL_SHARE of the real training set + ${GEN_FACTOR}x generated (the scarce-data arm)"
galaug mix "$OUT/mix.zarr" --real-data "$OUT/real-train.zarr" --real "$REAL_SHARE" \
  --gen-data "$OUT/gen.zarr" --gen "${GEN_FACTOR}x" --seed "$SEED" --overwrite
galaug show "$OUT/mix.zarr" "$OUT/mix.png" -n "$SHOW_N" --random --seed "$SEED" --overwrite

if [[ -z $DEGRADE ]]; then
  # the noise of each band, measured on the outer pixels of the training images (1.4826 x the median
  # |difference| of horizontal neighbours / sqrt 2: blind to sky levels and smooth light), times
  # NOISE_FACTOR; 1% of the median peak for a band without noise
  NOISE=$("$PYTHON" - "$OUT/real-train.zarr" "$NOISE_FACTOR" <<'PY'
import sys
import numpy as np
import galaug
ds = galaug.open_dataset(sys.argv[1])
x = ds.read(0, 256, fields=["images"])["images"].astype(np.float64)    # (N, C, H, W)
d = np.diff(x, axis=-1) / np.sqrt(2)                                   # (N, C, H, W - 1)
w = max(2, x.shape[-1] // 8)
edge = np.ones(d.shape[-2:], bool)
edge[w:-w, w:-w] = False
sigma = 1.4826 * np.median(np.abs(d[..., edge]), axis=(0, 2))
peak = np.median(x.max(axis=(-2, -1)), axis=0)
sigma = np.where(sigma > 0, sigma, 0.01 * np.abs(peak))
print(", ".join(f"{float(sys.argv[2]) * s:.4g}" for s in sigma))
PY
)
  DEGRADE="psf:gaussian(fwhm=$PSF_FWHM)|noise:gaussian(std=[$NOISE])"
  echo
  echo "degradation from the data: PSF FWHM $PSF_FWHM pixels, noise $NOISE_FACTOR x the measured noise per band"
fi
echo "DEGRADE=\"$DEGRADE\""

step "degrade: the validation set as the denoiser will see it (a figure)"
galaug degrade "$OUT/real-val.zarr" "$OUT/real-val-degraded.zarr" --degrade "$DEGRADE" --seed "$SEED" \
  --overwrite
galaug show "$OUT/real-val-degraded.zarr" "$OUT/real-val-degraded.png" -n "$SHOW_N" --overwrite

step "task train: the denoiser on the mix, degraded on the fly"
rm -rf "$OUT/task-runs"
galaug task train denoise "$OUT/mix.zarr" --degrade "$DEGRADE" --run-dir "$OUT/task-runs" \
  "${denoise_sets[@]}" --device "$DEVICE" --seed "$SEED"
TASK_RUN=$(ls -d "$OUT"/task-runs/*-denoise-* | tail -1)

step "task eval: the denoiser on the validation set (nominal, lower resolution, 5x noise, both)"
galaug task eval denoise "$TASK_RUN" "$OUT/real-val.zarr" "$OUT/denoise-metrics.json" --device "$DEVICE" \
  --seed "$SEED" --overwrite
"$PYTHON" - "$OUT/denoise-metrics.json" "$OUT/denoise.md" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m = m.get("metrics", m)
rows = ["| test set | MSE (model) | MSE (degraded input) | PSNR dB (model) | PSNR dB (input) | SSIM (model) | SSIM (input) |",
        "|---|---:|---:|---:|---:|---:|---:|"]
for name, s in m["summary"].items():
    rows.append(f"| {name} | {s['mse']:.4g} | {s['input_mse']:.4g} | {s['psnr']:.2f} | {s['input_psnr']:.2f} "
                f"| {s['ssim']:.3f} | {s['input_ssim']:.3f} |")
text = (f"Evaluated on {m['n']} validation images, bands {', '.join(m['bands'])}; degradation {m['degrade']}.\n\n"
        + "\n".join(rows) + "\n")
open(sys.argv[2], "w").write(text)
print(text, end="")
PY

step "analyze realism: generated vs validation, with training vs validation as the floor (n=$REALISM_N)"
galaug analyze realism "$OUT/gen.zarr" "$OUT/real-val.zarr" "$OUT/real-train.zarr" "$OUT/realism" \
  --set n="$REALISM_N" --seed "$SEED" --overwrite

step "analyze interpolate: a $INTERP_K x $INTERP_K grid between four latents of the generator"
galaug analyze interpolate "$RUN" "$OUT/interpolate" --set k="$INTERP_K" --seed "$SEED" --overwrite

step "report: one HTML page of all of it"
cat > "$OUT/report.toml" <<TOML
title = 'galaug on your cutouts'
intro = '${what}, ingested at ${SIZE} x ${SIZE} pixels (${N_TRAIN} training images); an ALAE (preset tiny, ${STEPS} steps) generated ${GEN_FACTOR}x the training set; a denoiser was trained on ${REAL_SHARE} of the real training images plus the generated ones. Written by examples/own_fits.sh.'

[[section]]
title = "Your cutouts"
text = "The first ingested images (asinh stretch). galaug info real.zarr gives the bands, units and provenance."
images = [{path = "real.png", caption = "cutouts as ingested"}]

[[section]]
title = "Generated galaxies"
text = "Images drawn from the ALAE trained on the training split, in the units of your data."
images = [{path = "gen.png", caption = "generated images"}]

[[section]]
title = "The training mix"
text = "Real and generated images as the denoiser saw them (a random draw from mix.zarr)."
images = [{path = "mix.png", caption = "the mix of real and generated images"}]

[[section]]
title = "Denoiser on the validation set"
text = "Trained on the mix, degraded on the fly; evaluated on the validation set, where the model must beat the degraded input."
table = "denoise.md"
images = [{path = "real-val-degraded.png", caption = "validation images after the degradation: the denoiser's inputs"}]

[[section]]
title = "Realism"
text = "Generated vs validation images; training vs validation is the floor that sampling alone gives."
analysis = "realism"

[[section]]
title = "Latent interpolation"
analysis = "interpolate"
TOML
galaug report "$OUT/report.toml" "$OUT/report.html" --overwrite

step "done"
cat <<MSG
report:    $OUT/report.html  (manifest $OUT/report.toml: edit and rerun galaug report to change it)
datasets:  $OUT/real.zarr (+ -train, -val, -val-degraded), $OUT/gen.zarr, $OUT/mix.zarr
runs:      $RUN (the generator: options.json, metrics.jsonl, checkpoints/, samples-*.png)
           $TASK_RUN (the denoiser)
metrics:   $OUT/denoise-metrics.json, $OUT/denoise.md
analyses:  $OUT/realism/ (report.json, table.md, figures), $OUT/interpolate/
figures:   $OUT/real.png  $OUT/gen.png  $OUT/mix.png  $OUT/real-val-degraded.png
MSG
