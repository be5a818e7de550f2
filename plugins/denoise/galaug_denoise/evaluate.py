"""The denoiser's evaluation: four test sets, the model, its degraded inputs and classical baselines scored alike.

See ``docs/denoise.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaug.data import Dataset, open_dataset
from galaug.degrade import Pipeline, derive_seeds
from galaug.degrade.resample import Resample, ResampleConfig
from galaug.errors import GalaugError, ParamError
from galaug.progress import progress
from galaug.runs import Run
from galaug_denoise.baselines import (BASELINES, DEFAULT_BASELINES, noise_units, parse_baselines, psf_kernels,
                                     restore, tune)
from galaug_denoise.checkpoint import load_best
from galaug_denoise.data import (Pairs, RangeBatches, check_finite, check_model_fits, resolve_pairs, row_batches,
                                 split_rows, tuning_seeds)
from galaug_denoise.metrics import SSIM_WINDOW, MetricSums, robust_range
from galaug_denoise.models import ModelConfig, build_model
from galaug_denoise.normalize import MAX_PIXELS, Normalizer

__all__ = ["TEST_SETS", "NOISE_FACTOR", "TUNE_IMAGES", "strengthen_noise", "tuning_pairs", "evaluate_denoiser"]

#: The evaluation conditions, in report order.
TEST_SETS = ("nominal", "lowres", "noise5x", "both")
#: How much stronger (in standard deviation) the noise of ``noise5x`` and ``both`` is.
NOISE_FACTOR = 5.0
#: Training images the classical baselines are tuned on.
TUNE_IMAGES = 64


def strengthen_noise(pipeline: Pipeline, factor: float = NOISE_FACTOR) -> Pipeline:
    """``pipeline`` with every noise step ``factor`` times stronger in standard deviation.

    Each step's :meth:`galaug.kinds.Degradation.scaled`: ``noise:gaussian``
    multiplies ``std`` by ``factor``; ``noise:poisson`` divides ``gain`` by
    ``factor**2``; ``noise:ccd`` multiplies ``read_noise`` by ``factor`` and
    ``sky_level`` by ``factor**2`` (the signal's own Poisson noise is
    unchanged); a third-party noise scales itself. PSFs and resampling are
    kept as they are.

    Raises
    ------
    ValueError
        For a random step that does not implement ``scaled``.
    """
    return pipeline.scaled(factor)


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
    lowres = Pipeline([Resample(ResampleConfig(scale=2.0, keep_size=True))])
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


def _summary(model: dict[str, Any], noisy: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{mse, psnr, ssim}`` of the model, ``{input_mse, input_psnr, input_ssim}`` of its input and
    ``baselines: {name: {mse, psnr, ssim}}`` (when there are some), 6 digits."""
    out: dict[str, Any] = {**{k: float(f"{model[k]:.6g}") for k in ("mse", "psnr", "ssim")},
                           **{f"input_{k}": float(f"{noisy[k]:.6g}") for k in ("mse", "psnr", "ssim")}}
    if baselines:
        out["baselines"] = {name: {k: float(f"{m[k]:.6g}") for k in ("mse", "psnr", "ssim")}
                            for name, m in baselines.items()}
    return out


