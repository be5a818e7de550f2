"""Ablation of the ALAE's artefacts: hot pixels, speckle and high-frequency power of generated vs real images.

Usage (the demo's training set, see docs/alae.md "Artefacts" for the runs)::

    python benchmarks/alae_artefacts.py --train real-train.zarr --val real-val.zarr \
        "legacy=runs/legacy/00000-alae-real-train" "legacy + bound at sampling only=BOUND:runs/legacy/00000-alae-real-train" \
        "fixed=runs/fix/00000-alae-real-train"

Each NAME=RUN is a generator run (``BOUND:RUN``: the same network with its
output bounded at sampling only); 800 samples (seed 0) of each are compared
with 800 training images, and the held-out images give the floor. Columns:
pixel range (and whether it lies within the training range widened by 50%),
the fraction of hot pixels (more than 10 MAD above the median of their 3x3
neighbourhood), the median log10 power (band r, normalised by flux squared)
at 0.28-0.38 and 0.41-0.50 cycles/pixel relative to the training set, and
the speckle: the standard deviation of the 3x3 high-pass residual in the
galaxy body (5x5-smoothed brightness between its 90th and 99th
percentiles), generated over real, per band.
"""
import argparse
import dataclasses

import numpy as np
import torch

import galaug
from galaug.generators import load_generator
from galaug_analyses.realism import power_spectrum
from scipy.ndimage import median_filter, uniform_filter
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
parser.add_argument("--train", required=True)
parser.add_argument("--val", required=True)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)
real = galaug.open_dataset(args.train).read(0, 800)["images"]
val = galaug.open_dataset(args.val).read()["images"]
def hot(x):
    r = x - median_filter(x, size=(1, 1, 3, 3))
    mad = 1.4826 * np.median(np.abs(r), axis=(0, 2, 3), keepdims=True)
    return float((r > 10 * mad).mean())
def logp(x):
    f, p = power_spectrum(x[:, 1])
    return np.array([np.nanmedian(np.log10(p[:, (f >= a) & (f <= b)].mean(1))) for a, b in ((0.28, 0.38), (0.41, 0.5))])
def speckle(x):  # high-pass std in the galaxy body (5x5-smoothed brightness between its 90th and 99th percentiles)
    r = x - uniform_filter(x, size=(1, 1, 3, 3)); s = uniform_filter(x, size=(1, 1, 5, 5))
    out = []
    for b in range(x.shape[1]):
        lo, hi = np.quantile(s[:, b], [0.9, 0.99]); m = (s[:, b] > lo) & (s[:, b] <= hi)
        out.append(float(np.std(r[:, b][m])))
    return np.array(out)
ref_p, ref_s = logp(real), speckle(real)
span = real.max() - real.min()
rows = [("real held-out (floor)", val)]
for name, run in (a.split("=", 1) for a in args.runs):
    bound = run.startswith("BOUND:")
    m = load_generator(run.removeprefix("BOUND:"))
    if bound:  # the same network, its output bounded at sampling only
        m.config = dataclasses.replace(m.config, output_bound=True)
    rows.append((name, m.sample(800, seed=0)["images"].numpy()))
print("| images | min | max | within train range +50% | hot pixels | dlog P 0.28-0.38 | dlog P 0.41-0.50 | speckle (gen/real, g r i z) |")
print("|---|---|---|---|---|---|---|---|")
print(f"| real train | {real.min():.0f} | {real.max():.0f} | yes | {hot(real):.4f} | 0 | 0 | 1 1 1 1 |")
for name, x in rows:
    ok = x.min() >= real.min() - 0.5 * span and x.max() <= real.max() + 0.5 * span
    dp = logp(x) - ref_p
    sp = speckle(x) / ref_s
    print(f"| {name} | {x.min():.0f} | {x.max():.0f} | {'yes' if ok else 'no'} | {hot(x):.4f} | {dp[0]:+.3f} | {dp[1]:+.3f} | {' '.join(f'{v:.2f}' for v in sp)} |")
