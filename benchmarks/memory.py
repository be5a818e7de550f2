"""Peak memory (RSS) of `galaug simulate`, `generate`, `degrade` and `mix` against the number of images.

    OMP_NUM_THREADS=1 nice python benchmarks/memory.py --sizes 1000,10000,100000

For each N, four commands run as their own processes on 64x64x4 float32
images, and the peak RSS of each is read from the kernel when it exits
(``wait4``'s ``ru_maxrss``): a table of MiB per command and N, with wall
seconds. The promise (docs/reliability.md): every figure stays under
1 GiB and does not grow with N.

- simulate: a 64x64x4 Gaussian-noise simulator registered as a plugin in
  the child (the command, writer and batching are galaug's; the built-in
  simulators draw with GalSim at ~0.1-0.25 s an image, days for 100,000
  here). ``--real-sim N`` adds ``simulate bulgedisk`` (GalSim) at one
  small N, for its own level.
- generate: an ALAE run at 64 px (tiny preset, trained 2 steps: memory does
  not depend on how well it is trained).
- degrade: ``psf:gaussian(sigma=1.5)|noise:gaussian(std=0.1)`` on the
  simulated dataset (output: images and clean, 2x the input).
- mix: half the simulated rows and N/2 generated ones (N rows out).

With ``--micro-batch 32,16,8,4`` it measures ALAE training instead:
``galaug train alae DATA --preset small --set micro_batch=M`` on 500
Sersic images (64 px, one band) for ``--steps`` steps at each M, over
``--rounds`` interleaved rounds: peak RSS, seconds per step (the median of
the steps after the first, from ``metrics.jsonl``), the CPU seconds of the
whole command, and the line ``fixed + per image x micro_batch`` fitted to
the peaks.

    python benchmarks/memory.py --micro-batch 32,16,8,4 --steps 6 --rounds 2

Disk: at N, about 4 x 64 KiB x N at once (simulated + generated + degraded
with clean): 26 GB for 100,000. Everything is written under ``--tmp`` and
removed; the script refuses to start when the free space is short.
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

import numpy as np

BANDS = ("g", "r", "i", "z")
SIZE = 64
IMAGE_BYTES = len(BANDS) * SIZE * SIZE * 4
GIB = 2**30


# -- the child: `python memory.py --child ARGS...` is `galaug ARGS...` with the noise simulator registered --

def _noise_plugin():
    import dataclasses

    import astropy.units as u

    from galaug.hookspecs import hookimpl
    from galaug.kinds import Layout, Simulator

    @dataclasses.dataclass
    class NoiseConfig:
        image_size: int = SIZE

    class Noise(Simulator):
        """Gaussian noise in 64x64x4 images: a simulator that costs nothing but memory traffic."""

        name = "bench-noise"
        Config = NoiseConfig

        def layout(self) -> Layout:
            return Layout(bands=BANDS, image_size=self.config.image_size, pixel_scale=0.2 * u.arcsec, flux_unit="nJy")

        def draw(self, rows, *, seed):
            s = self.config.image_size
            images = np.stack([np.random.default_rng([seed, r]).standard_normal((len(BANDS), s, s), np.float32)
                               for r in rows])
            return images, None

    @hookimpl
    def galaug_register(register):
        register.source(Noise)

    import types

    return types.SimpleNamespace(galaug_register=galaug_register)


def child(argv: list[str]) -> None:
    from galaug.cli import main
    from galaug.pluginmanager import get_manager

    get_manager().register(_noise_plugin(), name="bench-noise")
    main(argv)


# -- the parent ------------------------------------------------------------------------------------

def run(args: list[str], *, plugin: bool = False) -> tuple[float, float]:
    """Run ``galaug ARGS`` as a child; (peak RSS in MiB, wall seconds). Fails loudly on a non-zero exit."""
    rss, seconds, _ = run_usage(args, plugin=plugin)
    return rss, seconds


def run_usage(args: list[str], *, plugin: bool = False) -> tuple[float, float, float]:
    """:func:`run`, and the child's CPU seconds (user + system) as well."""
    args = [str(x) for x in args]
    cmd = [sys.executable, __file__, "--child", *args] if plugin else \
        [str(Path(sys.executable).with_name("galaug")), *args]
    env = {**os.environ, "GALAUG_PROGRESS": "0"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"galaug {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return usage.ru_maxrss / 1024, seconds, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def train_alae(micro: list[int], *, steps: int, rounds: int, images: int, tmp_parent: Path) -> None:
    """Peak RSS, seconds per step and CPU seconds of `train alae --preset small` at each micro-batch size,
    interleaved."""
    import json
    import statistics

    peaks: dict[int, list[float]] = {m: [] for m in micro}
    step_s: dict[int, list[float]] = {m: [] for m in micro}
    cpu_s: dict[int, list[float]] = {m: [] for m in micro}
    with tempfile.TemporaryDirectory(dir=tmp_parent, prefix="galaug-memory-") as tmp:
        tmp = Path(tmp)
        run(["simulate", "sersic", tmp / "sersic.zarr", "-n", images])
        for r in range(rounds):
            for m in micro:
                runs = tmp / f"runs-{m}-{r}"
                rss, _, cpu = run_usage(["train", "alae", tmp / "sersic.zarr", "--preset", "small", "--steps", steps,
                              "--set", f"micro_batch={m}", "--set", "log_every=1", "--run-dir", runs,
                              "--device", "cpu"])
                (run_dir,) = runs.iterdir()
                records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
                batch = json.loads((run_dir / "options.json").read_text())["config"]["batch_size"]
                seconds = statistics.median(batch / rec["images_per_s"] for rec in records[1:])  # after the first
                peaks[m].append(rss)
                step_s[m].append(seconds)
                cpu_s[m].append(cpu)
                print(f"  round {r + 1}, micro_batch={m:3d}: peak RSS {rss:6.0f} MiB, {seconds:5.2f} s a step, "
                      f"{cpu:6.1f} CPU s", file=sys.stderr, flush=True)
                shutil.rmtree(runs)

    knobs = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MALLOC_ARENA_MAX") if k in os.environ]
    print(f"\n`train alae --preset small` (batch_size {batch}) on {images} Sersic images, {steps} steps, "
          f"{os.cpu_count()} CPUs{', ' if knobs else ''}{' '.join(knobs)}; median of {rounds} interleaved rounds "
          f"(min-max)\n")
    print("CPU s: user + system time of the whole command (start-up, intensity fit, the steps, a checkpoint), "
          "which other jobs on the machine disturb less than the wall time\n")
    whole, whole_cpu = statistics.median(step_s[max(micro)]), statistics.median(cpu_s[max(micro)])
    print("| micro_batch | peak RSS | s a step | CPU s, whole run | vs the largest (s a step, CPU s) |")
    print("|---:|---:|---:|---:|---:|")
    for m in micro:
        p, t, c = peaks[m], step_s[m], cpu_s[m]
        print(f"| {m} | {statistics.median(p):,.0f} MiB ({min(p):,.0f}-{max(p):,.0f}) | "
              f"{statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f}) | "
              f"{statistics.median(c):.0f} ({min(c):.0f}-{max(c):.0f}) | "
              f"{statistics.median(t) / whole:.2f}x, {statistics.median(c) / whole_cpu:.2f}x |")
    per_image, fixed = np.polyfit(micro, [statistics.median(peaks[m]) for m in micro], 1)
    print(f"\npeak RSS ~ {fixed:,.0f} MiB + {per_image:.1f} MiB x micro_batch (least squares)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of images")
    p.add_argument("--real-sim", type=int, default=200, help="N for `simulate bulgedisk` (0: skip)")
    p.add_argument("--tmp", default=None, help="folder for the datasets (default: the system's temporary folder)")
    p.add_argument("--micro-batch", default=None,
                   help="comma-separated micro_batch values: measure `train alae --preset small` at each instead")
    p.add_argument("--steps", type=int, default=6, help="training steps a run (with --micro-batch)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (with --micro-batch)")
    p.add_argument("--images", type=int, default=500, help="Sersic images trained on (with --micro-batch)")
    a = p.parse_args()
    if a.micro_batch is not None:
        micro = [int(m) for m in a.micro_batch.split(",")]
        if a.steps < 2 or a.rounds < 1 or len(micro) < 2:
            raise SystemExit("--micro-batch needs two values or more, --steps at least 2 and --rounds at least 1")
        train_alae(micro, steps=a.steps, rounds=a.rounds, images=a.images,
                   tmp_parent=Path(a.tmp or tempfile.gettempdir()))
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    tmp_parent = Path(a.tmp or tempfile.gettempdir())
    need = 4.2 * IMAGE_BYTES * max(sizes)
    free = shutil.disk_usage(tmp_parent).free
    if free < need * 1.1:
        raise SystemExit(f"{tmp_parent}: {free / GIB:.1f} GiB free, N = {max(sizes)} needs {need / GIB:.1f} GiB")

    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory(dir=tmp_parent, prefix="galaug-memory-") as tmp:
        tmp = Path(tmp)
        # an ALAE run at 64 px, trained 2 steps on a small simulated set (same bands and pixel scale)
        run(["simulate", "bench-noise", tmp / "train.zarr", "-n", "64"], plugin=True)
        run(["train", "alae", tmp / "train.zarr", "--preset", "tiny", "--set", f"image_size={SIZE}",
             "--steps", "2", "--run-dir", tmp / "runs", "--device", "cpu"])
        (run_dir,) = (tmp / "runs").iterdir()
        if a.real_sim:
            rss, sec = run(["simulate", "bulgedisk", tmp / "bd.zarr", "-n", a.real_sim])
            rows.append(("simulate bulgedisk", a.real_sim, rss, sec))
            shutil.rmtree(tmp / "bd.zarr")
        for n in sizes:
            sim, gen, deg, mix = (tmp / f"{k}-{n}.zarr" for k in ("sim", "gen", "deg", "mix"))
            steps = [
                ("simulate", lambda: run(["simulate", "bench-noise", sim, "-n", n], plugin=True)),
                ("generate", lambda: run(["generate", "alae", run_dir, gen, "-n", n, "--device", "cpu"])),
                ("degrade", lambda: run(["degrade", sim, deg, "--device", "cpu",
                                         "--pipeline", "psf:gaussian(sigma=1.5)|noise:gaussian(std=0.1)"])),
                ("mix", lambda: run(["mix", mix, "--real-data", sim, "--real", "50%", "--gen-data", gen,
                                     "--gen", str(n // 2)])),
            ]
            for name, step in steps:
                rss, sec = step()
                rows.append((name, n, rss, sec))
                print(f"  {name:18s} N={n:>7d}: peak RSS {rss:6.0f} MiB, {sec:7.1f} s", file=sys.stderr, flush=True)
                if name in ("degrade", "mix"):
                    shutil.rmtree(deg if name == "degrade" else mix)
            shutil.rmtree(sim)
            shutil.rmtree(gen)

    knobs = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MALLOC_ARENA_MAX", "ZARR_THREADING__MAX_WORKERS")
             if k in os.environ]
    print(f"\npeak RSS (MiB) and wall time of each command, {len(BANDS)}x{SIZE}x{SIZE} float32 images "
          f"({IMAGE_BYTES // 1024} KiB each), {os.cpu_count()} CPUs{', ' if knobs else ''}{' '.join(knobs)}\n")
    print("| command | N | data written | peak RSS | wall |")
    print("|---|---:|---:|---:|---:|")
    for name, n, rss, sec in rows:
        factor = 2 if name == "degrade" else 1
        print(f"| {name} | {n:,} | {factor * n * IMAGE_BYTES / GIB:.2f} GiB | {rss:,.0f} MiB | {sec:,.0f} s |")
    worst = max(rss for _, _, rss, _ in rows)
    print(f"\nlargest peak: {worst:,.0f} MiB ({'under' if worst < 1024 else 'OVER'} 1 GiB)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
