"""What a whole ALAE training run costs, per preset: FLOPs counted, time extrapolated from measured rates.

    python benchmarks/alae_cost.py --bands 4

For each preset, one training step (batch of the preset, without the R1
penalty, at the preset's full resolution; progressive growing trains
lower resolutions first, so this is an upper bound per step) and one
generated image are run once under torch.utils.flop_counter (convolutions
and matmuls, forward and backward), with batch 2 for the training step and
the count scaled to the preset's batch. The total is the step count times
the steps of the preset. Time is then the total over a sustained rate:
the fp32 matmul peak measured here times the utilisation measured by
benchmarks/alae.py (``--utilisation``, 0.45 by default: what training
reached at 64 px on this CPU), and, for a GPU, a rate you give with
``--gpu-tflops`` (sustained, not the data-sheet peak): that line is an
extrapolation, not a measurement.

``--speed`` measures instead what share of the fp32 matmul peak the ALAE
reaches on this CPU, for this code and, with ``--before DIR``, for the
galaug_alae package in DIR (another checkout's ``plugins/alae``) side by
side::

    git worktree add /tmp/alae_before 9776099
    python benchmarks/alae_cost.py --speed --before /tmp/alae_before/plugins/alae --rounds 3

Each measurement is a fresh process (``PYTHONPATH=DIR`` for "before") at
``--threads`` threads; the rounds alternate before and after, so that the
load of the machine hits both alike. A process measures the peak (best of
ten 2048 x 2048 matmuls), then, on the ``tiny`` preset's networks with 4
bands at 32 px: generation, ``AlaeModel.sample`` of 256 images (z, F,
noise, G, back to data units) four times after a warm-up; and the training
step, ``_train_step`` on a batch of 16 without R1 (torch's FLOP counter
cannot follow its double backward), five times after two, with the
optimisers as the training loop makes them. FLOPs are counted once per
measured call (convolutions and matmuls, forward and backward). Printed:
medians over the rounds with their range, samples/s and % of that
process's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alae import flops, matmul_peak  # benchmarks/alae.py, beside this script
from galaug_alae.generator import PRESETS, AlaeConfig, Nets, _styles, _train_step


def measure_speed() -> dict:
    """Peak, generation and training-step rates of the galaug_alae on sys.path, in this process."""
    import galaug_alae.generator as alae
    from galaug.stretch import IntensityTransform

    torch.manual_seed(0)
    peak = matmul_peak(torch.device("cpu"))
    cfg = AlaeConfig(**PRESETS["tiny"])
    nets = Nets(cfg.net(4))
    images = np.random.default_rng(0).normal(5, 1, (64, 4, 32, 32)).astype(np.float32)
    layout = dict(bands=["g", "r", "i", "z"], image_size=32, pixel_scale={"value": 0.2, "unit": "arcsec"},
                  flux_unit="nJy")
    model = alae.AlaeModel(nets, IntensityTransform.fit(images), layout, 0, device="cpu", config=cfg)
    n, calls = 256, 4
    model.sample(n, seed=99)  # warm-up
    t = time.perf_counter()
    for i in range(calls):
        model.sample(n, seed=i)
    gen_s = (time.perf_counter() - t) / calls
    gen_flops = flops(lambda: model.sample(n, seed=0))

    if hasattr(alae, "_optimizers"):
        opt_ed, opt_fg = alae._optimizers(nets, cfg)
    else:  # before the training loop made them in _optimizers: plain Adam, as it did
        opt_ed = torch.optim.Adam([*nets.E.parameters(), *nets.D.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
        opt_fg = torch.optim.Adam([*nets.F.parameters(), *nets.G.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
    x = torch.from_numpy(images[:cfg.batch_size])

    def step():
        _train_step(nets, opt_ed, opt_fg, x, cfg, cfg.net(4).levels - 1, 1.0, cfg.batch_size, r1=False)

    steps = 5
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    step_s = (time.perf_counter() - t) / steps
    step_flops = flops(step)
    return dict(plugin=alae.__file__, peak=peak, gen_ips=n / gen_s, gen_util=gen_flops / gen_s / peak,
                train_ips=cfg.batch_size / step_s, train_util=step_flops / step_s / peak)


def speed(a: argparse.Namespace) -> None:
    """Before and after side by side: fresh processes, interleaved rounds, medians and ranges."""
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    env.pop("PYTHONPATH", None)
    versions = {"after": env}
    if a.before:
        versions = {"before": {**env, "PYTHONPATH": str(Path(a.before).resolve())}, **versions}
    runs: dict[str, list[dict]] = {k: [] for k in versions}
    for _ in range(a.rounds):
        for name, version_env in versions.items():
            out = subprocess.run([sys.executable, __file__, "--measure-speed", "--threads", str(a.threads)],
                                 env=version_env, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.splitlines()[-1]))
    print(f"torch {torch.__version__}, {a.threads} thread(s), median of {a.rounds} interleaved rounds (min-max); "
          f"tiny preset, 4 bands, 32 px; load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    for name, rs in runs.items():
        print(f"{name}: galaug_alae from {Path(rs[0]['plugin']).parent}")
    print("\n| code | fp32 matmul peak, GFLOP/s | generation, samples/s | generation, % of peak "
          "| training step, samples/s | training step, % of peak |")
    print("|---|---|---|---|---|---|")

    def cell(rs: list[dict], key: str, scale: float = 1.0, fmt: str = ".0f") -> str:
        v = sorted(r[key] * scale for r in rs)
        return f"{v[len(v) // 2]:{fmt}} ({v[0]:{fmt}}-{v[-1]:{fmt}})"

    for name, rs in runs.items():
        print(f"| {name} | {cell(rs, 'peak', 1e-9, '.1f')} | {cell(rs, 'gen_ips')} "
              f"| {cell(rs, 'gen_util', 100, '.1f')} | {cell(rs, 'train_ips', 1, '.1f')} "
              f"| {cell(rs, 'train_util', 100, '.1f')} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--utilisation", type=float, default=0.45, help="sustained share of the CPU matmul peak")
    p.add_argument("--gpu-tflops", type=float, default=20.0, help="an assumed sustained GPU rate, TFLOP/s")
    p.add_argument("--speed", action="store_true", help="measure the share of the matmul peak instead (tiny, 32 px)")
    p.add_argument("--before", metavar="DIR", help="--speed: also the galaug_alae package in DIR, for comparison")
    p.add_argument("--rounds", type=int, default=3, help="--speed: interleaved rounds")
    p.add_argument("--threads", type=int, default=1, help="--speed: torch threads")
    p.add_argument("--measure-speed", action="store_true", help=argparse.SUPPRESS)  # one child of --speed
    a = p.parse_args()
    if a.measure_speed:
        torch.set_num_threads(a.threads)
        print(json.dumps(measure_speed()))
        return
    if a.speed:
        speed(a)
        return
    torch.manual_seed(0)
    peak = matmul_peak(torch.device("cpu"))
    rate = a.utilisation * peak
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; CPU fp32 matmul peak {peak / 1e9:.1f} "
          f"GFLOP/s, sustained {a.utilisation:.0%} = {rate / 1e9:.1f} GFLOP/s; GPU assumed {a.gpu_tflops:g} TFLOP/s")
    print(f"{'preset':7s} {'size':>5s} {'batch':>5s} {'steps':>8s} {'GFLOP/step':>11s} {'GFLOP/gen img':>14s} "
          f"{'total PFLOP':>12s} {'CPU days':>9s} {'GPU hours':>10s}")
    for preset, kw in PRESETS.items():
        cfg = AlaeConfig(**kw)
        net = cfg.net(a.bands)
        nets = Nets(net)
        opt_ed = torch.optim.Adam([*nets.E.parameters(), *nets.D.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
        opt_fg = torch.optim.Adam([*nets.F.parameters(), *nets.G.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
        level = net.levels - 1
        b = 2
        x = torch.randn(b, a.bands, cfg.image_size, cfg.image_size)
        z = torch.randn(1, cfg.latent_dim)

        @torch.no_grad()
        def gen():
            w = nets.F_ema(z)
            return nets.G_ema(_styles(w, nets.G.num_layers), nets.G.random_noise(1))

        def step():
            _train_step(nets, opt_ed, opt_fg, x, cfg, level, 1.0, b, r1=False)

        per_step = flops(step) / b * cfg.batch_size
        per_gen = flops(gen)
        total = per_step * cfg.steps
        print(f"{preset:7s} {cfg.image_size:5d} {cfg.batch_size:5d} {cfg.steps:8d} {per_step / 1e9:11.1f} "
              f"{per_gen / 1e9:14.2f} {total / 1e15:12.2f} {total / rate / 86400:9.1f} "
              f"{total / (a.gpu_tflops * 1e12) / 3600:10.1f}")


if __name__ == "__main__":
    main()
