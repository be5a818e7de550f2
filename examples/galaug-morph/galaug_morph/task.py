"""The ``size-flux`` task: predict log10 half-light radius and log10 total flux from a (degraded) image.

The truth is measured on the clean image itself (:mod:`galaug_morph.targets`),
so any dataset or mix can be trained on. Training degrades the clean
images on the fly with a pipeline spec (a fresh draw every epoch, as the
denoiser does), regresses the standardised targets with MSE and Adam, and
keeps the model with the lowest loss on a held-out part degraded with fixed
seeds. Evaluation reports RMSE and bias in dex of the model, and of the
trivial baseline that predicts the training mean, on two test sets. See
``README.md``.

Seeds (:func:`galaug.degrade.derive_seeds`, written ``derive``):

- training, epoch ``e``, row ``r``: ``derive(derive(derive(seed, 0), e), r)``;
- held-out rows: ``derive(derive(seed, 1), r)``, the same every epoch;
- flip/rotation of row ``r`` in epoch ``e``: ``derive(derive(derive(seed, 2), e), r) % 8``;
- batch order of epoch ``e``: ``derive(derive(seed, 3), e)``; the held-out rows: ``derive(seed, 4)``;
- evaluation of row ``r``: ``derive(eval_seed, r)`` (what ``galaug degrade --seed`` gives it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from galaug.progress import progress
from galaug.checkpoints import CheckpointStore
from galaug.config import config_to_dict
from galaug.data import Dataset, open_dataset
from galaug.degrade import Pipeline, as_pipeline, derive_seeds, parse_pipeline
from galaug.errors import GalaugError
from galaug.kinds import Task
from galaug.runs import Training
from galaug_morph.model import InputStretch, ModelConfig, Regressor
from galaug_morph.targets import TARGETS, measure

__all__ = ["SizeFluxConfig", "SizeFlux", "Inputs", "resolve_inputs", "split_rows", "train_size_flux",
           "evaluate_size_flux", "FORMAT", "LOWRES"]

FORMAT = "galaug-morph/1"
#: The pre-degradation of the ``lowres`` test set: half the resolution, same size.
LOWRES = "resample(scale=2, keep_size=true)"
#: Pixels per band the input stretch is fitted on, at most.
_MAX_PIXELS = 1 << 22


@dataclasses.dataclass
class SizeFluxConfig:
    """Options of the size-flux regressor (``galaug config task size-flux``)."""

    #: filters of the first convolution, doubled by every level
    width: int = 16
    #: stride-2 convolutions after the first
    levels: int = 2
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    #: the learning rate decays along a cosine from lr to lr_min over `epochs`
    lr_min: float = 0.0
    weight_decay: float = 0.0
    #: fraction of the training rows held out to pick the best epoch (0: none; the last epoch is kept)
    holdout: float = 0.1
    #: random flips and 90-degree rotations of the training images (the targets do not change)
    augment: bool = True
    #: asinh softening of the input stretch, as a fraction of the bright level
    softening: float = 0.05
    #: training images the input stretch is fitted on (an even subset), at most
    normalize_samples: int = 4096
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    #: batches per epoch (0: the whole training part)
    max_steps_per_epoch: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "epochs", "batch_size", "normalize_samples", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("levels", "max_steps_per_epoch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min < self.lr:
            raise ValueError(f"lr_min must be >= 0 and below lr, got {self.lr_min}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if not 0 < self.softening <= 1:
            raise ValueError(f"softening must be in (0, 1], got {self.softening}")

    def model_config(self, bands: int) -> ModelConfig:
        return ModelConfig(bands=bands, width=self.width, levels=self.levels, outputs=len(TARGETS))


class SizeFlux(Task):
    """Small CNN predicting log10 half-light radius and log10 total flux from (degraded) images."""

    name = "size-flux"
    Config = SizeFluxConfig

    def train(self, data: Path, run_dir: Path, *, degrade: str | None = None, device: str = "cpu",
              seed: int = 0, resume: bool = False) -> None:
        """Train on ``data`` degraded on the fly; see :func:`train_size_flux`."""
        train_size_flux(self.config, data=Path(data), run_dir=Path(run_dir), degrade=degrade,
                        device=torch.device(device), seed=seed, resume=resume)

    def evaluate(self, run_dir: Path, data: Path, *, degrade: str | None = None, device: str = "cpu",
                 seed: int = 0) -> dict[str, Any]:
        """Metrics of the run's best model on ``data``; see :func:`evaluate_size_flux`."""
        return evaluate_size_flux(Path(run_dir), Path(data), degrade=degrade, device=torch.device(device),
                                  seed=seed, batch_size=self.config.batch_size)


