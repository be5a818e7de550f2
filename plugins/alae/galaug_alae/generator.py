"""The ``alae`` generator component: config and presets, the training loop, the trained model."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from galaug import distributed, faults
from galaug.config import config_to_dict
from galaug.data import open_dataset, pixel_scale_quantity
from galaug.data.torch import random_dihedral, step_loader
from galaug.degrade.seeds import derive_seeds
from galaug.errors import GalaugError
from galaug.kinds import Generator, GeneratorModel, Layout
from galaug.runs import Training, check_image_data, config_from_options, layout_record, rank_rows
from galaug_alae.checkpoint import checkpoint_store, load_checkpoint
from galaug_alae.model import Discriminator, Encoder, Mapping, NetConfig, Synthesis, upsample2x
from galaug.stretch import IntensityTransform

__all__ = ["AlaeConfig", "Alae", "AlaeModel"]


@dataclasses.dataclass
class AlaeConfig:
    """Options of the ALAE generator (``galaug config generator alae``)."""

    #: power of two from 16 to 256; must match the training images
    image_size: int = 64
    #: size of z and of w
    latent_dim: int = 128
    mapping_layers: int = 8
    #: learning-rate multiplier of F (lower, as in ALAE)
    mapping_lr_mul: float = 0.1
    #: channels at resolution r: min(fmap_max, fmap_base / r)
    fmap_base: int = 2048
    fmap_max: int = 256
    disc_layers: int = 3
    batch_size: int = 32
    #: images a process runs through the networks at once: each update accumulates its gradients over
    #: micro-batches of this size (the last may be smaller) and steps once, so peak memory follows micro_batch,
    #: not batch_size; unset: the whole batch at once
    micro_batch: int | None = None
    steps: int = 20000
    lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    #: R1 penalty weight gamma: gamma / 2 * |grad_x D(E(x))|^2
    r1_gamma: float = 10.0
    #: compute R1 every k steps, scaled by k (lazy regularisation, StyleGAN2); 1 = every step
    r1_every: int = 1
    #: exponential moving average of F and G used for sampling
    ema_beta: float = 0.999
    #: moving average of w used for truncation
    w_avg_beta: float = 0.995
    #: probability of mixing two styles at a random layer during training
    style_mixing: float = 0.9
    #: random flips and 90-degree rotations of the training images
    augment: bool = True
    progressive: bool = False
    #: progressive: first resolution, and steps per new level (half fade-in, half stable)
    start_resolution: int = 8
    level_steps: int = 5000
    stretch: Literal["asinh", "linear"] = "asinh"
    #: softly keep generated values within the training data's range in stretched units, so that the
    #: exponential inverse of the stretch cannot turn an overshoot into a hot pixel
    output_bound: bool = True
    #: "data": G makes noiseless galaxies and Gaussian sky noise of the training data's measured per-band level
    #: is added in data units (before E sees them, and to every sample); "network": G's noise inputs must
    #: learn the sky noise too (the original design, and what checkpoints made before this option use)
    sky_noise: Literal["data", "network"] = "data"
    #: asinh softening as a multiple of the robust noise scale
    softening: float = 1.0
    #: images used to fit the intensity transform
    transform_samples: int = 4000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 1000
    log_every: int = 20
    #: mixed precision: "bf16" runs the networks under bfloat16 autocast (weights and optimiser stay float32)
    amp: Literal["off", "bf16"] = "off"
    #: channels-last memory format for the convolutions (faster on GPUs with tensor cores)
    channels_last: bool = False
    #: DataLoader worker processes reading the store (each opens it itself); 0: in the training process
    loader_workers: int = 0

    def __post_init__(self) -> None:
        if self.image_size not in (16, 32, 64, 128, 256):
            raise ValueError(f"image_size must be a power of two from 16 to 256, got {self.image_size}")
        if self.start_resolution not in (4, 8, 16, 32, 64, 128, 256) or self.start_resolution > self.image_size:
            raise ValueError("start_resolution must be a power of two, at least 4 and at most image_size")
        for name in ("latent_dim", "mapping_layers", "fmap_base", "fmap_max", "batch_size", "steps",
                     "checkpoint_every", "keep_checkpoints", "sample_every", "log_every", "level_steps", "r1_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.micro_batch is not None and not 1 <= self.micro_batch <= self.batch_size:
            raise ValueError(f"micro_batch must be from 1 to batch_size ({self.batch_size}), got {self.micro_batch}")
        if self.loader_workers < 0:
            raise ValueError("loader_workers must be at least 0")
        if self.disc_layers < 2:
            raise ValueError("disc_layers must be at least 2")
        if not (0 <= self.ema_beta < 1 and 0 <= self.w_avg_beta < 1 and 0 <= self.style_mixing <= 1):
            raise ValueError("ema_beta, w_avg_beta must be in [0, 1) and style_mixing in [0, 1]")
        if self.lr <= 0 or self.r1_gamma < 0 or self.softening <= 0:
            raise ValueError("lr and softening must be positive, r1_gamma >= 0")
        if self.sky_noise not in ("data", "network"):
            raise ValueError(f"sky_noise must be 'data' or 'network', got {self.sky_noise!r}")

    def net(self, bands: int) -> NetConfig:
        return NetConfig(bands=bands, image_size=self.image_size, latent_dim=self.latent_dim,
                         mapping_layers=self.mapping_layers, mapping_lr_mul=self.mapping_lr_mul,
                         fmap_base=self.fmap_base, fmap_max=self.fmap_max, disc_layers=self.disc_layers)


PRESETS: dict[str, dict[str, Any]] = {
    # 32x32, small widths: a useful demo training on 2 CPU cores in a few minutes
    "tiny": dict(image_size=32, latent_dim=32, mapping_layers=4, fmap_base=256, fmap_max=32, batch_size=16,
                 steps=600, r1_every=4, ema_beta=0.99, style_mixing=0.5, checkpoint_every=200, sample_every=200,
                 transform_samples=1000, log_every=10),
    # 64x64: about 5 s a step on 2 CPU cores (a day for 20,000 steps)
    "small": dict(image_size=64, latent_dim=128, mapping_layers=8, fmap_base=2048, fmap_max=128, batch_size=32,
                  steps=20000, checkpoint_every=1000, sample_every=1000),
    # 256x256, progressive growing from 8x8, as in the study: a GPU job
    "paper": dict(image_size=256, latent_dim=256, mapping_layers=8, fmap_base=8192, fmap_max=256, batch_size=32,
                  steps=300000, progressive=True, start_resolution=8, level_steps=40000, checkpoint_every=5000,
                  sample_every=5000),
}


#: What checkpoints made before an option existed used: the option's value when their config lacks it.
LEGACY = {"output_bound": False, "sky_noise": "network"}


def _with_legacy(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the options it predates set as they were then (so old runs behave as before)."""
    return {**LEGACY, **config}


