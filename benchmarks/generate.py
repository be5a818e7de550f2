"""Generation throughput of generator runs side by side: in process, and the whole `galaug generate` command.

    python benchmarks/generate.py "before=RUN_A" "after=RUN_B" -n 2000 --reps 3

For each NAME=RUN, interleaved over ``--reps`` rounds (so that a change in
the machine's load hits every run alike):

- in process: ``load_generator(RUN).sample(batch)`` over ``-n`` images in
  batches of ``--batch`` (the model loaded once, not timed), images/s;
- the whole command: ``galaug generate NAME RUN out.zarr -n N --seed 0``
  in a fresh process (start-up, sampling, the quality gate, writing the
  dataset), wall seconds and images/s.

Medians over the rounds, with the spread (min-max), are printed as one
Markdown table. Threads: ``--threads`` (default 1, what a busy 2-core
machine gives each job) for both, through torch and ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from galaug.generators import load_generator
from galaug.runs import Run


def in_process(run: str, n: int, batch: int) -> float:
    """Images/s of model.sample over n images in batches (the model loaded beforehand)."""
    model = load_generator(run, device="cpu")
    model.sample(min(batch, n), seed=99)  # warm-up: first-call allocations
    t = time.perf_counter()
    done = 0
    while done < n:
        k = min(batch, n - done)
        model.sample(k, seed=done)
        done += k
    return n / (time.perf_counter() - t)


def command(run: str, n: int, work: Path, threads: int) -> float:
    """Wall seconds of the whole `galaug generate` command in a fresh process."""
    out = work / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GALAUG_PROGRESS": "0"}
    name = Run.open(run, kind="generator").name
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "galaug", "generate", name, run, str(out), "-n", str(n), "--seed", "0"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN")
    p.add_argument("-n", type=int, default=2000, help="images per measurement")
    p.add_argument("--batch", type=int, default=256, help="in-process batch size")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = dict(r.split("=", 1) for r in args.runs)
    rates: dict[str, list[float]] = {k: [] for k in runs}
    walls: dict[str, list[float]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            for name, run in runs.items():
                rates[name].append(in_process(run, args.n, args.batch))
                walls[name].append(command(run, args.n, Path(tmp), args.threads))

    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    print(f"{args.n} images, {args.threads} thread(s), torch {torch.__version__}, median of {args.reps} "
          f"interleaved rounds (min-max)\n")
    print("| run | in process, images/s | `galaug generate`, s | `galaug generate`, images/s |")
    print("|---|---|---|---|")
    for name in runs:
        r, w = rates[name], walls[name]
        print(f"| {name} | {med(r):.0f} ({min(r):.0f}-{max(r):.0f}) | {med(w):.2f} ({min(w):.2f}-{max(w):.2f}) | "
              f"{args.n / med(w):.0f} |")


if __name__ == "__main__":
    main()
