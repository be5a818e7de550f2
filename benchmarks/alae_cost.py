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
"""

from __future__ import annotations

import argparse

import torch

from alae import flops, matmul_peak  # benchmarks/alae.py, beside this script
from galaug_alae.generator import PRESETS, AlaeConfig, Nets, _styles, _train_step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--utilisation", type=float, default=0.45, help="sustained share of the CPU matmul peak")
    p.add_argument("--gpu-tflops", type=float, default=20.0, help="an assumed sustained GPU rate, TFLOP/s")
    a = p.parse_args()
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