# -- inputs and targets -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Inputs:
    """Where a dataset's truth and model inputs come from.

    The targets are measured on ``target`` (``clean`` when the dataset has
    it, else ``images``). With a ``pipeline`` the inputs are ``target``
    degraded on the fly; without, they are ``images`` as stored (a
    ``galaug degrade`` output, or clean images).
    """

    target: str
    pipeline: Pipeline | None

    @property
    def from_target(self) -> bool:
        """True when the inputs are made from the target images (so a test set can change them)."""
        return self.pipeline is not None or self.target == "images"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.target,) if self.from_target else ("images", self.target)

    def make(self, batch: dict[str, np.ndarray], *, seeds: np.ndarray, device: torch.device,
             codes: np.ndarray | None = None, pre: Pipeline | None = None) -> torch.Tensor:
        """Model inputs (B, C, H', W') on ``device``: flipped/rotated by ``codes``, then ``pre``, then degraded."""
        x = torch.from_numpy(batch[self.target] if self.from_target else batch["images"]).to(device)
        if codes is not None:
            x = dihedral(x, codes)
        if pre is not None:
            x = pre.apply(x, seeds)
        return self.pipeline.apply(x, seeds) if self.pipeline is not None else x


def resolve_inputs(ds: Dataset, spec: str | Pipeline | None) -> Inputs:
    """The inputs of ``ds`` under the degradation ``spec`` (None: the stored images).

    Raises
    ------
    GalaugError
        A spec that does not parse, or that does not fit the images.
    """
    target = "clean" if ds.clean_shape else "images"
    if not spec:
        return Inputs(target=target, pipeline=None)
    pipeline = as_pipeline(spec)
    pipeline.output_shape(ds.clean_shape or ds.image_shape)  # a step that does not fit fails here, not mid-run
    return Inputs(target=target, pipeline=pipeline)


def _check_finite(batch: dict[str, np.ndarray], rows: np.ndarray, ds: Dataset) -> None:
    for field, values in batch.items():
        bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if bad.any():
            raise GalaugError(f"{ds.path}: {int(bad.sum())} image(s) with NaN/Inf pixels in {field!r} (first at "
                              f"row {int(rows[bad][0])}); clean the data (galaug ingest --on-bad) first")


