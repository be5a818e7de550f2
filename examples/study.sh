#!/usr/bin/env bash
# The decisive CPU run of docs/study.md: the size sweep and the generated-only arms, with the oracle, the shipped
# generators and the classical baselines. Output in $1 (default runs/study). Resumes where it stopped: rerun it
# after an interruption. 1 hour 17 minutes on 2 CPU cores, and 21 more for the no-leak check (docs/study.md).
set -euo pipefail
OUT=${1:-runs/study}
HERE=$(cd "$(dirname "$0")" && pwd)
SHIPPED="$HERE/checkpoints"
mkdir -p "$OUT"
cd "$OUT"
step() { echo; echo "== $* ($(date +%H:%M:%S))"; }

step "the demo's data: 1,000 bulgedisk galaxies, split 800/200"
[ -e real.zarr ] || galaug simulate bulgedisk real.zarr -n 1000 --size 32 --set pixel_scale=0.4 --seed 0 --workers 2
[ -e real-train.zarr ] || galaug split real.zarr --val 0.2 --seed 0

step "4,000 images from each shipped generator (trained on this training set)"
[ -e gen-alae.zarr ] || galaug generate alae "$SHIPPED/alae-bulgedisk-tiny" gen-alae.zarr -n 4000 --seed 0 --nproc 2
[ -e gen-diffusion.zarr ] || galaug generate diffusion "$SHIPPED/diffusion-bulgedisk-tiny" gen-diffusion.zarr \
  -n 4000 --seed 0 --nproc 2

cp "$HERE/study.toml" study.toml
step "the size sweep: 50, 200 and 800 real images, alone and with 5x generated (each generator, the oracle)"
galaug experiment sizes study.toml
step "generated images only (5x the real set), each generator and the oracle"
# the same oracle draws (same simulator, config and seed) as the sweep's: reused instead of drawn again
[ -e study/oracle.zarr ] || cp -r study/sizes/oracle.zarr study/oracle.zarr
galaug experiment ratios study.toml

step "no leak: a 600-step diffusion recipe trained on all 800 real images and on each arm's own 200"
[ -e recipes ] || galaug train diffusion real-train.zarr --preset tiny --steps 600 --run-dir recipes --seed 0
# the 200-real and oracle rows are the sweep's (same seeds, nested rows and protocol): taken, not run again
mkdir -p noleak/sizes/results
cp -n study/sizes/results/200-real-s*.json study/sizes/results/200-real-5x-gen--oracle-s*.json noleak/sizes/results/
[ -e noleak/sizes/oracle.zarr ] || cp -r study/sizes/oracle.zarr noleak/sizes/oracle.zarr
cp "$HERE/study-noleak.toml" noleak.toml
galaug experiment sizes noleak.toml
step "done"
