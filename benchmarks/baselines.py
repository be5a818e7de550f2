"""Cost of the denoiser's classical baselines: milliseconds per band image to restore, seconds to tune.

    OMP_NUM_THREADS=1 python benchmarks/baselines.py real-val.zarr \\
        --degrade "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)" -n 200 --repeats 3

Reads the first ``-n`` images of the dataset (``clean`` if it has one,
else ``images``), degrades them with ``--degrade`` (seeds
``derive_seeds(0, row)``), and for each baseline of
:mod:`galaug_denoise.baselines`:

- restores every band of every image at the middle value of the
  baseline's grid, ``--repeats`` times, and prints the median and the
  spread of the milliseconds per band image (what ``galaug task eval``
  pays per band image and test set);
- tunes it once (:func:`galaug_denoise.baselines.tune`) on the first
  ``--tune`` (64) of those images, as the evaluation does on training
  images, and prints the seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import galaug
from galaug.degrade import derive_seeds, parse_pipeline
from galaug_denoise.baselines import BASELINES, psf_kernels, restore, tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--degrade", required=True)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--tune", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ds = galaug.open_dataset(args.data)
    field = "clean" if ds.clean_shape else "images"
    clean = torch.from_numpy(ds.read(0, args.n, fields=(field,))[field])
    pipeline = parse_pipeline(args.degrade)
    noisy = pipeline.apply(clean, derive_seeds(0, np.arange(len(clean)))).numpy()
    clean = clean.numpy()
    psf = psf_kernels(pipeline, *noisy.shape[1:])
    n, c, h, w = noisy.shape
    print(f"{args.data}: {n} images, {c} band(s), {h}x{w}; {args.degrade}; torch threads {torch.get_num_threads()}")
    print(f"{'baseline':10} {'ms / band image':>26} {'tune s':>8}")
    for name, baseline in BASELINES.items():
        if baseline.needs_psf and psf is None:
            print(f"{name:10} (no PSF in the degradation)")
            continue
        value = baseline.grid[len(baseline.grid) // 2]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            restore(name, noisy, [value] * c, psf=psf)
            times.append((time.perf_counter() - t0) / (n * c) * 1e3)
        t0 = time.perf_counter()
        tune(name, noisy[: args.tune], clean[: args.tune], psf=psf)
        tuned = time.perf_counter() - t0
        print(f"{name:10} {np.median(times):8.2f} (min {min(times):.2f}, max {max(times):.2f}) {tuned:8.1f}")


if __name__ == "__main__":
    main()
