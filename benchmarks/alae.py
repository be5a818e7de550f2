"""ALAE throughput: training and generation images/s at 32 and 64 pixels, and FLOP utilisation
against a matmul peak measured in the same run.

    python benchmarks/alae.py                 # CPU
    python benchmarks/alae.py --device cuda   # a GPU

Configs: 32 px = the `tiny` preset, 64 px = the `small` preset, 4 bands.
FLOPs of one generation batch and one training step are counted with
torch.utils.flop_counter (convolutions and matmuls, forward and backward);
utilisation = counted FLOP/s / peak FLOP/s, the peak being the best of a few
large fp32 matmuls on the same device in the same run. Training steps are
timed and counted without the R1 penalty (torch's FLOP counter cannot follow
its double backward); with lazy R1 (every 4 steps in `tiny`) it adds about a
third to a step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from galaug_alae.generator import PRESETS, AlaeConfig, Nets, _styles, _train_step


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def timed(fn, reps: int, device) -> float:
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--gen-batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    peak = matmul_peak(device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    for size, preset in ((32, "tiny"), (64, "small")):
        cfg = AlaeConfig(**PRESETS[preset])
        nets = Nets(cfg.net(a.bands)).to(device)
        opt_ed = torch.optim.Adam([*nets.E.parameters(), *nets.D.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
        opt_fg = torch.optim.Adam([*nets.F.parameters(), *nets.G.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
        x = torch.randn(cfg.batch_size, a.bands, size, size, device=device)
        level = cfg.net(a.bands).levels - 1
        z = torch.randn(a.gen_batch, cfg.latent_dim, device=device)

        @torch.no_grad()
        def gen():
            w = nets.F_ema(z)
            return nets.G_ema(_styles(w, nets.G.num_layers), nets.G.random_noise(len(z), device=device))

        def step():
            _train_step(nets, opt_ed, opt_fg, x, cfg, level, 1.0, cfg.batch_size, r1=False)

        t_gen, t_step = timed(gen, a.reps, device), timed(step, a.reps, device)
        f_gen, f_step = flops(gen), flops(step)
        gen_ips, train_ips = a.gen_batch / t_gen, cfg.batch_size / t_step
        print(f"{size:3d} px ({preset:5s}): generation {gen_ips:8.1f} img/s, {f_gen / t_gen / 1e9:6.1f} GFLOP/s "
              f"= {100 * f_gen / t_gen / peak:5.1f}% of peak | training {train_ips:7.1f} img/s "
              f"(batch {cfg.batch_size}, steps without R1), {f_step / t_step / 1e9:6.1f} GFLOP/s "
              f"= {100 * f_step / t_step / peak:5.1f}% of peak")


if __name__ == "__main__":
    main()
