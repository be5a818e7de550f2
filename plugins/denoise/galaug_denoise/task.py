"""The ``denoise`` task: config, the training loop, and the evaluation on four test sets.

Training degrades the clean images on the fly (a fresh draw every epoch),
learns to undo it with MSE in normalised units and Adam, and stops early
on a held-out part degraded with fixed seeds. Evaluation degrades a
validation set with fixed seeds under four conditions and reports MSE,
PSNR and SSIM of the model's output and of the degraded input itself.
See ``docs/denoise.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from galaug import distributed
from galaug._progress import progress
from galaug.checkpoints import trim_metrics
from galaug.config import config_to_dict
from galaug.data import Dataset, open_dataset
from galaug.degrade import Pipeline, Step, derive_seeds, parse_pipeline
from galaug.degrade.noise import CCDNoise, GaussianNoise, PoissonNoise
from galaug.degrade.pipeline import spec_name
from galaug.degrade.resample import Resample, ResampleConfig
from galaug.errors import GalaugError
from galaug.kinds import Task
from galaug_denoise.checkpoint import load_best, load_checkpoint, save_best, save_checkpoint
from galaug_denoise.data import (RangeBatches, Split, SplitSampler, augment_codes, dihedral, holdout_seeds,
                                 split_rows, train_seeds)
from galaug_denoise.metrics import SSIM_WINDOW, MetricSums, robust_range
from galaug_denoise.models import ModelConfig, build_model
from galaug_denoise.normalize import MAX_PIXELS, Normalizer

__all__ = ["DenoiseConfig", "Denoise", "Pairs", "TEST_SETS", "NOISE_FACTOR", "resolve_pairs", "strengthen_noise",
           "train_denoiser", "evaluate_denoiser"]

#: The evaluation conditions, in report order.
TEST_SETS = ("nominal", "lowres", "noise5x", "both")
#: How much stronger (in standard deviation) the noise of ``noise5x`` and ``both`` is.
NOISE_FACTOR = 5.0


@dataclasses.dataclass
class DenoiseConfig:
    """Options of the denoiser (``galaug config task denoise``)."""

    #: resnet: the study's residual CNN without downsampling; unet: a small U-Net (sizes divisible by 4)
    model: Literal["resnet", "unet"] = "resnet"
    #: filters of the resnet blocks, or of the U-Net's first level
    width: int = 32
    #: residual blocks of the resnet
    blocks: int = 5
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    #: cosine: from lr to lr_min over `epochs`; step: times lr_gamma every lr_step epochs
    schedule: Literal["cosine", "step"] = "cosine"
    lr_min: float = 0.0
    lr_step: int = 10
    lr_gamma: float = 0.5
    #: fraction of the training rows held out for early stopping (0: none; the last epoch is kept)
    holdout: float = 0.1
    #: stop after this many epochs without a lower held-out loss (0: never)
    patience: int = 5
    #: random flips and 90-degree rotations of the training images
    augment: bool = True
    #: per-band intensity normalisation fitted on the clean training images: robust (linear) or asinh
    normalize: Literal["robust", "asinh"] = "robust"
    #: training images the normalisation is fitted on
    normalize_samples: int = 4096
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    #: batches per epoch (0: the whole training part)
    max_steps_per_epoch: int = 0
    #: DataLoader worker processes reading the store (0: in the training process)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.model not in ("resnet", "unet"):
            raise ValueError(f"model must be 'resnet' or 'unet', got {self.model!r}")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.normalize not in ("robust", "asinh"):
            raise ValueError(f"normalize must be 'robust' or 'asinh', got {self.normalize!r}")
        for name in ("width", "blocks", "epochs", "batch_size", "lr_step", "normalize_samples", "checkpoint_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("patience", "max_steps_per_epoch", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min < self.lr:
            raise ValueError(f"lr_min must be >= 0 and below lr, got {self.lr_min}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")

    def model_config(self, bands: int) -> ModelConfig:
        """The network's sizes for images with ``bands`` bands."""
        return ModelConfig(bands=bands, model=self.model, width=self.width, blocks=self.blocks)


