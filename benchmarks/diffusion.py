"""Training steps/s and sampling images/s of the diffusion generator beside the ALAE's, in the same run.

    python benchmarks/diffusion.py --sizes 32,64 --threads 2

For each size (32 px: both generators' ``tiny`` preset; 64 px: ``small``),
on a dataset of random 4-band images (speed does not depend on the
pixels):

- training: ``galaug train NAME DATA --preset P --steps K`` in a fresh
  process; the median of the ``images_per_s`` lines of its
  ``metrics.jsonl`` after the first (start-up excluded), as steps/s and
  images/s;
- sampling: ``load_generator(RUN).sample`` over ``-n`` images in batches
  of 256 (the model loaded and warmed up first), images/s; the diffusion
  generator at several ODE step counts (``--diffusion-steps``, Heun: two
  network calls per step but the last), the ALAE once (one call).

Both generators are measured alternately with the same threads
(``--threads``, through torch and ``OMP_NUM_THREADS``), so a change in
the machine's load hits both alike. One Markdown table per size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from loader import write_random  # noqa: E402  benchmarks/loader.py, beside this script

from galaug.generators import load_generator  # noqa: E402

PRESET = {32: "tiny", 64: "small"}


def train(name: str, data: Path, root: Path, *, preset: str, steps: int, threads: int) -> tuple[Path, float]:
    """Train ``steps`` steps in a fresh process; (run directory, median images/s after the first log line)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GALAUG_PROGRESS": "0"}
    subprocess.run([sys.executable, "-m", "galaug", "train", name, str(data), "--preset", preset, "--steps",
                    str(steps), "--run-dir", str(root), "--set", "log_every=5", "--set", f"checkpoint_every={steps}",
                    "--set", "sample_every=100000", "--set", "transform_samples=256", "--device", "cpu"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    run = sorted(root.iterdir())[-1]
    rates = [json.loads(line)["images_per_s"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    return run, statistics.median(rates[1:] or rates)


def sample_rate(run: Path, n: int, **options) -> float:
    model = load_generator(run, device="cpu")
    model.sample(32, seed=99, **options)  # warm-up
    t = time.perf_counter()
    for start in range(0, n, 256):
        model.sample(rows=range(start, min(n, start + 256)), seed=0, **options)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="32,64")
    p.add_argument("--train-steps", type=int, default=40, help="training steps per measurement")
    p.add_argument("-n", type=int, default=256, help="images per sampling measurement")
    p.add_argument("--diffusion-steps", default="16,8,4", help="ODE steps of the diffusion sampler to time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bands", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ode_steps = [int(s) for s in args.diffusion_steps.split(",")]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.bands} bands, load average "
          f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"random{size}.zarr"
            write_random(data, n=512, bands=args.bands, size=size)
            preset = PRESET.get(size, "small")
            rows = []
            for name in ("alae", "diffusion"):
                run, rate = train(name, data, Path(tmp) / f"{name}{size}", preset=preset, steps=args.train_steps,
                                  threads=args.threads)
                batch = json.loads((run / "options.json").read_text())["config"]["batch_size"]
                if name == "alae":
                    sampled = [("one network call", sample_rate(run, args.n))]
                else:
                    sampled = [(f"{k} Heun steps ({2 * k - 1} calls)", sample_rate(run, args.n, steps=k))
                               for k in ode_steps]
                rows.append((name, preset, batch, rate, sampled))
            print(f"### {size} px ({preset} presets)\n")
            print("| generator | training steps/s | training images/s | sampling | sampling images/s |")
            print("|---|---:|---:|---|---:|")
            for name, preset_, batch, rate, sampled in rows:
                for i, (how, r) in enumerate(sampled):
                    lead = (f"| {name} ({preset_}, batch {batch}) | {rate / batch:.2f} | {rate:.0f} " if i == 0
                            else "| | | ")
                    print(f"{lead}| {how} | {r:.0f} |")
            print()


if __name__ == "__main__":
    main()
