#!/usr/bin/env bash
# The demo behind `make demo`: real galaxy cutouts through every step that exists so far.
set -euo pipefail
OUT=${1:-runs/demo}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"

echo "== plugins"
galaug plugins

echo; echo "== real galaxies: stamps from the Hubble Deep Field (scikit-image)"
python "$HERE/hubble_deep_field.py" "$OUT/real.zarr" --size 48 -n 120 --overwrite
galaug info "$OUT/real.zarr"

echo; echo "== split into train and validation"
galaug split "$OUT/real.zarr" --val 0.2 --seed 0 --overwrite
galaug show "$OUT/real-train.zarr" -o "$OUT/real-train.png" -n 25 --overwrite
galaug export "$OUT/real-val.zarr" --fits "$OUT/real-val-fits" --limit 8 --overwrite

echo; echo "== done"
echo "datasets:  $OUT/real.zarr, $OUT/real-train.zarr, $OUT/real-val.zarr"
echo "figure:    $OUT/real-train.png"
echo "FITS:      $OUT/real-val-fits/"
