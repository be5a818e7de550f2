"""ALAE throughput: training and generation images/s at 32, 64 and 128 pixels, FLOP utilisation
against matmul peaks measured in the same run, and the Zarr loader's rate against what training consumes.

    python benchmarks/alae.py                                   # CPU, 32 64 128 px
    python benchmarks/alae.py --sizes 32 64 --reps 2            # fewer sizes, fewer steps
    python benchmarks/alae.py --device cuda                     # a GPU
    python benchmarks/alae.py --device cuda --amp bf16 --channels-last
    python benchmarks/alae.py --device cuda --preset paper --sizes 128   # one preset's widths at every size

Configs: 32 px = the `tiny` preset, 64 px = the `small` preset, 128 px = the
`small` preset's widths at image_size 128 (no preset trains at 128; with
`--preset NAME` every size takes that preset's widths), 4 bands, the preset's
batch (`--batch` overrides it). FLOPs of one generation batch and one
training step are counted with torch.utils.flop_counter (convolutions and
matmuls, forward and backward) on a batch of 2 and scaled to the batch
(every counted op is per sample); utilisation = counted FLOP/s / peak
FLOP/s, the peak being the best of a few large matmuls on the same device
in the same run (fp32; on a GPU also bf16, the reference of --amp bf16). Training
steps are timed and counted without the R1 penalty (torch's FLOP counter
cannot follow its double backward); with lazy R1 (every 4 steps in `tiny`)
it adds about a third to a step.

--amp bf16 and --channels-last set the AlaeConfig fields `amp` and
`channels_last` (an error if this galaug_alae has no such field). The
training step applies `amp` itself; the benchmark does what the training
loop does for `channels_last` (networks and batch in channels-last memory
format) and runs generation (F_ema, G_ema) under the same bfloat16
autocast.

Loader: for each size, a dataset of standard-normal float32 images (about
--loader-mb MB, incompressible, in the page cache once written) is read
through galaug.data.torch.make_loader (contiguous blocks, BlockSampler order,
the training batch) with 0 and --workers workers, each batch moved to the
device; the rate counts from the first batch on (worker start-up excluded).
The ratio loader img/s / training img/s must be at least 5 for loading never
to be the bottleneck. With AlaeConfig.loader_workers = 0 (the default) the
ALAE training process reads its batches itself, so the 0-worker ratio
applies there, and reading adds 1/ratio to a step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from galaug.data.torch import make_loader
from galaug_alae.generator import PRESETS, AlaeConfig, Nets, _styles, _train_step
from loader import write_random  # benchmarks/loader.py, beside this script

#: preset whose widths each size takes by default (image_size set to the size)
SIZE_PRESET = {16: "tiny", 32: "tiny", 64: "small", 128: "small", 256: "small"}
#: loader img/s over training img/s below which loading may become the bottleneck
TARGET_RATIO = 5.0


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype=torch.float32, *, n: int | None = None, reps: int = 10) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype`` (n = 2048 on a CPU, 8192 on a GPU)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def timed(fn, reps: int, device, *, warmup: int = 1) -> float:
    for _ in range(warmup):
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


def load_average() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def alae_config(size: int, a: argparse.Namespace) -> tuple[str, AlaeConfig]:
    """(label, config) of the ALAE measured at ``size`` pixels."""
    preset = a.preset or SIZE_PRESET[size]
    kw = {**PRESETS[preset], "image_size": size}
    if a.batch:
        kw["batch_size"] = a.batch
    if a.amp != "off":
        kw["amp"] = a.amp
    if a.channels_last:
        kw["channels_last"] = True
    return f"{preset}@{size}", AlaeConfig(**kw)


def measure(size: int, a: argparse.Namespace, device: torch.device) -> dict:
    """Generation and training images/s and GFLOP/s of the ALAE at ``size`` pixels."""
    label, cfg = alae_config(size, a)
    net = cfg.net(a.bands)
    nets = Nets(net).to(device)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.channels_last:  # as the training loop does with cfg.channels_last
        nets.to(memory_format=fmt)
    opt_ed = torch.optim.Adam([*nets.E.parameters(), *nets.D.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
    opt_fg = torch.optim.Adam([*nets.F.parameters(), *nets.G.parameters()], lr=cfg.lr, betas=(0.0, 0.99))
    level = net.levels - 1
    def runners(gen_batch: int, train_batch: int):
        x = torch.randn(train_batch, a.bands, size, size, device=device).contiguous(memory_format=fmt)
        z = torch.randn(gen_batch, cfg.latent_dim, device=device)

        @torch.no_grad()
        def gen():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
                w = nets.F_ema(z)
                return nets.G_ema(_styles(w, nets.G.num_layers), nets.G.random_noise(len(z), device=device))

        def step():  # under autocast when cfg.amp is bf16: _train_step applies it
            _train_step(nets, opt_ed, opt_fg, x, cfg, level, 1.0, train_batch, r1=False)

        return gen, step

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gen, step = runners(a.gen_batch, cfg.batch_size)
    t_gen = timed(gen, a.reps, device, warmup=a.warmup)
    t_step = timed(step, a.reps, device, warmup=a.warmup)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    gen2, step2 = runners(2, 2)  # FLOPs per sample, scaled to the batch
    f_gen, f_step = flops(gen2) / 2 * a.gen_batch, flops(step2) / 2 * cfg.batch_size
    return dict(size=size, label=label, batch=cfg.batch_size, gen_ips=a.gen_batch / t_gen,
                gen_flops=f_gen / t_gen, train_ips=cfg.batch_size / t_step, train_flops=f_step / t_step,
                step_s=t_step, mem_gib=mem)


def loader_rate(path: Path, *, batch: int, workers: int, device: torch.device) -> float:
    """Images/s of make_loader over one epoch, batches moved to ``device``, from the first batch on."""
    cuda = device.type == "cuda"
    loader = make_loader(path, batch_size=batch, num_workers=workers, seed=0, drop_last=True, pin_memory=cuda)
    batches = iter(loader)
    next(batches)["images"].to(device, non_blocking=cuda)  # worker start-up and the first read: not counted
    sync(device)
    t, seen = time.perf_counter(), 0
    for b in batches:
        seen += len(b["images"].to(device, non_blocking=cuda))
    sync(device)
    return seen / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], choices=sorted(SIZE_PRESET))
    p.add_argument("--preset", choices=sorted(PRESETS), help="widths of this preset at every size")
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--batch", type=int, help="training batch (default: the preset's)")
    p.add_argument("--gen-batch", type=int, help="generation batch (default 64 on a CPU, 256 on a GPU)")
    p.add_argument("--reps", type=int, help="timed repetitions (default 3 on a CPU, 20 on a GPU)")
    p.add_argument("--warmup", type=int, help="untimed repetitions first (default 1 on a CPU, 5 on a GPU)")
    p.add_argument("--amp", choices=["off", "bf16"], default="off", help="sets AlaeConfig.amp")
    p.add_argument("--channels-last", action="store_true", help="sets AlaeConfig.channels_last")
    p.add_argument("--workers", type=int, default=2, help="loader workers measured beside 0")
    p.add_argument("--loader-mb", type=float, default=128, help="size of each loader dataset, MB")
    p.add_argument("--no-loader", action="store_true", help="skip the loader measurement")
    a = p.parse_args()
    fields = {f.name for f in dataclasses.fields(AlaeConfig)}
    for flag, field, wanted in (("--amp bf16", "amp", a.amp != "off"), ("--channels-last", "channels_last",
                                                                         a.channels_last)):
        if wanted and field not in fields:
            p.error(f"{flag} needs the AlaeConfig field `{field}`, which this galaug_alae does not have")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    device = torch.device(a.device)
    gpu = device.type == "cuda"
    a.gen_batch = a.gen_batch or (256 if gpu else 64)
    a.reps = a.reps or (20 if gpu else 3)
    a.warmup = a.warmup if a.warmup is not None else (5 if gpu else 1)
    torch.manual_seed(0)

    peak = matmul_peak(device)
    # bf16 only on a GPU: a CPU without native bf16 runs matmuls in it about 50 times slower than in fp32,
    # while its convolutions (oneDNN) are not slowed alike, so a CPU bf16 "peak" would be no ceiling
    peak_bf16 = matmul_peak(device, torch.bfloat16) if gpu else None
    name = torch.cuda.get_device_name(device) if gpu else f"cpu, {torch.get_num_threads()} threads"
    print(f"device {name}; torch {torch.__version__}; load average {load_average()}")
    tf32 = (f"; TF32 in matmuls {torch.backends.cuda.matmul.allow_tf32}, in cuDNN convolutions "
            f"{torch.backends.cudnn.allow_tf32}; cudnn.benchmark {torch.backends.cudnn.benchmark}" if gpu else "")
    print(f"matmul peak fp32 {peak / 1e9:.1f} GFLOP/s"
          + (f", bf16 {peak_bf16 / 1e9:.1f} GFLOP/s" if peak_bf16 else "") + tf32)
    print(f"amp {a.amp}, channels-last {a.channels_last}; generation batch {a.gen_batch}, {a.warmup} warm-up + "
          f"{a.reps} timed repetitions; training steps without R1")

    ref = peak_bf16 if a.amp == "bf16" else None
    head = (f"{'size':>4s} {'config':10s} {'batch':>5s} | {'gen img/s':>10s} {'GFLOP/s':>9s} {'%fp32':>6s}"
            + (f" {'%bf16':>6s}" if ref else "")
            + f" | {'train img/s':>11s} {'s/step':>7s} {'GFLOP/s':>9s} {'%fp32':>6s}"
            + (f" {'%bf16':>6s}" if ref else "") + (f" | {'GPU GiB':>7s}" if gpu else ""))
    print(head)
    results = []
    for size in a.sizes:
        r = measure(size, a, device)
        results.append(r)
        line = (f"{size:4d} {r['label']:10s} {r['batch']:5d} | {r['gen_ips']:10.1f} {r['gen_flops'] / 1e9:9.1f} "
                f"{100 * r['gen_flops'] / peak:6.1f}" + (f" {100 * r['gen_flops'] / ref:6.1f}" if ref else "")
                + f" | {r['train_ips']:11.1f} {r['step_s']:7.3f} {r['train_flops'] / 1e9:9.1f} "
                f"{100 * r['train_flops'] / peak:6.1f}" + (f" {100 * r['train_flops'] / ref:6.1f}" if ref else "")
                + (f" | {r['mem_gib']:7.2f}" if gpu else ""))
        print(line, flush=True)
        if gpu:
            torch.cuda.empty_cache()

    if not a.no_loader:
        workers = sorted({0, a.workers})
        print(f"\nloader (make_loader, training batch, to {device}) against training consumption; "
              f"target ratio >= {TARGET_RATIO:g}")
        print(f"{'size':>4s} {'images':>6s} {'MB':>5s} {'train img/s':>11s} | "
              + " | ".join(f"{f'{w} workers img/s':>17s} {'ratio':>7s}" for w in workers) + " | verdict")
        with tempfile.TemporaryDirectory(prefix="galaug-bench-") as tmp:
            for r in results:
                size, batch = r["size"], r["batch"]
                mb_per_image = a.bands * size * size * 4 / 2**20
                n = max(int(a.loader_mb / mb_per_image), 16 * batch)
                path = Path(tmp) / f"loader-{size}.zarr"
                write_random(path, n=n, bands=a.bands, size=size)
                rates = [loader_rate(path, batch=batch, workers=w, device=device) for w in workers]
                ratios = [v / r["train_ips"] for v in rates]
                verdict = "ok" if min(ratios) >= TARGET_RATIO else (
                    f"ok with {workers[-1]} workers" if ratios[-1] >= TARGET_RATIO else "LOADER BOTTLENECK")
                print(f"{size:4d} {n:6d} {n * mb_per_image:5.0f} {r['train_ips']:11.1f} | "
                      + " | ".join(f"{v:17.0f} {q:6.1f}x" for v, q in zip(rates, ratios)) + f" | {verdict}",
                      flush=True)
    print(f"load average at the end {load_average()}")


if __name__ == "__main__":
    main()
