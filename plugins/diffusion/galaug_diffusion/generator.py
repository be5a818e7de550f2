"""The ``diffusion`` generator: conditional flow matching (rectified flow) on stretched galaxy images.

Objective (Liu et al. 2023; Lipman et al. 2023): images ``x0`` in stretched
units (:class:`galaug.stretch.IntensityTransform`: per-band asinh, stored
in the run) and unit Gaussian noise ``e`` are joined by straight lines
``x_t = (1 - t) x0 + t e``; the U-Net learns their velocity ``e - x0`` by
mean squared error, with ``t`` drawn logit-normal (more weight on the middle
of the path, Esser et al. 2024). Flow matching rather than EDM-style score
matching: one loss with no noise schedule or preconditioning to tune, and
near-straight paths, so that a deterministic ODE sampler needs few steps,
which is what sampling on a CPU can afford. The ODE also runs backwards,
which gives :meth:`DiffusionModel.encode`.

Conditioning on columns of the dataset's ``params`` (``condition``): each
column normalised (log first where it is positive and spans more than a
factor of 20), embedded and added to the time embedding; dropped with
probability ``cond_dropout`` in training (a learned "no condition"
embedding), so that classifier-free guidance can mix conditional and
unconditional velocities at sampling time.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from galaug import distributed, faults
from galaug.checkpoints import CheckpointStore
from galaug.config import config_to_dict
from galaug.data import open_dataset, pixel_scale_quantity
from galaug.data.torch import random_dihedral, step_loader
from galaug.degrade.seeds import derive_seeds
from galaug.errors import GalaugError
from galaug.kinds import Generator, GeneratorModel, Layout
from galaug.runs import Training, check_image_data, config_from_options, layout_record, rank_rows
from galaug.stretch import IntensityTransform
from galaug_diffusion.unet import UNet, UNetConfig

__all__ = ["DiffusionConfig", "Diffusion", "DiffusionModel", "ConditionScale", "FORMAT"]

FORMAT = "galaug-diffusion/1"
#: the ranges that sampling accepts (``--steps``, ``--guidance``)
MAX_SAMPLE_STEPS = 1000
MAX_GUIDANCE = 20.0


@dataclasses.dataclass
class DiffusionConfig:
    """Options of the diffusion generator (``galaug config generator diffusion``)."""

    #: power of two from 16 to 256; must match the training images
    image_size: int = 64
    #: channels of the U-Net's first level
    width: int = 64
    #: channel multiplier per level (one level per entry, each half the resolution of the one before)
    mults: tuple[int, ...] = (1, 2, 2, 2)
    #: residual blocks per level
    blocks: int = 2
    #: attention only on feature maps at most this wide
    attn_max_resolution: int = 8
    #: columns of the dataset's params to condition on (empty: unconditional)
    condition: tuple[str, ...] = ()
    #: probability of dropping the condition in training (what classifier-free guidance needs)
    cond_dropout: float = 0.1
    batch_size: int = 32
    steps: int = 20000
    lr: float = 2e-4
    #: linear learning-rate warm-up
    warmup: int = 200
    #: gradient norm clip (0: none)
    grad_clip: float = 1.0
    #: exponential moving average of the weights, used for sampling
    ema_beta: float = 0.999
    #: how training draws t: logit-normal (weighting the middle of the path) or uniform
    time_sampling: Literal["logit-normal", "uniform"] = "logit-normal"
    #: default ODE steps and solver for sampling (``--steps``)
    sample_steps: int = 16
    sampler: Literal["heun", "euler"] = "heun"
    #: default classifier-free guidance weight (1: the conditional velocity alone; ``--guidance``)
    guidance: float = 1.0
    #: random flips and 90-degree rotations (off when conditioning on an orientation or a position)
    augment: bool = True
    stretch: Literal["asinh", "linear"] = "asinh"
    #: asinh softening as a multiple of the robust noise scale
    softening: float = 1.0
    #: images used to fit the intensity transform
    transform_samples: int = 4000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 1000
    log_every: int = 20
    #: DataLoader worker processes reading the store; 0: in the training process
    loader_workers: int = 0

    def __post_init__(self) -> None:
        if self.image_size not in (16, 32, 64, 128, 256):
            raise ValueError(f"image_size must be a power of two from 16 to 256, got {self.image_size}")
        for name in ("width", "blocks", "batch_size", "steps", "sample_steps", "checkpoint_every",
                     "keep_checkpoints", "sample_every", "log_every", "transform_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.mults or any(m < 1 for m in self.mults):
            raise ValueError("mults must be a non-empty list of positive integers")
        if self.image_size >> (len(self.mults) - 1) < 4:
            raise ValueError(f"{len(self.mults)} levels take a {self.image_size} px image below 4 px; "
                             "use fewer mults")
        if len(set(self.condition)) != len(self.condition):
            raise ValueError("condition lists a column twice")
        if not 0 <= self.cond_dropout < 1 or not 0 <= self.ema_beta < 1:
            raise ValueError("cond_dropout and ema_beta must be in [0, 1)")
        if self.lr <= 0 or self.softening <= 0 or self.grad_clip < 0 or self.warmup < 0:
            raise ValueError("lr and softening must be positive, grad_clip and warmup at least 0")
        if self.sample_steps > MAX_SAMPLE_STEPS or not 0 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"sample_steps must be at most {MAX_SAMPLE_STEPS} and guidance in [0, {MAX_GUIDANCE}]")
        if self.loader_workers < 0:
            raise ValueError("loader_workers must be at least 0")

    def net(self, bands: int) -> UNetConfig:
        return UNetConfig(bands=bands, image_size=self.image_size, width=self.width, mults=tuple(self.mults),
                          blocks=self.blocks, attn_max_resolution=self.attn_max_resolution,
                          cond_dim=len(self.condition))


PRESETS: dict[str, dict[str, Any]] = {
    # 32x32, small widths: trains on CPU cores in minutes to an hour
    "tiny": dict(image_size=32, width=16, mults=(1, 2, 4), blocks=1, attn_max_resolution=8, batch_size=32,
                 steps=1000, lr=5e-4, ema_beta=0.999, checkpoint_every=250, sample_every=500,
                 transform_samples=1000, log_every=10),
    # 64x64
    "small": dict(image_size=64, width=32, mults=(1, 2, 2, 4), blocks=2, attn_max_resolution=8, batch_size=32,
                  steps=20000, lr=5e-4, checkpoint_every=1000, sample_every=1000),
    # 256x256: a GPU job
    "paper": dict(image_size=256, width=64, mults=(1, 1, 2, 2, 4, 4), blocks=2, attn_max_resolution=16,
                  batch_size=32, steps=300000, lr=2e-4, ema_beta=0.9999, checkpoint_every=5000, sample_every=5000),
}


def checkpoint_store(run_dir: Path) -> CheckpointStore:
    """The checkpoints of a diffusion run (``checkpoints/ckpt-<step>.pt``)."""
    return CheckpointStore(run_dir, format=FORMAT, what="a diffusion checkpoint", digits=8)


# -- conditions ---------------------------------------------------------------------------------

class ConditionScale:
    """Per-column normalisation of the condition, fitted on the training data's params and stored in the run.

    ``log`` columns are log-transformed first; then ``(v - center) / scale``.
    ``low`` and ``high`` are the training range in the data's own units;
    ``table`` holds up to 4,096 training rows, from which the columns a
    sampler does not set are drawn (so that they keep the joint
    distribution of the training data).
    """

    def __init__(self, names, units, log, center, scale, low, high, table) -> None:
        self.names, self.units = tuple(names), tuple(units)
        self.log = np.asarray(log, dtype=bool)
        self.center, self.scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self.table = np.asarray(table, dtype=np.float64).reshape(-1, len(self.names))

    @classmethod
    def fit(cls, values: np.ndarray, names: Sequence[str], units: Sequence[str], *, seed: int) -> ConditionScale:
        values = np.asarray(values, dtype=np.float64)
        low, high = values.min(axis=0), values.max(axis=0)
        log = (low > 0) & (high > 20 * np.maximum(low, 1e-300))
        t = np.where(log, np.log(np.where(log, values, 1.0)), values)
        center, scale = t.mean(axis=0), t.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        rows = np.random.default_rng(seed).permutation(len(values))[:4096]
        return cls(names, units, log, center, scale, low, high, values[np.sort(rows)])

    def forward(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        v = np.where(self.log, np.log(np.where(self.log, np.maximum(v, 1e-300), 1.0)), v)
        return ((v - self.center) / self.scale).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "units": list(self.units), "log": torch.as_tensor(self.log),
                **{k: torch.as_tensor(getattr(self, k)) for k in ("center", "scale", "low", "high", "table")}}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ConditionScale:
        return cls(state["names"], state["units"], *(np.asarray(state[k]) for k in
                                                    ("log", "center", "scale", "low", "high", "table")))


def _read_condition(ds, names: Sequence[str]) -> np.ndarray:
    """The ``names`` columns of the dataset's params (N, k); one clear error for a missing or unusable column."""
    have = tuple(ds.param_names)
    missing = [n for n in names if n not in have]
    if missing:
        raise GalaugError(f"{ds.path}: no params column {', '.join(map(repr, missing))} to condition on "
                          f"(its params: {', '.join(have) if have else 'none'})")
    params = ds.read(fields=["params"])["params"]
    values = params[:, [have.index(n) for n in names]].astype(np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise GalaugError(f"{ds.path}: {int(bad.sum())} row(s) with NaN/Inf in the condition columns "
                          f"(first at row {int(np.flatnonzero(bad)[0])})")
    return values


# -- training -----------------------------------------------------------------------------------

def _draw_t(n: int, kind: str, device) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(n, device=device)
    return torch.sigmoid(torch.randn(n, device=device))


def train_diffusion(cfg: DiffusionConfig, *, data: Path, run_dir: Path, steps: int, device: torch.device, seed: int,
                    resume: bool) -> None:
    """The training loop: one flow-matching step per batch, EMA, checkpoints, metrics, sample grids.

    Data order, t, noise, condition dropout and augmentation come from
    (seed, step) and the saved RNG state, so a resumed run ends with the
    same weights. Under torchrun (or ``--nproc``) every rank draws the
    random numbers of the whole global batch and keeps its slice, and
    gradients are averaged before each optimiser step, as in the ALAE.
    """
    ds = open_dataset(data)
    check_image_data(ds, image_size=cfg.image_size, batch_size=cfg.batch_size, plugin="the diffusion config")
    rank = distributed.rank()
    part = slice(*rank_rows(0, cfg.batch_size))
    names = tuple(cfg.condition)
    cond_values = _read_condition(ds, names) if names else None
    run = Training(run_dir, store=checkpoint_store(run_dir), counter="step", total=steps, resume=resume,
                   desc="train diffusion", seed=seed)
    state = run.resume_state()
    if state is not None:
        transform = IntensityTransform.from_state_dict(state["transform"])
        scale = ConditionScale.from_state_dict(state["condition"]) if names else None
    else:
        transform = IntensityTransform.fit_dataset(ds, samples=cfg.transform_samples, seed=seed, kind=cfg.stretch,
                                                   softening_factor=cfg.softening)
        units = dict(zip(ds.param_names, ds.param_units))
        scale = ConditionScale.fit(cond_values, names, [units[n] for n in names], seed=seed) if names else None
    cond_all = torch.as_tensor(scale.forward(cond_values)) if names else None
    start = run.start
    net = UNet(cfg.net(ds.image_shape[0]))
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if state is not None:
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        run.restore_rng(state)
    distributed.broadcast_module(net)
    distributed.broadcast_module(ema)
    net.to(device)
    ema.to(device)
    Training.optimizer_to(opt, device)
    loader, steps_sampler = step_loader(ds.path, batch_size=cfg.batch_size, seed=seed, start=start, steps=steps,
                                        num_workers=cfg.loader_workers, pin_memory=device.type == "cuda")
    grid_seeds = list(range(16))
    t_log, seen = time.perf_counter(), 0
    b = cfg.batch_size
    with run:
        bar = run.bar
        for step, batch in zip(range(start, steps), loader):
            x = batch["images"].to(device, non_blocking=True)
            if not distributed.all_ok(bool(torch.isfinite(x).all())):
                a, z = steps_sampler.at(step)
                raise GalaugError(f"{ds.path}: NaN/Inf pixels in the batch of step {step} (rank {rank}: rows "
                                  f"{a}-{z - 1})")
            x0 = transform.forward(x)
            if cfg.augment:
                x0 = random_dihedral(x0)
            t = _draw_t(b, cfg.time_sampling, device)[part]
            noise = torch.randn(b, *x0.shape[1:], device=device)[part]
            keep = (torch.rand(b, device=device) >= cfg.cond_dropout).float()[part]
            cond = None
            if names:
                a, z = steps_sampler.at(step)
                cond = cond_all[a:z].to(device)
            tt = t[:, None, None, None]
            xt = (1 - tt) * x0 + tt * noise
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
            loss = F.mse_loss(net(xt, t, cond, keep if names else None), noise - x0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(list(net.parameters()))
            grad_norm = (torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip) if cfg.grad_clip
                         else torch.zeros(()))
            opt.step()
            with torch.no_grad():
                beta = min(cfg.ema_beta, (1 + step) / (10 + step))
                for pe, pl in zip(ema.parameters(), net.parameters()):
                    pe.lerp_(pl, 1 - beta)
            seen += b
            bar.update(1)
            done = step + 1
            faults.point("train.step")
            if run.due(done, every=cfg.log_every):
                now = time.perf_counter()
                loss_mean, gnorm = distributed.all_mean(torch.stack([loss.detach(), grad_norm.detach().to(loss.device)]
                                                                    ).float()).tolist()
                run.log(step=done, loss=loss_mean, grad_norm=gnorm, lr=opt.param_groups[0]["lr"],
                        images_per_s=seen / (now - t_log))
                bar.set_postfix(loss=f"{loss_mean:.3g}")
                t_log, seen = now, 0
            payload = lambda: {"config": config_to_dict(cfg), "layout": layout_record(ds),  # noqa: E731
                               "net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                               "transform": transform.state_dict(), "seed": seed,
                               **({"condition": scale.state_dict()} if names else {})}
            if run.main and run.due(done, every=cfg.sample_every):
                model = DiffusionModel(ema, transform, layout_record(ds), done, device=device, config=cfg,
                                       condition=scale)
                with torch.random.fork_rng(devices=[]):  # the training's random draws stay as they were
                    _save_grid(model, grid_seeds, run_dir / f"samples-{done:08d}.png", ds)
            if run.due(done, every=cfg.checkpoint_every):
                run.save(payload(), number=done, keep=cfg.keep_checkpoints)


def _save_grid(model: DiffusionModel, seeds, path: Path, ds) -> None:
    from galaug.viz import pick_rgb_bands, save_grid

    images = model.sample(rows=seeds, seed=0)["images"].float().cpu().numpy()
    save_grid(images, path, channels=pick_rgb_bands(ds.bands), title=f"{path.stem} (EMA, {images.shape[-1]} px)")


class Diffusion(Generator):
    """Conditional flow matching (rectified flow) with a U-Net for multi-band float galaxy images."""

    name = "diffusion"
    Config = DiffusionConfig
    presets = PRESETS

    def train(self, data: Path, run_dir: Path, *, steps: int | None = None, device: str = "cpu", seed: int = 0,
              resume: bool = False) -> None:
        train_diffusion(self.config, data=Path(data), run_dir=Path(run_dir), steps=steps or self.config.steps,
                        device=torch.device(device), seed=seed, resume=resume)

    @classmethod
    def load(cls, run_dir: Path, *, device: str = "cpu", checkpoint: Path | None = None) -> DiffusionModel:
        state = checkpoint_store(Path(run_dir)).load(checkpoint=checkpoint)
        return DiffusionModel.from_checkpoint(state, device=device)


# -- the trained model --------------------------------------------------------------------------

class DiffusionModel(GeneratorModel):
    """A trained flow (EMA weights): sample by integrating the ODE from noise at t = 1 to an image at t = 0.

    z and w are the starting noise (flattened, ``C * H * W``): :meth:`map` is
    the identity, :meth:`decode` integrates the unconditional ODE from w to an
    image, :meth:`encode` integrates it backwards. ``generate`` does not
    store them (:attr:`stores_latents`): they are as large as the images.
    """

    stores_latents = False
    #: rows per network call: every row is computed in a call of exactly this many rows (padded at the end),
    #: so results are bit-identical whatever batch or process the caller uses
    micro_batch = 32

    def __init__(self, net: UNet, transform: IntensityTransform, layout: dict, step: int, *, device,
                 config: DiffusionConfig, condition: ConditionScale | None = None) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.transform, self.config, self.scale, self.step = transform, config, condition, step
        self.layout = Layout(bands=tuple(layout["bands"]), image_size=layout["image_size"],
                             pixel_scale=pixel_scale_quantity(layout["pixel_scale"]), flux_unit=layout["flux_unit"])
        self.shape = (len(self.layout.bands), self.layout.image_size, self.layout.image_size)
        self.z_dim = self.w_dim = int(np.prod(self.shape))

    @classmethod
    def from_checkpoint(cls, state: dict, *, device) -> DiffusionModel:
        cfg = config_from_options(Diffusion, state["config"])
        net = UNet(cfg.net(len(state["layout"]["bands"])))
        net.load_state_dict(state["ema"])
        scale = ConditionScale.from_state_dict(state["condition"]) if cfg.condition else None
        return cls(net, IntensityTransform.from_state_dict(state["transform"]), state["layout"], int(state["step"]),
                   device=device, config=cfg, condition=scale)

    # -- conditions ----------------------------------------------------------------------
    @property
    def condition_names(self) -> tuple[str, ...]:
        """The params columns this run was conditioned on (empty: unconditional)."""
        return tuple(self.config.condition)

    @property
    def condition_units(self) -> tuple[str, ...]:
        return self.scale.units if self.scale is not None else ()

    @property
    def condition_range(self) -> dict[str, tuple[float, float]]:
        """Each condition column's training range (what sampling accepts without ``extrapolate``)."""
        if self.scale is None:
            return {}
        return {n: (float(lo), float(hi)) for n, lo, hi in zip(self.scale.names, self.scale.low, self.scale.high)}

    def check_condition(self, condition: Mapping[str, Any] | None, *, extrapolate: bool = False) -> None:
        """Refuse (:class:`GalaugError`) a condition this run cannot take: see :meth:`sample`."""
        if not condition:
            return
        if not self.condition_names:
            raise GalaugError("this diffusion run was trained unconditionally: it takes no condition "
                              "(train with --set condition=COLUMN,... to condition on params)")
        unknown = [k for k in condition if k not in self.condition_names]
        if unknown:
            raise GalaugError(f"condition {', '.join(map(repr, unknown))}: this run was conditioned on "
                              f"{', '.join(self.condition_names)}")
        for name, value in condition.items():
            v = np.asarray(value, dtype=np.float64)
            if not np.isfinite(v).all():
                raise GalaugError(f"condition {name}: values must be finite numbers")
            lo, hi = self.condition_range[name]
            if not extrapolate and (v.min() < lo or v.max() > hi):
                raise GalaugError(f"condition {name}={v.min() if v.min() < lo else v.max():g} is outside the "
                                  f"training range {lo:g} to {hi:g} (--extrapolate, or extrapolate=True, allows it)")

    def _conditions(self, condition: Mapping[str, Any] | None, seeds: Sequence[int], n: int) -> np.ndarray | None:
        """The raw condition of each row (n, k): given values, the rest from a training row picked by the seed."""
        if not self.condition_names:
            return None
        pick = np.asarray(seeds, dtype=np.uint64) % np.uint64(len(self.scale.table))
        values = self.scale.table[pick.astype(np.int64)].copy()
        for name, value in (condition or {}).items():
            v = np.asarray(value, dtype=np.float64)
            if v.ndim and len(v) != n:
                raise GalaugError(f"condition {name}: {len(v)} values for {n} samples")
            values[:, self.condition_names.index(name)] = v
        return values

    # -- the ODE -------------------------------------------------------------------------
    def _velocity(self, x: torch.Tensor, t: float, cond: torch.Tensor | None, guidance: float) -> torch.Tensor:
        tt = torch.full((len(x),), t, device=self.device)
        if cond is None or guidance == 0:
            return self.net(x, tt)
        if guidance == 1:
            return self.net(x, tt, cond)
        both = self.net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, cond]),
                        torch.cat([torch.ones(len(x), device=self.device), torch.zeros(len(x), device=self.device)]))
        v_c, v_u = both.chunk(2)
        return v_u + guidance * (v_c - v_u)

    def _integrate(self, x: torch.Tensor, cond: torch.Tensor | None, *, steps: int, guidance: float,
                   reverse: bool = False) -> torch.Tensor:
        """Integrate dx/dt = v from t = 1 to 0 (noise to image), or from 0 to 1 with ``reverse``."""
        ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
        if reverse:
            ts = ts[::-1]
        for t, t_next in zip(ts[:-1], ts[1:]):
            h = t_next - t
            d = self._velocity(x, t, cond, guidance)
            x_next = x + h * d
            if self.config.sampler == "heun" and t_next not in (0.0, 1.0):
                x_next = x + h / 2 * (d + self._velocity(x_next, t_next, cond, guidance))
            x = x_next
        return x

    def _check_sampling(self, steps: int | None, guidance: float | None) -> tuple[int, float]:
        if guidance is not None and not self.condition_names:
            raise GalaugError("guidance needs a conditional run: this one was trained unconditionally")
        steps = self.config.sample_steps if steps is None else steps
        guidance = self.config.guidance if guidance is None else guidance
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_SAMPLE_STEPS:
            raise GalaugError(f"steps must be an integer from 1 to {MAX_SAMPLE_STEPS}, got {steps!r}")
        if not np.isfinite(guidance) or not 0 <= guidance <= MAX_GUIDANCE:
            raise GalaugError(f"guidance must be in [0, {MAX_GUIDANCE:g}], got {guidance!r}")
        return int(steps), float(guidance)

    def _noise(self, seeds: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.randn(*self.shape, generator=torch.Generator().manual_seed(int(s)))
                            for s in seeds])

    @torch.no_grad()
    def _chunks(self, x: torch.Tensor, cond: np.ndarray | None, **kw) -> torch.Tensor:
        out = []
        for i in range(0, len(x), self.micro_batch):
            chunk, pad = x[i:i + self.micro_batch], max(0, i + self.micro_batch - len(x))
            chunk = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]).to(self.device)
            c = None
            if cond is not None:
                c = torch.as_tensor(self.scale.forward(cond[i:i + self.micro_batch]))
                c = torch.cat([c, c.new_zeros(pad, c.shape[1])]).to(self.device)
            out.append(self._integrate(chunk, c, **kw)[: self.micro_batch - pad])
        return torch.cat(out) if out else x.to(self.device)

    @torch.no_grad()
    def sample(self, n: int | None = None, *, seed: int = 0, rows: Sequence[int] | None = None,
               truncation: float | None = None, condition: Mapping[str, Any] | None = None,
               guidance: float | None = None, steps: int | None = None,
               extrapolate: bool = False) -> dict[str, torch.Tensor]:
        """Samples ``rows`` (or ``range(n)``): ``{"images", "z", "w", "condition"}``.

        Sample ``r`` depends only on ``(seed, r)`` (and the condition,
        guidance and steps). ``condition`` maps columns of the training
        params to a value for every row or a sequence with one per row;
        columns not given come from a training row picked by the sample's
        seed, so they keep the data's joint distribution. ``guidance`` is
        the classifier-free guidance weight w in ``v_u + w (v_c - v_u)``;
        ``steps`` the ODE steps. "condition" in the output holds the raw
        values used (absent for an unconditional run).
        """
        if truncation is not None and truncation < 1:
            raise GalaugError("the diffusion generator takes no truncation (it has no mapped latent to pull)")
        self.check_condition(condition, extrapolate=extrapolate)
        steps, guidance = self._check_sampling(steps, guidance)
        rows = list(range(n) if rows is None else rows)
        seeds = derive_seeds(seed, np.asarray(rows, dtype=np.int64)).tolist()
        z = self._noise(seeds)
        cond = self._conditions(condition, derive_seeds(np.asarray(seeds, dtype=np.int64), 1).tolist(), len(rows))
        y = self._chunks(z, cond, steps=steps, guidance=guidance)
        out = {"images": self._to_data(y), "z": z.reshape(len(rows), -1).to(self.device)}
        out["w"] = out["z"]
        if cond is not None:
            out["condition"] = torch.as_tensor(cond, dtype=torch.float32)
        return out

    def _to_data(self, y: torch.Tensor) -> torch.Tensor:
        return self.transform.inverse(self.transform.bound(y.float()))

    @torch.no_grad()
    def map(self, z) -> torch.Tensor:
        return torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z,
                               dtype=torch.float32).to(self.device)

    @torch.no_grad()
    def decode(self, w, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Noise w (B, C*H*W) to images by the unconditional ODE (deterministic: ``seeds`` are not needed)."""
        w = self.map(w).reshape(-1, *self.shape)
        return self._to_data(self._chunks(w, None, steps=self.config.sample_steps, guidance=0.0))

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """Images to their noise w by integrating the unconditional ODE backwards (t = 0 to 1)."""
        x = self.transform.forward(self.map(images))
        return self._chunks(x, None, steps=self.config.sample_steps, guidance=0.0, reverse=True).reshape(len(x), -1)