def _styles(w: torch.Tensor, num_layers: int) -> torch.Tensor:
    return w[:, None, :].expand(-1, num_layers, -1)  # (B, L, D): the same w for every layer


def _schedule(cfg: AlaeConfig, net: NetConfig, step: int) -> tuple[int, float]:
    """(level, alpha) at ``step``: the resolution being trained and the fade-in of its newest level."""
    top = net.levels - 1
    if not cfg.progressive:
        return top, 1.0
    start = int(math.log2(cfg.start_resolution)) - 2
    phase = step // cfg.level_steps  # phases alternate: stable (even), fade-in of the next level (odd)
    level = min(start + (phase + 1) // 2, top)
    if level == top and phase >= 2 * (top - start):
        return top, 1.0
    alpha = (step % cfg.level_steps) / cfg.level_steps if phase % 2 == 1 else 1.0
    return level, alpha


class Nets(torch.nn.Module):
    """F, G, E, D and the EMA copies of F and G, with the running mean of w."""

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        self.F, self.G, self.E, self.D = Mapping(net), Synthesis(net), Encoder(net), Discriminator(net)
        self.F_ema, self.G_ema = copy.deepcopy(self.F), copy.deepcopy(self.G)
        for p in (*self.F_ema.parameters(), *self.G_ema.parameters()):
            p.requires_grad_(False)
        self.register_buffer("w_avg", torch.zeros(net.latent_dim))
        self._trained = [(m, list(m.parameters())) for m in (self.F, self.G, self.E, self.D)]

    def train_only(self, *modules: torch.nn.Module) -> None:
        """requires_grad on the parameters of ``modules`` (of F, G, E, D) and off on the others'; the EMA copies
        keep it off. Lists made once: walking the modules, four times a step, took 3.6 ms of a 32 px step."""
        for module, params in self._trained:
            on = any(module is m for m in modules)
            for p in params:
                p.requires_grad_(on)


class Alae(Generator):
    """Adversarial Latent Autoencoder (Pidhorskyi et al. 2020) for multi-band float galaxy images."""

    name = "alae"
    Config = AlaeConfig
    presets = PRESETS

    # -- training ------------------------------------------------------------------
    def train(self, data: Path, run_dir: Path, *, steps: int | None = None, device: str = "cpu", seed: int = 0,
              resume: bool = False) -> None:
        train_alae(self.config, data=Path(data), run_dir=Path(run_dir), steps=steps or self.config.steps,
                   device=torch.device(device), seed=seed, resume=resume)

    @classmethod
    def load(cls, run_dir: Path, *, device: str = "cpu", checkpoint: Path | None = None) -> AlaeModel:
        return AlaeModel.from_checkpoint(load_checkpoint(Path(run_dir), checkpoint=checkpoint), device=device)


def _style_mixing(z: torch.Tensor, level: int, mixing: float, *, part: slice = slice(None),
                  batch: int | None = None) -> tuple[int, torch.Tensor] | None:
    """The random part of style mixing: with probability ``mixing``, a random cut and a second z; else None.

    ``z`` is this rank's ``part`` of a global batch of ``batch``; the second
    z is drawn for the whole global batch and sliced the same way.
    """
    if mixing > 0 and float(torch.rand(())) < mixing:
        cut = int(torch.randint(1, 2 * (level + 1), ())) if level > 0 else 1
        return cut, torch.randn(batch or len(z), z.shape[1], device=z.device)[part]
    return None


def _mixed_styles(nets: Nets, z: torch.Tensor, mix: tuple[int, torch.Tensor] | None, *, mapping) -> torch.Tensor:
    """Styles from F(z), the layers from the cut of ``mix`` (:func:`_style_mixing`) on from F of its second z."""
    styles = _styles(mapping(z), nets.G.num_layers).clone()
    if mix is not None:
        cut, z2 = mix
        styles[:, cut:] = mapping(z2)[:, None, :]
    return styles


def _micro_batches(rows: int, size: int | None) -> list[slice]:
    """``rows`` in consecutive slices of ``size`` (the last may be shorter); one slice when ``size`` is None."""
    size = size or rows
    return [slice(i, min(i + size, rows)) for i in range(0, rows, size)]


def train_alae(cfg: AlaeConfig, *, data: Path, run_dir: Path, steps: int, device: torch.device, seed: int,
               resume: bool) -> None:
    """The ALAE training loop: three updates per step, EMA, checkpoints, metrics, sample grids.

    Each step (Pidhorskyi et al. 2020, Algorithm 1):
    1. E and D: softplus(D(E(G(F(z))))) + softplus(-D(E(x))) + gamma/2 |grad_x D(E(x))|^2;
    2. F and G, E and D frozen: softplus(-D(E(G(F(z)))));
    3. G and E: |E(G(w)) - w|^2 with w = F(z) held fixed.
    Data order, z, noise and augmentation come from (seed, step) and the
    saved RNG state, so a resumed run ends with the same weights.

    Under torchrun (or ``--nproc``) with R ranks, every rank draws the
    random numbers of the whole global batch (``batch_size``) and keeps its
    slice, reads its slice of the real batch, and averages gradients with the
    others after every backward pass: the arithmetic of one process with the
    same global batch, up to the order of float sums. Rank 0 writes
    checkpoints, metrics and samples; all ranks resume from the same
    checkpoint.
    """
    ds = open_dataset(data)
    check_image_data(ds, image_size=cfg.image_size, batch_size=cfg.batch_size, plugin="the ALAE config")
    rank = distributed.rank()
    part = slice(*rank_rows(0, cfg.batch_size))
    net = cfg.net(ds.image_shape[0])
    run = Training(run_dir, store=checkpoint_store(run_dir), counter="step", total=steps, resume=resume,
                   desc="train alae", seed=seed)
    state = run.resume_state()  # a new run (or one stopped before its first checkpoint) starts at step 0
    if state is not None:  # a run from before an option existed goes on as it started
        cfg = dataclasses.replace(cfg, **{k: v for k, v in LEGACY.items() if k not in state["config"]})
    transform = (IntensityTransform.from_state_dict(state["transform"]) if state is not None
                 else IntensityTransform.fit_dataset(ds, samples=cfg.transform_samples, seed=seed, kind=cfg.stretch,
                                                     softening_factor=cfg.softening))
    start = run.start
    nets = Nets(net)
    opt_ed, opt_fg = _optimizers(nets, cfg, state)
    if state is not None:
        nets.load_state_dict(state["nets"])
        run.restore_rng(state)  # after building the nets, whose init draws from it
    distributed.broadcast_module(nets)
    nets.to(device)
    if cfg.channels_last:
        nets.to(memory_format=torch.channels_last)
    loader, steps_sampler = step_loader(ds.path, batch_size=cfg.batch_size, seed=seed, start=start, steps=steps,
                                        num_workers=cfg.loader_workers, pin_memory=device.type == "cuda")
    sample_z = torch.randn(16, net.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    t_log, seen = time.perf_counter(), 0
    with run:
        bar = run.bar
        for step, batch in zip(range(start, steps), loader):
            x = batch["images"].to(device, non_blocking=True)
            if not distributed.all_ok(bool(torch.isfinite(x).all())):
                a, b = steps_sampler.at(step)
                raise GalaugError(f"{ds.path}: NaN/Inf pixels in the batch of step {step} (rank {rank}: rows "
                                  f"{a}-{b - 1})")
            level, alpha = _schedule(cfg, net, step)
            x = _prepare(x, transform, cfg, net, level, alpha)
            b = cfg.batch_size
            try:
                logs = _train_step(nets, opt_ed, opt_fg, x, cfg, level, alpha, b, r1=step % cfg.r1_every == 0,
                                   part=part, transform=transform)
            except (torch.OutOfMemoryError, MemoryError):
                raise GalaugError(_out_of_memory(cfg, step, device, rows=len(x))) from None
            with torch.no_grad():  # EMA of F and G, running mean of w
                for ema, live in ((nets.F_ema, nets.F), (nets.G_ema, nets.G)):
                    for pe, pl in zip(ema.parameters(), live.parameters()):
                        pe.lerp_(pl, 1 - cfg.ema_beta)
                nets.w_avg.lerp_(logs.pop("w_mean"), 1 - cfg.w_avg_beta)
            seen += b
            bar.update(1)
            done = step + 1
            faults.point("train.step")
            if run.due(done, every=cfg.log_every):
                now = time.perf_counter()
                logs.update(step=done, images_per_s=seen / (now - t_log), lr=cfg.lr, level=level, alpha=alpha,
                            resolution=net.resolution(level))
                run.log(**logs)
                bar.set_postfix(lae=f"{logs['loss_lae']:.3g}", d=f"{logs['loss_d']:.3g}")
                t_log, seen = now, 0
            if run.main and run.due(done, every=cfg.sample_every):
                _save_samples(nets, transform, sample_z, run_dir / f"samples-{done:08d}.png", level, alpha, ds, cfg)
            if run.due(done, every=cfg.checkpoint_every):
                run.save({"config": config_to_dict(cfg), "layout": layout_record(ds), "nets": nets.state_dict(),
                          "opt_ed": opt_ed.state_dict(), "opt_fg": opt_fg.state_dict(),
                          "transform": transform.state_dict(), "seed": seed}, number=done, keep=cfg.keep_checkpoints)


def _out_of_memory(cfg: AlaeConfig, step: int, device: torch.device, *, rows: int) -> str:
    """What to do when a training step runs out of memory: smaller micro-batches, the same batch."""
    m = min(cfg.micro_batch or rows, rows)
    where = f"out of {device.type} memory in step {step}, with {m} images through the networks at once"
    if m == 1:
        return f"{where}: micro_batch is 1 already; use a smaller network or a device with more memory"
    return (f"{where}: set micro_batch={m // 2} or lower (the same batch of {cfg.batch_size} in micro-batches: "
            "the same training up to float rounding, less memory, more time)")


def _optimizers(nets: Nets, cfg: AlaeConfig, state: dict | None = None) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for E and D and Adam for F and G, with their state from a checkpoint's ``state`` if given.

    ``foreach``: each update one call over all tensors (torch's default only on GPUs); on a CPU it takes a
    third of the time of the loop over parameters, with the same values. Set again after loading: a
    checkpoint's settings would replace it.
    """
    opts = tuple(torch.optim.Adam([p for m in modules for p in m.parameters()], lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2), foreach=True)
                 for modules in ((nets.E, nets.D), (nets.F, nets.G)))
    if state is not None:
        for opt, key in zip(opts, ("opt_ed", "opt_fg")):
            opt.load_state_dict(state[key])
            for group in opt.param_groups:
                group["foreach"] = True
    return opts


def _prepare(x: torch.Tensor, transform: IntensityTransform, cfg: AlaeConfig, net: NetConfig, level: int,
             alpha: float) -> torch.Tensor:
    """Real images as the networks see them at ``level``: stretched, augmented, downsampled, faded in."""
    x = transform.forward(x)
    if cfg.augment:
        x = random_dihedral(x)
    for _ in range(net.levels - 1 - level):
        x = F.avg_pool2d(x, 2)
    if alpha < 1:  # blend the real images like the generator's fade-in
        x = torch.lerp(upsample2x(F.avg_pool2d(x, 2)), x, alpha)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _to_data(y: torch.Tensor, transform: IntensityTransform, cfg: AlaeConfig,
             sky: torch.Tensor | None) -> torch.Tensor:
    """G's output (stretched units) as an image in data units: bounded, un-stretched, plus sky noise.

    ``sky`` holds unit normal deviates shaped like ``y`` (scaled by the
    caller for lower resolutions); it is used with ``sky_noise = "data"``.
    """
    if cfg.output_bound:
        y = transform.bound(y)
    x = transform.inverse(y)
    if sky is not None and cfg.sky_noise == "data" and transform.sky_sigma is not None:
        x = x + transform.sky_sigma.to(x.device, x.dtype)[None, :, None, None] * sky
    return x


def _as_seen(y: torch.Tensor, transform: IntensityTransform | None, cfg: AlaeConfig,
             sky: torch.Tensor | None) -> torch.Tensor:
    """G's output as E sees it in training, in stretched units like the real images.

    With ``sky`` (:func:`_sky_draw`) the image goes to data units, gets
    that sky noise and is stretched again; otherwise it is only bounded (or
    left as it is, as before these options).
    """
    if transform is None:
        return y
    if sky is not None:
        return transform.forward(_to_data(y.float(), transform, cfg, sky))
    return transform.bound(y) if cfg.output_bound else y


def _sky_draw(transform: IntensityTransform | None, cfg: AlaeConfig, net: NetConfig, *, level: int, batch: int,
              part: slice, device) -> torch.Tensor | None:
    """Unit sky noise for the generated images of one update (``sky_noise = "data"``), or None.

    Drawn for the global batch and sliced, like every draw; at a lower
    progressive level it is the noise of 2x2-averaged pixels, half as
    strong per level.
    """
    if transform is None or cfg.sky_noise != "data" or transform.sky_sigma is None:
        return None
    r = net.resolution(level)
    return torch.randn(batch, net.bands, r, r, device=device)[part] * 2.0 ** (level + 1 - net.levels)


def _train_step(nets: Nets, opt_ed, opt_fg, x: torch.Tensor, cfg: AlaeConfig, level: int, alpha: float,
                b: int, *, r1: bool = True, part: slice = slice(None),
                transform: IntensityTransform | None = None) -> dict[str, float]:
    """One ALAE step on ``x``, this process's ``part`` of a global batch of ``b`` (all of it by default).

    Random draws are made for the global batch and sliced, and gradients
    are averaged over processes (:func:`galaug.distributed.average_gradients`)
    before each optimiser step. Generated images reach E as the real ones
    do (:func:`_as_seen`: bounded, with sky noise in data units).

    Each update draws its z, style mixing and noise first, then runs this
    process's rows through the networks in micro-batches of
    ``cfg.micro_batch``, each loss scaled by its share of the rows, and
    steps once on the summed gradients: the gradients of the whole batch up
    to the order of float sums, while only one micro-batch's activations
    (and R1's double-backward graph) are held at a time.
    """
    d = nets.F.layers[0].weight.shape[1]
    net = nets.G.cfg
    dev = x.device
    n = len(x)
    chunks = _micro_batches(n, cfg.micro_batch)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")

    def draws() -> tuple[torch.Tensor, tuple[int, torch.Tensor] | None]:
        """z and the style mixing of one update, this process's rows."""
        z = torch.randn(b, d, device=dev)[part]
        return z, _style_mixing(z, level, cfg.style_mixing, part=part, batch=b)

    def noise_draws() -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """G's noise maps and the sky noise of one update, this process's rows."""
        noise = [m[part] for m in nets.G.random_noise(b, level, device=dev)]
        return noise, _sky_draw(transform, cfg, net, level=level, batch=b, part=part, device=dev)

    def generated(styles: torch.Tensor, noise, sky, rows: slice) -> torch.Tensor:
        y = nets.G(styles, [m[rows] for m in noise], level=level, alpha=alpha)
        return _as_seen(y, transform, cfg, None if sky is None else sky[rows])

    def rows_of(mix, rows: slice):
        return None if mix is None else (mix[0], mix[1][rows])

    def step(opts, losses, *modules) -> None:
        """Gradients of ``losses(rows)`` summed over the micro-batches, each scaled by its share of the rows,
        then averaged over processes, then one step of each optimiser of ``opts``."""
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        for rows in chunks:
            (losses(rows) * ((rows.stop - rows.start) / n)).backward()
        distributed.average_gradients([p for m in modules for p in m.parameters()])
        for opt in opts:
            opt.step()

    # logs: loss_d, loss_r1, loss_g, loss_lae, mean D(E(x)) and D(E(G(z))), each a mean over the rows
    logs = torch.zeros(6, device=dev)

    def log(i: int, rows: slice, *values: torch.Tensor) -> None:
        logs[i:i + len(values)] += torch.stack(values).detach().float() * ((rows.stop - rows.start) / n)

    # 1. E and D: real vs fake in w-space, with R1 on the real images
    nets.train_only(nets.E, nets.D)
    z, mix = draws()
    noise, sky = noise_draws()
    penalise = r1 and cfg.r1_gamma > 0

    def loss_ed(rows: slice) -> torch.Tensor:
        with torch.no_grad(), autocast:
            fake = generated(_mixed_styles(nets, z[rows], rows_of(mix, rows), mapping=nets.F), noise, sky, rows)
        real = x[rows].detach().requires_grad_(penalise)
        with autocast:
            d_real = nets.D(nets.E(real, level=level, alpha=alpha)).float()
            d_fake = nets.D(nets.E(fake, level=level, alpha=alpha)).float()
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        loss_r1 = torch.zeros((), device=dev)
        if penalise:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_r1 = grad.float().pow(2).sum(dim=(1, 2, 3)).mean()
        log(0, rows, loss_d, loss_r1)
        log(4, rows, d_real.mean(), d_fake.mean())
        return loss_d + cfg.r1_gamma / 2 * cfg.r1_every * loss_r1

    step((opt_ed,), loss_ed, nets.E, nets.D)
    # 2. F and G against the frozen E and D
    nets.train_only(nets.F, nets.G)
    z, mix = draws()
    noise, sky = noise_draws()

    def loss_fg(rows: slice) -> torch.Tensor:
        with autocast:
            fake = generated(_mixed_styles(nets, z[rows], rows_of(mix, rows), mapping=nets.F), noise, sky, rows)
            loss_g = F.softplus(-nets.D(nets.E(fake, level=level, alpha=alpha)).float()).mean()
        log(2, rows, loss_g)
        return loss_g

    step((opt_fg,), loss_fg, nets.F, nets.G)
    # 3. latent reconstruction E(G(w)) = w, updating G and E (w = F(z) held fixed, as in ALAE)
    nets.train_only(nets.G, nets.E)
    z = torch.randn(b, d, device=dev)[part]
    with torch.no_grad(), autocast:
        w = nets.F(z).float()
    noise, sky = noise_draws()

    def loss_ge(rows: slice) -> torch.Tensor:
        with autocast:
            rec = nets.E(generated(_styles(w[rows], nets.G.num_layers), noise, sky, rows), level=level,
                         alpha=alpha).float()
        loss_lae = (rec - w[rows]).pow(2).mean()
        log(3, rows, loss_lae)
        return loss_lae

    step((opt_fg, opt_ed), loss_ge, nets.G, nets.E)
    nets.train_only(nets.F, nets.G, nets.E, nets.D)
    # the mean over ranks: logs, and the running mean of w that every rank must keep equal
    merged = distributed.all_mean(torch.cat([logs, w.mean(0).float()]))
    names = ("loss_d", "loss_r1", "loss_g", "loss_lae", "d_real", "d_fake")
    return {**dict(zip(names, merged[:6].tolist())), "w_mean": merged[6:]}


@torch.no_grad()
def _save_samples(nets: Nets, transform, z, path: Path, level: int, alpha: float, ds, cfg: AlaeConfig) -> None:
    from galaug.viz import pick_rgb_bands, save_grid

    w = nets.F_ema(z)
    g = torch.Generator().manual_seed(0)  # fixed noise, and the training RNG stays untouched
    noise = [torch.randn(len(z), *s, generator=g).to(z.device) for s in nets.G_ema.noise_shapes(level)]
    y = nets.G_ema(_styles(w, nets.G.num_layers), noise, level=level, alpha=alpha).float()
    sky = torch.randn(y.shape, generator=g).to(y.device)
    scale = 2.0 ** (level + 1 - nets.G.cfg.levels)
    images = _to_data(y, transform, cfg, sky * scale).cpu().numpy()
    save_grid(images, path, channels=pick_rgb_bands(ds.bands), title=f"{path.stem} (EMA, {images.shape[-1]} px)")


def _normal_rows(seeds: Sequence[int], size: int) -> torch.Tensor:
    """(len(seeds), size) unit normal deviates, row i those of ``torch.randn(size)`` from a generator seeded with
    ``seeds[i]`` (one generator re-seeded per row, filling the row in place)."""
    out = torch.empty(len(seeds), size)
    g = torch.Generator()
    for row, s in zip(out, seeds):
        row.normal_(generator=g.manual_seed(int(s)))
    return out


class AlaeModel(GeneratorModel):
    """A trained ALAE (EMA weights of F and G, trained E): sample, map, decode, encode, reconstruct."""

    def __init__(self, nets: Nets, transform: IntensityTransform, layout: dict, step: int, *, device,
                 config: AlaeConfig | None = None) -> None:
        self.config = config if config is not None else AlaeConfig(**LEGACY)
        self.device = torch.device(device)
        self.nets = nets.to(self.device).eval()
        self.transform = transform
        self.step = step
        self.z_dim = self.w_dim = nets.F.layers[0].weight.shape[1]
        self.layout = Layout(bands=tuple(layout["bands"]), image_size=layout["image_size"],
                             pixel_scale=pixel_scale_quantity(layout["pixel_scale"]), flux_unit=layout["flux_unit"])

    @classmethod
    def from_checkpoint(cls, state: dict, *, device) -> AlaeModel:
        cfg = config_from_options(Alae, _with_legacy(state["config"]))
        nets = Nets(cfg.net(len(state["layout"]["bands"])))
        nets.load_state_dict(state["nets"])
        return cls(nets, IntensityTransform.from_state_dict(state["transform"]), state["layout"], state["step"],
                   device=device, config=cfg)

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                               dtype=torch.float32).to(self.device)

    def _noise(self, seeds: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-sample noise maps of G and sky noise (unit normal, image-shaped), each sample from its own seed.

        A sample's maps, in order, are one draw of their total size (:func:`_normal_rows`): each map's size is
        a multiple of 16 (4 * 2**k squared), and torch fills a float tensor of 16 n values with the numbers that
        consecutive draws of its pieces make, so every map holds the values of its own ``torch.randn`` call.
        """
        image = (len(self.layout.bands), self.layout.image_size, self.layout.image_size)
        shapes = [*self.nets.G_ema.noise_shapes(), image]
        sizes = [math.prod(s) for s in shapes]
        draws = _normal_rows(seeds, sum(sizes))
        maps = [m.unflatten(1, s).contiguous().to(self.device) for m, s in zip(draws.split(sizes, dim=1), shapes)]
        return maps[:-1], maps[-1]

    @torch.no_grad()
    def sample(self, n: int | None = None, *, seed: int = 0, rows: Sequence[int] | None = None,
               truncation: float | None = None, edit: dict[str, float] | None = None,
               directions=None) -> dict[str, torch.Tensor]:
        rows = list(range(n) if rows is None else rows)
        seeds = derive_seeds(seed, np.asarray(rows, dtype=np.int64)).tolist()  # sample r: (seed, r) only
        z = _normal_rows(seeds, self.z_dim)
        w = self.map(z.to(self.device))
        if truncation is not None and truncation < 1:
            w = torch.lerp(self.nets.w_avg[None], w, truncation)
        w = self.edit_latents(w, edit, directions=directions)  # along w* (galaug.editing); None: unchanged
        noise_seeds = derive_seeds(np.asarray(seeds, dtype=np.int64), 1).tolist()
        return {"images": self.decode(w, seeds=noise_seeds), "z": z.to(self.device), "w": w}

    @torch.no_grad()
    def map(self, z) -> torch.Tensor:
        # each row on its own, in one call per layer: w does not depend on the batch (Mapping's rowwise)
        return self.nets.F_ema(self._tensor(z), rowwise=True)

    #: rows per network call: results are bit-identical whatever batch the caller uses,
    #: because every row is computed in a batch of exactly this size (padded at the end)
    micro_batch = 32

    @torch.no_grad()
    def decode(self, w, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        w = self._tensor(w)
        seeds = list(seeds) if seeds is not None else [0] * len(w)
        out = []
        for i in range(0, len(w), self.micro_batch):
            chunk, pad = w[i:i + self.micro_batch], max(0, i + self.micro_batch - len(w))
            noise, sky = self._noise(seeds[i:i + self.micro_batch] + [0] * pad)
            chunk = torch.cat([chunk, chunk.new_zeros(pad, chunk.shape[1])])
            y = self.nets.G_ema(_styles(chunk, self.nets.G_ema.num_layers), noise)
            out.append(_to_data(y, self.transform, self.config, sky)[: self.micro_batch - pad])
        return torch.cat(out)

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = self._tensor(images)
        out = []
        for i in range(0, len(x), self.micro_batch):  # bounded memory, batch-independent results
            chunk, pad = x[i:i + self.micro_batch], max(0, i + self.micro_batch - len(x))
            chunk = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])])
            out.append(self.nets.E(self.transform.forward(chunk))[: self.micro_batch - pad])
        return torch.cat(out) if out else x.new_zeros(0, self.w_dim)