class Denoise(Task):
    """Denoiser (the study's residual CNN or a small U-Net) trained under on-the-fly degradations."""

    name = "denoise"
    Config = DenoiseConfig

    def train(self, data: Path, run_dir: Path, *, degrade: str | None = None, device: str = "cpu",
              seed: int = 0, resume: bool = False) -> None:
        """Train on ``data`` degraded on the fly (or on its stored pairs); see :func:`train_denoiser`."""
        train_denoiser(self.config, data=Path(data), run_dir=Path(run_dir), degrade=degrade,
                       device=torch.device(device), seed=seed, resume=resume)

    def evaluate(self, run_dir: Path, data: Path, *, degrade: str | None = None, device: str = "cpu",
                 seed: int = 0) -> dict[str, Any]:
        """Metrics of the run's best model on ``data``; see :func:`evaluate_denoiser`."""
        return evaluate_denoiser(Path(run_dir), Path(data), degrade=degrade, device=torch.device(device),
                                 seed=seed, batch_size=self.config.batch_size)


# -- (noisy, clean) pairs -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pairs:
    """How a dataset gives (degraded, clean) pairs.

    With a ``pipeline``, the clean images are the ``target`` member (``clean``
    when the dataset has one, else ``images``) and the inputs are made from
    them on the fly; without, the inputs are ``images`` and the targets
    ``clean`` (a ``galaug degrade`` output).
    """

    target: str
    pipeline: Pipeline | None

    @property
    def fields(self) -> tuple[str, ...]:
        """The members to read."""
        return (self.target,) if self.pipeline is not None else ("images", "clean")

    def make(self, batch: dict[str, torch.Tensor], *, seeds: np.ndarray, device: torch.device,
             codes: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy, clean) on ``device``; ``codes`` (see :func:`galaug_denoise.data.dihedral`) augment both alike."""
        clean = batch[self.target].to(device)
        noisy = None if self.pipeline is not None else batch["images"].to(device)
        if codes is not None:
            clean = dihedral(clean, codes)
            noisy = None if noisy is None else dihedral(noisy, codes)
        if noisy is None:
            noisy = self.pipeline.apply(clean, seeds)
        return noisy, clean


def resolve_pairs(ds: Dataset, spec: str | None) -> Pairs:
    """The pairs of ``ds`` under the degradation ``spec``; :class:`GalaugError` if there are none.

    Raises
    ------
    GalaugError
        No ``spec`` and no ``clean`` member; ``clean`` and ``images`` of
        different sizes; a pipeline that changes the image size.
    """
    if spec:
        pipeline = parse_pipeline(spec)
        target = "clean" if ds.clean_shape else "images"
        shape = ds.clean_shape or ds.image_shape
        out = pipeline.output_shape(shape)
        if tuple(out) != tuple(shape):
            raise GalaugError(f'degradation "{pipeline.spec}" turns {shape[1]}x{shape[2]} images into '
                              f"{out[1]}x{out[2]}; the denoiser needs the size kept (resample: keep_size=true)")
        return Pairs(target=target, pipeline=pipeline)
    if not ds.clean_shape:
        raise GalaugError(f"{ds.path}: no degradation given and no clean member to pair the images with; "
                          'pass --degrade SPEC (e.g. "noise:gaussian(std=1)") or use the output of galaug degrade')
    if tuple(ds.clean_shape) != tuple(ds.image_shape):
        raise GalaugError(f"{ds.path}: images are {ds.image_shape[1]}x{ds.image_shape[2]} but clean ones "
                          f"{ds.clean_shape[1]}x{ds.clean_shape[2]}; the denoiser needs pairs of one size")
    return Pairs(target="clean", pipeline=None)


def _check_model_fits(model: str, shape: Sequence[int], ds: Dataset) -> None:
    if model == "unet" and (shape[1] % 4 or shape[2] % 4):
        raise GalaugError(f"{ds.path}: the U-Net needs image sizes divisible by 4, got {shape[1]}x{shape[2]} "
                          "(--set model=resnet works with any size)")


def _check_finite(batch: dict[str, torch.Tensor], fields: Sequence[str], ds: Dataset) -> None:
    for field in fields:
        bad = ~torch.isfinite(batch[field]).flatten(1).all(dim=1)
        if bad.any():
            row = int(batch["rows"][bad][0])
            raise GalaugError(f"{ds.path}: {int(bad.sum())} image(s) with NaN/Inf pixels in {field!r} (first at "
                              f"row {row}); clean the data (galaug ingest --on-bad) first")


def _batches(ranges: Sequence[tuple[int, int]], size: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """Consecutive groups of at most ``size`` rows of ``ranges``, each group as row ranges."""
    group: list[tuple[int, int]] = []
    room = size
    for a, b in ranges:
        while a < b:
            take = min(room, b - a)
            group.append((a, a + take))
            a, room = a + take, room - take
            if room == 0:
                yield tuple(group)
                group, room = [], size
    if group:
        yield tuple(group)


# -- training -----------------------------------------------------------------------------

def _fit_normalizer(cfg: DenoiseConfig, pairs: Pairs, batches: RangeBatches, split: Split, ds: Dataset,
                    seed: int) -> Normalizer:
    """The normalisation fitted on up to ``normalize_samples`` consecutive training rows at a seeded offset.

    Read a batch at a time; beyond :data:`MAX_PIXELS` pixels a band only every
    k-th image is kept, so memory stays bounded whatever the image size.
    """
    m = min(split.n_train, cfg.normalize_samples)
    start = int(np.random.default_rng(derive_seeds(seed, 4).tolist()).integers(0, split.n_train - m + 1))
    c, h, w = ds.clean_shape if pairs.target == "clean" else ds.image_shape
    k = max(1, math.ceil(m * h * w / MAX_PIXELS))
    kept, seen = [], 0
    for ranges in _batches(split.train_ranges(start, start + m), cfg.batch_size):
        batch = batches[ranges]
        _check_finite(batch, pairs.fields, ds)
        kept.append(batch[pairs.target][(-seen) % k:: k].numpy())  # every k-th image of the whole sample
        seen += len(batch["rows"])
    return Normalizer(c, kind=cfg.normalize).fit(np.concatenate(kept))


def _scheduler(cfg: DenoiseConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


@torch.no_grad()
def _holdout_loss(net: torch.nn.Module, norm: Normalizer, pairs: Pairs, batches: RangeBatches, split: Split,
                  ds: Dataset, *, batch_size: int, seed: int, device: torch.device) -> float:
    """Mean MSE (normalised units) on the held-out rows, degraded with their fixed seeds."""
    net.eval()
    total, count = 0.0, 0
    for ranges in _batches(split.holdout, batch_size):
        batch = batches[ranges]
        _check_finite(batch, pairs.fields, ds)
        noisy, clean = pairs.make(batch, seeds=holdout_seeds(seed, batch["rows"]), device=device)
        total += F.mse_loss(net(norm(noisy)), norm(clean), reduction="sum").item()
        count += clean.numel()
    net.train()
    return total / count


def train_denoiser(cfg: DenoiseConfig, *, data: Path, run_dir: Path, degrade: str | None, device: torch.device,
                   seed: int, resume: bool) -> None:
    """The training loop: on-the-fly degradation, MSE and Adam, early stopping, checkpoints, metrics.

    Each epoch ``e`` degrades the (augmented) clean images of every training
    row ``r`` with the seed ``derive(derive(derive(seed, 0), e), r)``, takes
    one Adam step per batch on the MSE between the network's output and the
    clean images in normalised units, steps the learning-rate schedule, and
    computes the held-out loss with fixed seeds. ``metrics.jsonl`` gets one
    line per epoch; ``checkpoints/best.pt`` holds the model with the lowest
    held-out loss (the newest without a held-out part), and
    ``checkpoints/ckpt-<epoch>.pt`` everything needed to resume. Data order,
    seeds and augmentation depend only on ``(seed, epoch, row)`` and the
    initial weights on the torch RNG (saved), so a resumed run ends with the
    same weights as an uninterrupted one on the same device.

    Parameters
    ----------
    cfg : DenoiseConfig
    data : Path
        The training dataset.
    run_dir : Path
        Holds ``options.json``; receives everything else.
    degrade : str or None
        Pipeline spec; None to train on a dataset's ``images``/``clean`` pairs.
    device : torch.device
    seed : int
    resume : bool
        Continue from the newest good checkpoint in ``run_dir``.

    Raises
    ------
    GalaugError
        No pairs to train on (see :func:`resolve_pairs`), images the model
        cannot take, too few rows, NaN/Inf pixels.
    """
    main = distributed.is_main()  # rank 0 of several processes (or the only one): logs and checkpoints
    ds = open_dataset(data)
    pairs = resolve_pairs(ds, degrade)
    shape = ds.clean_shape if pairs.target == "clean" else ds.image_shape
    _check_model_fits(cfg.model, shape, ds)
    split = split_rows(len(ds), cfg.holdout, seed=seed, chunk_rows=ds.chunk_rows)
    if split.n_train < 1 or (cfg.holdout and split.n_holdout < 1):
        raise GalaugError(f"{ds.path}: {len(ds)} image(s) are too few to hold out {cfg.holdout:g} "
                          "and train on the rest")
    batches = RangeBatches(ds.path, fields=pairs.fields)
    model_cfg = cfg.model_config(shape[0])
    metrics_path = run_dir / "metrics.jsonl"

    if resume:
        state = load_checkpoint(run_dir)
        norm = Normalizer(shape[0], kind=cfg.normalize)
        norm.load_state_dict(state["normalizer"])
    else:
        state = None
        torch.manual_seed(seed)
        norm = _fit_normalizer(cfg, pairs, batches, split, ds, seed)
    net = build_model(model_cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = _scheduler(cfg, optimizer)
    start, best, best_epoch, bad_epochs, stopped = 0, math.inf, 0, 0, False
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])  # after building the net, whose init draws from it
        start, best, best_epoch = state["epoch"], state["best_loss"], state["best_epoch"]
        bad_epochs, stopped = state["bad_epochs"], state["stopped"]
        if main and metrics_path.exists():  # drop the epochs logged after the checkpoint
            trim_metrics(metrics_path, "epoch", start)
    net.to(device)
    norm.to(device)
    _optimizer_to(optimizer, device)

    sampler = SplitSampler(split, batch_size=cfg.batch_size, seed=seed, max_batches=cfg.max_steps_per_epoch,
                           rank=distributed.rank(), world=distributed.world_size())
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=sampler, num_workers=cfg.num_workers,
                                         persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda")
    # several processes: DistributedDataParallel averages the gradients of the ranks' slices of every batch
    model = (torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                       else None) if distributed.world_size() > 1 else net)
    common = {"config": config_to_dict(cfg), "model_config": dataclasses.asdict(model_cfg),
              "normalize": cfg.normalize, "bands": list(ds.bands), "degrade": pairs.pipeline.spec if pairs.pipeline
              else None, "seed": seed}

    def model_state() -> dict[str, Any]:
        return {**common, "model": net.state_dict(), "normalizer": norm.state_dict()}

    bar = progress(total=cfg.epochs * len(sampler), desc="train denoise", unit="step")
    bar.update(start * len(sampler))
    net.train()
    with open(metrics_path, "a") if main else contextlib.nullcontext() as log:
        for epoch in range(start, cfg.epochs):
            if stopped:
                break
            sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            t0, loss_sum, seen, steps = time.perf_counter(), 0.0, 0, 0
            for batch in loader:
                _check_finite(batch, pairs.fields, ds)
                rows = batch["rows"]
                codes = augment_codes(seed, epoch, rows) if cfg.augment else None
                noisy, clean = pairs.make(batch, seeds=train_seeds(seed, epoch, rows), device=device, codes=codes)
                loss = F.mse_loss(model(norm(noisy)), norm(clean))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(rows)
                seen += len(rows)
                steps += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4g}")
            elapsed = time.perf_counter() - t0
            if distributed.world_size() > 1:  # the epoch's loss and throughput over all ranks
                total = distributed.all_mean(torch.tensor([loss_sum, seen], dtype=torch.float64))
                total *= distributed.world_size()
                loss_sum, seen = float(total[0]), int(round(float(total[1])))
            scheduler.step()
            holdout = (_holdout_loss(net, norm, pairs, batches, split, ds, batch_size=cfg.batch_size, seed=seed,
                                     device=device) if split.holdout else None)
            done = epoch + 1
            improved = holdout is None or holdout < best
            if improved:
                best, best_epoch, bad_epochs = (math.inf if holdout is None else holdout), done, 0
            else:
                bad_epochs += 1
            stopped = bool(split.holdout) and cfg.patience > 0 and bad_epochs >= cfg.patience
            if not main:  # rank 0 logs and checkpoints; the others have the same weights and decisions
                continue
            log.write(json.dumps({"epoch": done, "train_loss": loss_sum / max(seen, 1), "holdout_loss": holdout,
                                  "lr": lr, "images_per_s": seen / elapsed if elapsed > 0 else None, "steps": steps,
                                  "best_epoch": best_epoch, "stopped": stopped}) + "\n")
            log.flush()
            if improved:
                save_best(run_dir, {**model_state(), "holdout_loss": holdout}, epoch=done)
            if done % cfg.checkpoint_every == 0 or done == cfg.epochs or stopped:
                save_checkpoint(run_dir, {
                    **model_state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "best_loss": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped": stopped,
                    "rng": {"torch": torch.get_rng_state()},
                }, epoch=done, keep=cfg.keep_checkpoints)
    bar.close()


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move an optimizer's state tensors (restored on the CPU) to ``device``."""
    for per_param in optimizer.state.values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and key != "step":
                per_param[key] = value.to(device)


