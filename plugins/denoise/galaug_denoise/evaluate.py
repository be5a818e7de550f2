"""The denoiser's evaluation: four test sets, the model and its degraded inputs scored alike.

See ``docs/denoise.md``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaug.data import Dataset, open_dataset
from galaug.degrade import Pipeline, derive_seeds
from galaug.degrade.resample import Resample, ResampleConfig
from galaug.errors import GalaugError
from galaug.progress import progress
from galaug.runs import Run
from galaug_denoise.checkpoint import load_best
from galaug_denoise.data import Pairs, RangeBatches, check_finite, check_model_fits, resolve_pairs, row_batches
from galaug_denoise.metrics import SSIM_WINDOW, MetricSums, robust_range
from galaug_denoise.models import ModelConfig, build_model
from galaug_denoise.normalize import MAX_PIXELS, Normalizer

__all__ = ["TEST_SETS", "NOISE_FACTOR", "strengthen_noise", "evaluate_denoiser"]

#: The evaluation conditions, in report order.
TEST_SETS = ("nominal", "lowres", "noise5x", "both")
#: How much stronger (in standard deviation) the noise of ``noise5x`` and ``both`` is.
NOISE_FACTOR = 5.0


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


def _summary(model: dict[str, Any], noisy: dict[str, Any]) -> dict[str, float]:
    """``{mse, psnr, ssim}`` of the model and ``{input_mse, input_psnr, input_ssim}`` of its input, 6 digits."""
    return {**{k: float(f"{model[k]:.6g}") for k in ("mse", "psnr", "ssim")},
            **{f"input_{k}": float(f"{noisy[k]:.6g}") for k in ("mse", "psnr", "ssim")}}


@torch.no_grad()
def evaluate_denoiser(run_dir: Path, data: Path, *, degrade: str | Pipeline | None, device: torch.device, seed: int,
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
    degrade : Pipeline, str or None
        The evaluation degradation (a spec is parsed); None for the run's own.
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
    sums = {name: {"model": MetricSums(ds.bands, data_range), "input": MetricSums(ds.bands, data_range)}
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