def tuning_pairs(run_dir: Path, *, n: int = TUNE_IMAGES) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(noisy, clean, record)``: up to ``n`` pairs from the run's own training data, for tuning the baselines.

    The rows are blocks held out as :func:`galaug_denoise.data.split_rows`
    would with the seed ``derive(seed, 5)`` (``seed``: the run's), degraded
    by the run's degradation with the seeds
    :func:`galaug_denoise.data.tuning_seeds` (or the stored pairs of a run
    trained on them): a function of the training data and the run alone.

    Raises
    ------
    GalaugError
        The run names no training data, or it is gone or has changed since.
    """
    run = Run.open(run_dir, kind="task")
    if not run.data:
        raise GalaugError(f"{run.path}: options.json names no training data to tune the baselines on")
    if not Path(run.data).exists():
        raise GalaugError(f"{run.path}: its training data {run.data} is gone; the baselines are tuned on it")
    ds = open_dataset(run.data)
    if run.data_id and ds.id != run.data_id:
        raise GalaugError(f"{run.path}: its training data {run.data} has changed since (id {ds.id[:8]}, "
                          f"trained on {str(run.data_id)[:8]}); the baselines are tuned on it")
    pairs = resolve_pairs(ds, run.pipeline)
    m = min(n, len(ds))
    rows = split_rows(len(ds), m / len(ds), seed=int(derive_seeds(run.seed, 5)[0]), chunk_rows=ds.chunk_rows).holdout
    batch = RangeBatches(ds.path, fields=pairs.fields)[rows]
    check_finite(batch, pairs.fields, ds)
    noisy, clean = pairs.make(batch, seeds=tuning_seeds(run.seed, batch["rows"]), device=torch.device("cpu"))
    record = {"data": str(ds.path), "data_id": ds.id, "rows": [list(r) for r in rows], "n": len(batch["rows"]),
              "degrade": run.degrade, "seed": run.seed, "seeds": "derive(derive(seed, 5), row)"}
    return noisy.numpy(), clean.numpy(), record


def _tune_baselines(run_dir: Path, names: tuple[str, ...], *, explicit: bool, shape: Sequence[int]
                    ) -> tuple[dict[str, Any], np.ndarray | None, dict[str, str]]:
    """``(report, psf, skipped)``: each baseline of ``names`` tuned on the run's training data (see
    :func:`tuning_pairs`); the run's PSF for images of ``shape``; the baselines that cannot be made, with the
    reason (an error instead when they were asked for by name)."""
    if not names:
        return {}, None, {}

    def cannot(reason: str, which: Sequence[str]) -> dict[str, str]:
        if explicit:
            raise ParamError("baselines", "{baselines}: %s; {baselines}=none evaluates without them"
                             % reason.replace("{", "{{").replace("}", "}}"))
        return {name: reason for name in which}

    try:
        noisy, clean, record = tuning_pairs(run_dir)
    except GalaugError as exc:
        return {}, None, cannot(str(exc), names)
    pipeline = Run.open(run_dir, kind="task").pipeline
    train_psf = psf_kernels(pipeline, *noisy.shape[1:])
    skipped = {}
    if train_psf is None and any(BASELINES[n].needs_psf for n in names):
        skipped = cannot(f"the run's degradation ({pipeline.spec if pipeline else 'stored pairs'}) has no PSF "
                         "for the Wiener filter", [n for n in names if BASELINES[n].needs_psf])
    report = {"tuning": record, "params": {}}
    for name in progress(names, desc="tune baselines", unit="baseline"):
        if name not in skipped:
            report["params"][name] = tune(name, noisy, clean, psf=train_psf)
    return report, psf_kernels(pipeline, *shape), skipped


@torch.no_grad()
def evaluate_denoiser(run_dir: Path, data: Path, *, degrade: str | Pipeline | None, device: torch.device, seed: int,
                      batch_size: int = 64, baselines: str | Sequence[str] | None = None) -> dict[str, Any]:
    """MSE, PSNR and SSIM of the run's best model, of its degraded inputs and of classical baselines, on four test sets.

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
    degrade : Pipeline, str or None
        The evaluation degradation (a spec is parsed); None for the run's own.
    device : torch.device
    seed : int
    batch_size : int
        Images per batch; the numbers do not depend on it beyond float rounding.
    baselines : str or sequence of str, optional
        Classical baselines (:mod:`galaug_denoise.baselines`) scored on the
        same noisy inputs, after tuning on the run's training data
        (:func:`tuning_pairs`): names, ``"a,b"``, ``"all"`` or ``"none"``.
        None: :data:`~galaug_denoise.baselines.DEFAULT_BASELINES`, leaving out
        (under ``baselines.skipped``, with the reason) those that cannot be
        made; a baseline asked for by name that cannot be made is an error.

    Returns
    -------
    dict
        ``checkpoint`` (which one was evaluated), ``n``, ``bands``,
        ``data_range`` per band, ``degrade``, ``baselines`` (the tuning data,
        the chosen parameter of each baseline per band, those skipped), one
        entry per test set with ``spec``, ``model``, ``input`` and
        ``baselines`` metrics (see
        :meth:`galaug_denoise.metrics.MetricSums.result`), ``skipped`` (test
        sets that cannot be made, with the reason) and ``summary``: per test
        set, ``mse``, ``psnr``, ``ssim`` of the model, ``input_mse``,
        ``input_psnr``, ``input_ssim`` of the degraded input (so that
        ``galaug experiment ratios`` with ``metric = "mse"`` tabulates the
        model) and ``baselines``: ``{name: {mse, psnr, ssim}}``.

    Raises
    ------
    ParamError
        An unknown baseline, or one asked for by name that cannot be made
        (no training data to tune it on, no PSF for the Wiener filter).
    """
    names = parse_baselines(baselines)
    explicit = names is not None
    names = DEFAULT_BASELINES if names is None else names
    spec = degrade or Run.open(run_dir, kind="task").pipeline
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
    check_model_fits(model_cfg.model, shape, ds)
    if min(shape[1:]) < SSIM_WINDOW:
        raise GalaugError(f"{ds.path}: SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                          f"got {shape[1]}x{shape[2]}")
    sets, skipped = _test_sets(pairs)
    data_range = _data_range(ds, pairs.target)
    tuned, psf, skipped_baselines = _tune_baselines(Path(run_dir), names, explicit=explicit, shape=shape)
    params = tuned.get("params", {})
    sums = {name: {"model": MetricSums(ds.bands, data_range), "input": MetricSums(ds.bands, data_range),
                   **{b: MetricSums(ds.bands, data_range) for b in params}}
            for name in sets}
    batches = RangeBatches(ds.path, fields=pairs.fields)
    n_batches = math.ceil(len(ds) / batch_size)
    for ranges in progress(row_batches(((0, len(ds)),), batch_size), total=n_batches, desc="eval denoise",
                           unit="batch"):
        batch = batches[ranges]
        check_finite(batch, pairs.fields, ds)
        clean = batch[pairs.target].to(device)
        seeds = derive_seeds(seed, batch["rows"].numpy())
        for name, test in sets.items():
            target = test.pre.apply(clean, seeds) if test.pre else clean
            noisy = test.pipeline.apply(target, seeds) if test.pipeline else batch["images"].to(device)
            output = norm.inverse(net(norm(noisy)))
            sums[name]["model"].update(output, target)
            sums[name]["input"].update(noisy, target)
            if params:
                images = noisy.cpu().numpy().astype(np.float64)
                units = ([noise_units(images[:, c]) for c in range(images.shape[1])]
                         if any(BASELINES[b].noise_units for b in params) else None)
                for b, tuning in params.items():
                    estimate = restore(b, images, tuning["values"], psf=psf, units=units)
                    sums[name][b].update(torch.from_numpy(estimate).to(target.device), target)

    report: dict[str, Any] = {
        "checkpoint": {"file": "best" if "holdout_loss" in state else "newest", "epoch": state["epoch"],
                       "holdout_loss": state.get("holdout_loss")},
        "n": len(ds), "bands": list(ds.bands),
        "data_range": {b: float(r) for b, r in zip(ds.bands, data_range)},
        "degrade": pairs.pipeline.spec if pairs.pipeline else None,
        "seeds": "derive_seeds(seed, row)",
    }
    if names:
        for tuning in params.values():  # values and edge flags by band name
            tuning["values"] = dict(zip(ds.bands, tuning["values"]))
            tuning["at_edge"] = dict(zip(ds.bands, tuning["at_edge"]))
        report["baselines"] = {**tuned, **({"skipped": skipped_baselines} if skipped_baselines else {})}
    for name, test in sets.items():
        report[name] = {"spec": test.describe(), "model": sums[name]["model"].result(),
                        "input": sums[name]["input"].result()}
        if params:
            report[name]["baselines"] = {b: sums[name][b].result() for b in params}
    if skipped:
        report["skipped"] = skipped
    report["summary"] = {name: _summary(report[name]["model"], report[name]["input"],
                                        report[name].get("baselines", {})) for name in sets}
    return report