# -- evaluation ---------------------------------------------------------------------------

def _times(value: float | tuple[float, ...], factor: float) -> float | tuple[float, ...]:
    return tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor


def strengthen_noise(pipeline: Pipeline, factor: float = NOISE_FACTOR) -> Pipeline:
    """``pipeline`` with every noise step ``factor`` times stronger in standard deviation.

    ``noise:gaussian``: ``std`` times ``factor``; ``noise:poisson``: ``gain``
    over ``factor**2``; ``noise:ccd``: ``read_noise`` times ``factor`` and
    ``sky_level`` times ``factor**2`` (the signal's own Poisson noise is
    unchanged). Other steps are kept as they are.

    Raises
    ------
    ValueError
        For a random step of another kind, which this function cannot scale.
    """
    steps = []
    for step in pipeline.steps:
        c, cfg = step.component, step.component.config
        if isinstance(c, GaussianNoise):
            cfg = dataclasses.replace(cfg, std=_times(cfg.std, factor))
        elif isinstance(c, PoissonNoise):
            cfg = dataclasses.replace(cfg, gain=_times(cfg.gain, 1 / factor**2))
        elif isinstance(c, CCDNoise):
            cfg = dataclasses.replace(cfg, read_noise=cfg.read_noise * factor, sky_level=cfg.sky_level * factor**2)
        elif c.stochastic:
            raise ValueError(f"cannot make {spec_name(step.name)} {factor:g}x stronger (only noise:gaussian, "
                             "noise:poisson and noise:ccd)")
        steps.append(Step(step.name, type(c)(cfg) if cfg is not c.config else c, step.version))
    return Pipeline(steps)


