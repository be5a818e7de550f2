"""Start-up time of light commands, beside what Python and the heavy imports cost alone, in the same run.

    python benchmarks/startup.py --reps 7

Median wall seconds (min-max) of fresh processes, interleaved over
``--reps`` rounds: ``python -c pass`` (the interpreter), ``import zarr,
astropy.units`` and ``import torch`` (what a command avoids by importing them
only when it needs them), ``galaug --version``, ``galaug --help``, ``galaug
plugins`` and ``galaug info DATA`` (which reads a dataset, so it needs zarr).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import galaug


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    exe = str(Path(sys.executable).with_name("galaug"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.zarr"
        with galaug.create_dataset(data, bands="gr", image_size=16, provenance=galaug.make_entry("bench")) as w:
            w.append(np.zeros((8, 2, 16, 16), np.float32))
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import zarr, astropy.units": [sys.executable, "-c", "import zarr, astropy.units"],
            "import torch": [sys.executable, "-c", "import torch"],
            "galaug --version": [exe, "--version"],
            "galaug --help": [exe, "--help"],
            "galaug plugins": [exe, "plugins"],
            "galaug info DATA": [exe, "info", str(data)],
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):
            for name, cmd in cases.items():
                times[name].append(wall(cmd))
    print(f"median of {args.reps} interleaved rounds (min-max), seconds\n")
    print("| command | wall, s |")
    print("|---|---:|")
    for name, t in times.items():
        print(f"| `{name}` | {statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f}) |")


if __name__ == "__main__":
    main()
