"""Images/s of ``galaug simulate`` for each simulator, one process against several, in the same run.

    python benchmarks/simulate.py --n 256 --size 64 --workers 2

The one-process run is the baseline; the multi-process run must give the
identical dataset (checked) and shows what --workers buys on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from galaug.sources.bulgedisk import BulgeDisk, BulgeDiskConfig
from galaug.sources.sersic import Sersic, SersicConfig
from galaug.sources.simulate import simulate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    sims = {"sersic": Sersic(SersicConfig(image_size=a.size)),
            "bulgedisk": BulgeDisk(BulgeDiskConfig(image_size=a.size))}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sim in sims.items():
            sim.draw(range(2), seed=0)  # import GalSim outside the timing
            rates, images = {}, {}
            for workers in (1, a.workers):
                t = time.perf_counter()
                ds = simulate(sim, Path(tmp) / f"{name}-{workers}.zarr", a.n, seed=0, workers=workers)
                rates[workers] = a.n / (time.perf_counter() - t)
                images[workers] = ds.read()["images"]
            same = np.array_equal(images[1], images[a.workers])
            print(f"{name:10s} {a.n} x {len(sim.layout().bands)}x{a.size}x{a.size}: "
                  f"1 process {rates[1]:7.1f} img/s | {a.workers} workers {rates[a.workers]:7.1f} img/s "
                  f"| x{rates[a.workers] / rates[1]:.2f}  (identical output: {same})")

if __name__ == "__main__":
    main()