@dataclasses.dataclass(frozen=True)
class _TestSet:
    pre: Pipeline | None  # applied to the clean images first; its output is the target
    pipeline: Pipeline | None  # None: the dataset's own degraded images

    def describe(self) -> dict[str, Any]:
        return {"clean": self.pre.spec if self.pre else "as is",
                "degrade": self.pipeline.spec if self.pipeline else "the dataset's images"}


def _test_sets(pairs: Pairs) -> tuple[dict[str, _TestSet], dict[str, str]]:
    """The test sets that can be made, and why the others cannot."""
    if pairs.pipeline is None:
        reason = "needs a degradation spec (the run was trained on stored pairs): pass --degrade"
        return {"nominal": _TestSet(None, None)}, {name: reason for name in TEST_SETS[1:]}
    lowres = Pipeline([Step("resample", Resample(ResampleConfig(scale=2.0, keep_size=True)))])
    sets = {"nominal": _TestSet(None, pairs.pipeline), "lowres": _TestSet(lowres, pairs.pipeline)}
    try:
        strong = strengthen_noise(pairs.pipeline)
    except ValueError as exc:
        return sets, {"noise5x": str(exc), "both": str(exc)}
    sets.update(noise5x=_TestSet(None, strong), both=_TestSet(lowres, strong))
    return sets, {}