def _scan(ds: Dataset, inputs: Inputs, *, sample_every: int | None = None, sample_rows: np.ndarray | None = None,
          batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One pass over ``ds``: the targets and validity of every row, and pixels of every ``sample_every``-th sample row.

    Returns ``(targets (N, 2), valid (N,), pixels (C, P) or None)``.
    """
    targets, valid, kept = np.full((len(ds), len(TARGETS)), np.nan), np.zeros(len(ds), bool), []
    in_sample = np.zeros(len(ds), bool)
    if sample_every:
        in_sample[sample_rows[::sample_every]] = True
    rows_per_read = max(ds.chunk_rows, batch_size)
    for start, block in ds.iter_blocks(rows=rows_per_read, fields=(inputs.target,)):
        images = block[inputs.target]
        _check_finite(block, np.arange(start, start + len(images)), ds)
        targets[start:start + len(images)], valid[start:start + len(images)] = measure(images)
        if sample_every:
            kept.append(images[in_sample[start:start + len(images)]])
    pixels = None
    if sample_every:
        x = np.concatenate(kept)
        pixels = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
        pixels = pixels[:, :: -(-pixels.shape[1] // _MAX_PIXELS)].astype(np.float64)
    return targets, valid, pixels


def read_rows(ds: Dataset, rows: np.ndarray, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Sorted ``rows`` of ``fields``, one contiguous read per run of consecutive rows."""
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    parts = [ds.read(int(r[0]), int(r[-1]) + 1, fields=fields) for r in runs]
    return {f: np.concatenate([p[f] for p in parts]) for f in fields}


# -- rows, batches, seeds, augmentation ---------------------------------------------------

def split_rows(n: int, fraction: float, *, seed: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows (sorted): about ``fraction`` of ``n`` held out in random blocks.

    Blocks of ``min(chunk_rows, ceil(m / 8))`` consecutive rows for ``m``
    held-out rows, so reads stay contiguous while a dataset sorted by some
    property is still sampled along its length.
    """
    if not fraction or n < 2:
        return np.arange(n), np.arange(0)
    m = max(1, round(fraction * n))
    block = max(1, min(chunk_rows, math.ceil(m / 8)))
    starts = np.arange(0, n, block)
    held = np.zeros(n, bool)
    for i in np.random.default_rng(derive_seeds(seed, 4).tolist()).permutation(len(starts)):
        if held.sum() >= m:
            break
        held[starts[i]:starts[i] + block] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def epoch_batches(rows: np.ndarray, batch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """``rows`` cut into batches of consecutive rows at an offset drawn for the epoch, in a shuffled order."""
    rng = np.random.default_rng(derive_seeds(derive_seeds(seed, 3), epoch).tolist())
    offset = int(rng.integers(batch_size)) if len(rows) > batch_size else 0
    bounds = [0, *range(offset or batch_size, len(rows), batch_size), len(rows)]
    batches = [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_seeds(seed: int, epoch: int, rows: np.ndarray) -> np.ndarray:
    return derive_seeds(derive_seeds(derive_seeds(seed, 0), epoch), rows)


def holdout_seeds(seed: int, rows: np.ndarray) -> np.ndarray:
    return derive_seeds(derive_seeds(seed, 1), rows)


def augment_codes(seed: int, epoch: int, rows: np.ndarray) -> np.ndarray:
    return derive_seeds(derive_seeds(derive_seeds(seed, 2), epoch), rows) % 8


def dihedral(images: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    """Sample ``i`` turned by ``codes[i] % 4`` quarter turns, then flipped left-right if ``codes[i] >= 4``.

    Non-square images take half turns only (odd quarter turns round down).
    """
    codes = np.asarray(codes) if images.shape[-1] == images.shape[-2] else np.asarray(codes) & ~1
    out = images.clone()
    for code in np.unique(codes):
        idx = torch.from_numpy(np.flatnonzero(codes == code)).to(images.device)
        x = torch.rot90(images[idx], int(code) % 4, dims=(2, 3))
        out[idx] = torch.flip(x, dims=(3,)) if code >= 4 else x
    return out


# -- checkpoints --------------------------------------------------------------------------

def _store(run_dir: Path) -> CheckpointStore:
    return CheckpointStore(run_dir, format=FORMAT, what="a size-flux checkpoint", digits=6)


def load_best(run_dir: Path) -> dict[str, Any]:
    """``checkpoints/best.pt``; the newest good checkpoint when it is missing or unreadable."""
    store = _store(run_dir)
    try:
        return store.read(store.folder / "best.pt")
    except GalaugError as exc:
        if not store.list():
            raise GalaugError(f"{run_dir}: has no trained size-flux model ({exc})") from None
        return store.load()


# -- training -----------------------------------------------------------------------------

def _standardise(t: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    return (torch.from_numpy(t).to(device=device, dtype=torch.float32) - mean) / std


@torch.no_grad()
def _holdout(net: Regressor, stretch: InputStretch, inputs: Inputs, ds: Dataset, rows: np.ndarray,
             targets: np.ndarray, valid: np.ndarray, mean: torch.Tensor, std: torch.Tensor, *, batch_size: int,
             seed: int, device: torch.device) -> tuple[float, list[float]]:
    """Held-out loss (standardised MSE) and RMSE in dex per target, with fixed seeds."""
    net.eval()
    sq, se, count = 0.0, np.zeros(len(TARGETS)), 0
    for i in range(0, len(rows), batch_size):
        r = rows[i:i + batch_size]
        ok = valid[r]
        if not ok.any():
            continue
        batch = read_rows(ds, r, inputs.fields)
        _check_finite(batch, r, ds)
        x = inputs.make(batch, seeds=holdout_seeds(seed, r), device=device)
        pred = net(stretch(x))[torch.from_numpy(ok).to(device)]
        truth = _standardise(targets[r][ok], mean, std, device)
        sq += F.mse_loss(pred, truth, reduction="sum").item()
        se += (((pred - truth) * std) ** 2).sum(dim=0).double().cpu().numpy()
        count += int(ok.sum())
    net.train()
    if not count:
        return math.nan, [math.nan] * len(TARGETS)
    return sq / (count * len(TARGETS)), np.sqrt(se / count).tolist()


def train_size_flux(cfg: SizeFluxConfig, *, data: Path, run_dir: Path, degrade: str | None, device: torch.device,
                    seed: int, resume: bool) -> None:
    """The training loop: targets measured once, inputs degraded on the fly, MSE and Adam, best model kept.

    Every epoch takes one Adam step per batch on the MSE between the
    network's output and the standardised targets (valid rows only), steps
    the cosine schedule, and computes the held-out loss with fixed seeds.
    ``metrics.jsonl`` gets one line per epoch; ``checkpoints/best.pt`` holds
    the model with the lowest held-out loss (the newest without a held-out
    part) and ``checkpoints/ckpt-<epoch>.pt`` everything needed to resume.
    Data order, seeds and augmentation depend only on ``(seed, epoch, row)``
    and the initial weights on the torch RNG (saved), so a resumed run ends
    with the same weights as an uninterrupted one on the same device.

    Raises
    ------
    GalaugError
        A degradation that does not fit, too few rows, no row with a positive
        flux, NaN/Inf pixels.
    """
    ds = open_dataset(data)
    inputs = resolve_inputs(ds, degrade)
    train_rows, held_rows = split_rows(len(ds), cfg.holdout, seed=seed, chunk_rows=ds.chunk_rows)
    if not len(train_rows) or (cfg.holdout and not len(held_rows)):
        raise GalaugError(f"{ds.path}: {len(ds)} image(s) are too few to hold out {cfg.holdout:g} "
                          "and train on the rest")
    bands = (ds.clean_shape or ds.image_shape)[0]
    model_cfg = cfg.model_config(bands)
    run = Training(run_dir, store=_store(run_dir), counter="epoch", total=cfg.epochs, resume=resume, seed=seed,
                   desc="train size-flux")
    state = run.resume_state()  # None for a new run: torch is seeded with seed
    every = None if state else max(1, math.ceil(len(train_rows) / cfg.normalize_samples))
    targets, valid, pixels = _scan(ds, inputs, sample_every=every, sample_rows=train_rows, batch_size=cfg.batch_size)
    if not valid[train_rows].any():
        raise GalaugError(f"{ds.path}: no training image has a positive total flux; nothing to learn from")

    stretch = InputStretch(bands, softening=cfg.softening)
    if state is None:
        stretch.fit(pixels)
        t = targets[train_rows][valid[train_rows]]
        mean, std = t.mean(axis=0), t.std(axis=0)
        std = np.where(std > 1e-6, std, 1.0)
        target_stats = {"mean": torch.as_tensor(mean, dtype=torch.float32),
                        "std": torch.as_tensor(std, dtype=torch.float32)}
    else:
        stretch.load_state_dict(state["stretch"])
        target_stats = state["targets"]
    net = Regressor(model_cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
    start, best, best_epoch = run.start, math.inf, 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.restore_rng(state)
        best, best_epoch = state["best_loss"], state["best_epoch"]
    net.to(device)
    stretch.to(device)
    run.optimizer_to(optimizer, device)  # its state was restored on the CPU
    mean, std = target_stats["mean"].to(device), target_stats["std"].to(device)
    common = {"config": config_to_dict(cfg), "model_config": dataclasses.asdict(model_cfg), "bands": list(ds.bands),
              "degrade": inputs.pipeline.spec if inputs.pipeline else None, "seed": seed,
              "targets": target_stats, "target_names": list(TARGETS)}

    def model_state() -> dict[str, Any]:
        return {**common, "model": net.state_dict(), "stretch": stretch.state_dict()}

    steps_per_epoch = len(epoch_batches(train_rows, cfg.batch_size, seed=seed, epoch=0))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    net.train()
    with run, progress(total=cfg.epochs * steps_per_epoch, desc="train size-flux", unit="step") as bar:
        bar.update(start * steps_per_epoch)
        for epoch in range(start, cfg.epochs):
            lr = optimizer.param_groups[0]["lr"]
            t0, loss_sum, seen, steps = time.perf_counter(), 0.0, 0, 0
            for rows in epoch_batches(train_rows, cfg.batch_size, seed=seed, epoch=epoch)[:steps_per_epoch]:
                batch = read_rows(ds, rows, inputs.fields)
                _check_finite(batch, rows, ds)
                ok = valid[rows]
                codes = augment_codes(seed, epoch, rows) if cfg.augment else None
                x = inputs.make(batch, seeds=train_seeds(seed, epoch, rows), device=device, codes=codes)
                bar.update(1)
                if not ok.any():
                    continue
                pred = net(stretch(x))[torch.from_numpy(ok).to(device)]
                loss = F.mse_loss(pred, _standardise(targets[rows][ok], mean, std, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * int(ok.sum())
                seen += int(ok.sum())
                steps += 1
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4g}")
            elapsed = time.perf_counter() - t0
            scheduler.step()
            done = epoch + 1
            holdout, rmse = (_holdout(net, stretch, inputs, ds, held_rows, targets, valid, mean, std,
                                      batch_size=cfg.batch_size, seed=seed, device=device)
                             if len(held_rows) else (None, None))
            improved = holdout is None or holdout < best  # a NaN loss (no valid held-out row) never improves
            if improved:
                best, best_epoch = (math.inf if holdout is None else holdout), done
            run.log(epoch=done, train_loss=loss_sum / seen if seen else None, holdout_loss=holdout,
                    **({f"holdout_{n}_rmse": v for n, v in zip(TARGETS, rmse)} if rmse else {}),
                    lr=lr, images_per_s=seen / elapsed if elapsed > 0 else None, steps=steps, best_epoch=best_epoch)
            if improved:
                run.save_named("best.pt", {**model_state(), "holdout_loss": holdout}, number=done)
            if run.due(done, every=cfg.checkpoint_every):
                run.save({**model_state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "best_loss": best, "best_epoch": best_epoch}, number=done, keep=cfg.keep_checkpoints)


# -- evaluation ---------------------------------------------------------------------------

class _Errors:
    """Running sums of the errors (dex) of one predictor against the truth, per target."""

    def __init__(self) -> None:
        k = len(TARGETS)
        self.n, self.err, self.sq, self.t, self.tt = 0, np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        e = pred - truth
        self.n += len(e)
        self.err += e.sum(axis=0)
        self.sq += (e**2).sum(axis=0)
        self.t += truth.sum(axis=0)
        self.tt += (truth**2).sum(axis=0)

    def result(self) -> dict[str, Any]:
        """Per target ``rmse``, ``bias`` (dex) and ``r2`` (1 - SSE / SST); ``rmse`` over both targets."""
        n = max(self.n, 1)
        sst = self.tt - self.t**2 / n
        out: dict[str, Any] = {
            name: {"rmse": _g(math.sqrt(self.sq[i] / n)), "bias": _g(self.err[i] / n),
                   "r2": _g(1 - self.sq[i] / sst[i]) if sst[i] > 0 else None}
            for i, name in enumerate(TARGETS)}
        out["rmse"] = _g(math.sqrt(self.sq.sum() / (n * len(TARGETS))))
        return out


def _g(x: float) -> float:
    return float(f"{x:.6g}")


@torch.no_grad()
def evaluate_size_flux(run_dir: Path, data: Path, *, degrade: str | None, device: torch.device, seed: int,
                       batch_size: int = 64) -> dict[str, Any]:
    """RMSE and bias (dex) of the run's best model, and of the training-mean baseline, on two test sets.

    Row ``r`` of ``data`` is degraded with the seed ``derive_seeds(seed, r)``
    so every model evaluated with the same seed sees identical inputs; the
    truth is always measured on the clean image:

    - ``nominal``: the degradation (``degrade``, else the run's own);
    - ``lowres``: the clean image resampled to half the resolution
      (:data:`LOWRES`) before it is degraded; skipped when the inputs are a
      dataset's stored degraded images.

    Returns
    -------
    dict
        ``checkpoint``, ``n``, ``n_valid`` (rows with a positive flux: the
        ones scored), ``bands``, ``degrade``, ``targets`` (what they are), one
        entry per test set with ``spec``, ``model`` and ``baseline`` (per
        target ``rmse``, ``bias``, ``r2``, and ``rmse`` over both),
        ``skipped`` (test sets that cannot be made, and why) and ``summary``:
        per test set ``rmse``, ``radius_rmse``, ``radius_bias``,
        ``flux_rmse``, ``flux_bias`` of the model and ``baseline_rmse``
        (what ``galaug experiment ratios`` tabulates, e.g. ``metric = "rmse"``).
    """
    from galaug.runs import Run

    spec = degrade or Run.open(run_dir, kind="task").pipeline
    state = load_best(run_dir)
    model_cfg = ModelConfig(**state["model_config"])
    net = Regressor(model_cfg)
    net.load_state_dict(state["model"])
    stretch = InputStretch(model_cfg.bands)
    stretch.load_state_dict(state["stretch"])
    net.to(device).eval()
    stretch.to(device)
    mean, std = state["targets"]["mean"].to(device), state["targets"]["std"].to(device)

    ds = open_dataset(data)
    bands = (ds.clean_shape or ds.image_shape)[0]
    if bands != model_cfg.bands:
        raise GalaugError(f"{ds.path}: has {bands} band(s) but the model was trained on {model_cfg.bands} "
                          f"({', '.join(state['bands'])})")
    inputs = resolve_inputs(ds, spec)
    sets: dict[str, Pipeline | None] = {"nominal": None}
    skipped: dict[str, str] = {}
    if inputs.from_target:
        lowres = parse_pipeline(LOWRES)
        try:
            lowres.output_shape(ds.clean_shape or ds.image_shape)
            sets["lowres"] = lowres
        except GalaugError as exc:
            skipped["lowres"] = str(exc)
    else:
        skipped["lowres"] = "the inputs are the dataset's stored degraded images: pass --degrade"
    sums = {name: {"model": _Errors(), "baseline": _Errors()} for name in sets}
    baseline = mean.cpu().numpy().astype(np.float64)
    n_valid = 0
    n_batches = math.ceil(len(ds) / batch_size)
    for start in progress(range(0, len(ds), batch_size), total=n_batches, desc="eval size-flux", unit="batch"):
        rows = np.arange(start, min(start + batch_size, len(ds)))
        batch = ds.read(start, start + batch_size, fields=inputs.fields)
        _check_finite(batch, rows, ds)
        truth, ok = measure(batch[inputs.target])
        if not ok.any():
            continue
        n_valid += int(ok.sum())
        seeds = derive_seeds(seed, rows)
        for name, pre in sets.items():
            pred = net(stretch(inputs.make(batch, seeds=seeds, device=device, pre=pre))) * std + mean
            sums[name]["model"].update(pred.double().cpu().numpy()[ok], truth[ok])
            sums[name]["baseline"].update(np.broadcast_to(baseline, truth[ok].shape), truth[ok])
    if not n_valid:
        raise GalaugError(f"{ds.path}: no image has a positive total flux; nothing to score")

    report: dict[str, Any] = {
        "checkpoint": {"file": "best" if "holdout_loss" in state else "newest", "epoch": state["epoch"],
                       "holdout_loss": state.get("holdout_loss")},
        "n": len(ds), "n_valid": n_valid, "bands": list(ds.bands),
        "degrade": inputs.pipeline.spec if inputs.pipeline else None,
        "targets": {"radius": "log10 half-light radius about the light-weighted centroid [pixels]",
                    "flux": f"log10 total flux in the stamp [{ds.flux_unit or 'data units'}]",
                    "measured_on": inputs.target},
        "seeds": "derive_seeds(seed, row)",
    }
    for name, pre in sets.items():
        report[name] = {"spec": {"pre": pre.spec if pre else None,
                                 "degrade": inputs.pipeline.spec if inputs.pipeline else
                                 ("none" if inputs.from_target else "the dataset's images")},
                        "model": sums[name]["model"].result(), "baseline": sums[name]["baseline"].result()}
    if skipped:
        report["skipped"] = skipped
    report["summary"] = {
        name: {"rmse": report[name]["model"]["rmse"],
               **{f"{t}_{k}": report[name]["model"][t][k] for t in TARGETS for k in ("rmse", "bias")},
               "baseline_rmse": report[name]["baseline"]["rmse"]}
        for name in sets}
    return report