def _data_range(ds: Dataset, field: str) -> np.ndarray:
    """``p99.9 - p0.1`` per band of the images of ``field`` (every k-th image beyond MAX_PIXELS pixels a band)."""
    c, h, w = ds.clean_shape if field == "clean" else ds.image_shape
    k = max(1, math.ceil(len(ds) * h * w / MAX_PIXELS))
    pixels = []
    for start, block in ds.iter_blocks(fields=(field,)):
        images = block[field]
        if not np.isfinite(images).all():
            row = start + int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(axis=1))[0])
            raise GalaugError(f"{ds.path}: NaN/Inf pixels in {field!r} (first at row {row}); clean the data first")
        pixels.append(np.moveaxis(images[(-start) % k:: k], 1, 0).reshape(c, -1))
    return robust_range(np.concatenate(pixels, axis=1))


def _summary(model: dict[str, Any], noisy: dict[str, Any]) -> dict[str, float]:
    """``{mse, psnr, ssim}`` of the model and ``{input_mse, input_psnr, input_ssim}`` of its input, 6 digits."""
    return {**{k: float(f"{model[k]:.6g}") for k in ("mse", "psnr", "ssim")},
            **{f"input_{k}": float(f"{noisy[k]:.6g}") for k in ("mse", "psnr", "ssim")}}


@torch.no_grad()
def evaluate_denoiser(run_dir: Path, data: Path, *, degrade: str | None, device: torch.device, seed: int,
                      batch_size: int = 64) -> dict[str, Any]:
    """MSE, PSNR and SSIM of the run's best model and of its degraded inputs, on four test sets.

    Row ``r`` of ``data`` is degraded with the seed ``derive_seeds(seed, r)``
    in every test set (the seed ``galaug degrade --seed`` would give it), so
    every model evaluated with the same seed sees identical inputs:

    - ``nominal``: the degradation (``degrade``, else the run's);
    - ``lowres``: the clean images resampled with ``resample(scale=2)``
      (same size, half the resolution) are the targets, then degraded;
    - ``noise5x``: every noise step five times stronger (:func:`strengthen_noise`);
    - ``both``: lowres and noise5x together.

    Parameters
    ----------
    run_dir : Path
        A denoise run (its ``checkpoints/best.pt``).
    data : Path
        The validation set; its ``clean`` member (else ``images``) is the truth.
    degrade : str or None
        Pipeline spec; None for the run's own.
    device : torch.device
    seed : int
    batch_size : int
        Images per batch; the numbers do not depend on it beyond float rounding.

    Returns
    -------
    dict
        ``checkpoint`` (which one was evaluated), ``n``, ``bands``,
        ``data_range`` per band, ``degrade``, one entry per test set with
        ``spec``, ``model`` and ``input`` metrics (see
        :meth:`galaug_denoise.metrics.MetricSums.result`), ``skipped`` (test
        sets that cannot be made, with the reason) and ``summary``: per test
        set, ``mse``, ``psnr``, ``ssim`` of the model and ``input_mse``,
        ``input_psnr``, ``input_ssim`` of the degraded input (so that
        ``galaug experiment ratios`` with ``metric = "mse"`` tabulates the model).
    """
    from galaug.generators import read_options

    options = read_options(run_dir, kind="task")
    spec = degrade or options.get("degrade")
    state = load_best(run_dir)
    model_cfg = ModelConfig(**state["model_config"])
    net = build_model(model_cfg)
    net.load_state_dict(state["model"])
    norm = Normalizer(model_cfg.bands, kind=state["normalize"])
    norm.load_state_dict(state["normalizer"])
    net.to(device).eval()
    norm.to(device)

    ds = open_dataset(data)
    if ds.image_shape[0] != model_cfg.bands:
        raise GalaugError(f"{ds.path}: has {ds.image_shape[0]} band(s) but the model was trained on "
                          f"{model_cfg.bands} ({', '.join(state['bands'])})")
    pairs = resolve_pairs(ds, spec)
    shape = ds.clean_shape or ds.image_shape
    _check_model_fits(model_cfg.model, shape, ds)
    if min(shape[1:]) < SSIM_WINDOW:
        raise GalaugError(f"{ds.path}: SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                          f"got {shape[1]}x{shape[2]}")
    sets, skipped = _test_sets(pairs)
    data_range = _data_range(ds, pairs.target)
    sums = {name: {"model": MetricSums(ds.bands, data_range), "input": MetricSums(ds.bands, data_range)}
            for name in sets}
    batches = RangeBatches(ds.path, fields=pairs.fields)
    n_batches = math.ceil(len(ds) / batch_size)
    for ranges in progress(_batches(((0, len(ds)),), batch_size), total=n_batches, desc="eval denoise",
                           unit="batch"):
        batch = batches[ranges]
        _check_finite(batch, pairs.fields, ds)
        clean = batch[pairs.target].to(device)
        seeds = derive_seeds(seed, batch["rows"].numpy())
        for name, test in sets.items():
            target = test.pre.apply(clean, seeds) if test.pre else clean
            noisy = test.pipeline.apply(target, seeds) if test.pipeline else batch["images"].to(device)
            output = norm.inverse(net(norm(noisy)))
            sums[name]["model"].update(output, target)
            sums[name]["input"].update(noisy, target)

    report: dict[str, Any] = {
        "checkpoint": {"file": "best" if "holdout_loss" in state else "newest", "epoch": state["epoch"],
                       "holdout_loss": state.get("holdout_loss")},
        "n": len(ds), "bands": list(ds.bands),
        "data_range": {b: float(r) for b, r in zip(ds.bands, data_range)},
        "degrade": pairs.pipeline.spec if pairs.pipeline else None,
        "seeds": "derive_seeds(seed, row)",
    }
    for name, test in sets.items():
        report[name] = {"spec": test.describe(), "model": sums[name]["model"].result(),
                        "input": sums[name]["input"].result()}
    if skipped:
        report["skipped"] = skipped
    report["summary"] = {name: _summary(report[name]["model"], report[name]["input"]) for name in sets}
    return report
