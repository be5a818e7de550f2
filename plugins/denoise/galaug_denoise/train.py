"""The denoiser's training loop: on-the-fly degradation, MSE and Adam, early stopping, checkpoints, metrics.

The run bookkeeping (checkpoint cadence, exact resume, ``metrics.jsonl``,
rank-0 logging) is galaug's :class:`galaug.runs.Training`; this module holds
the model's part. See ``docs/denoise.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from galaug import distributed, faults
from galaug.config import config_to_dict
from galaug.data import Dataset, open_dataset
from galaug.degrade import Pipeline, derive_seeds
from galaug.errors import GalaugError
from galaug.progress import progress
from galaug.runs import Training
from galaug_denoise.checkpoint import BEST, checkpoint_store
from galaug_denoise.data import (Pairs, RangeBatches, Split, SplitSampler, augment_codes, check_finite,
                                 check_model_fits, holdout_seeds, resolve_pairs, row_batches, split_rows,
                                 train_seeds)
from galaug_denoise.models import build_model
from galaug_denoise.normalize import MAX_PIXELS, Normalizer

if TYPE_CHECKING:
    from galaug_denoise.task import DenoiseConfig

__all__ = ["train_denoiser"]


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
    for ranges in row_batches(split.train_ranges(start, start + m), cfg.batch_size):
        batch = batches[ranges]
        check_finite(batch, pairs.fields, ds)
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
    for ranges in row_batches(split.holdout, batch_size):
        batch = batches[ranges]
        check_finite(batch, pairs.fields, ds)
        noisy, clean = pairs.make(batch, seeds=holdout_seeds(seed, batch["rows"]), device=device)
        total += F.mse_loss(net(norm(noisy)), norm(clean), reduction="sum").item()
        count += clean.numel()
    net.train()
    return total / count


def train_denoiser(cfg: DenoiseConfig, *, data: Path, run_dir: Path, degrade: str | Pipeline | None,
                   device: torch.device,                   seed: int, resume: bool) -> None:
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
    degrade : Pipeline, str or None
        The degradation (a spec is parsed); None to train on a dataset's ``images``/``clean`` pairs.
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
    ds = open_dataset(data)
    pairs = resolve_pairs(ds, degrade)
    shape = ds.clean_shape if pairs.target == "clean" else ds.image_shape
    check_model_fits(cfg.model, shape, ds)
    split = split_rows(len(ds), cfg.holdout, seed=seed, chunk_rows=ds.chunk_rows)
    if split.n_train < 1 or (cfg.holdout and split.n_holdout < 1):
        raise GalaugError(f"{ds.path}: {len(ds)} image(s) are too few to hold out {cfg.holdout:g} "
                          "and train on the rest")
    batches = RangeBatches(ds.path, fields=pairs.fields)
    model_cfg = cfg.model_config(shape[0])
    sampler = SplitSampler(split, batch_size=cfg.batch_size, seed=seed, max_batches=cfg.max_steps_per_epoch,
                           steps=cfg.steps_per_epoch)
    run = Training(run_dir, store=checkpoint_store(run_dir), counter="epoch", total=cfg.epochs, resume=resume,
                   desc="train denoise", seed=seed)
    state = run.resume_state()
    if state is not None:
        norm = Normalizer(shape[0], kind=cfg.normalize)
        norm.load_state_dict(state["normalizer"])
    else:
        norm = _fit_normalizer(cfg, pairs, batches, split, ds, seed)
    net = build_model(model_cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = _scheduler(cfg, optimizer)
    start, best, best_epoch, bad_epochs, stopped = run.start, math.inf, 0, 0, False
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.restore_rng(state)  # after building the net, whose init draws from it
        best, best_epoch = state["best_loss"], state["best_epoch"]
        bad_epochs, stopped = state["bad_epochs"], state["stopped"]
    net.to(device)
    norm.to(device)
    run.optimizer_to(optimizer, device)  # its state was restored on the CPU

    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=sampler, num_workers=cfg.num_workers,
                                         persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda")
    # several processes: DistributedDataParallel averages the gradients of the ranks' parts of every batch
    model = (torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                       else None) if distributed.world_size() > 1 else net)
    common = {"config": config_to_dict(cfg), "model_config": dataclasses.asdict(model_cfg),
              "normalize": cfg.normalize, "bands": list(ds.bands), "degrade": pairs.pipeline.spec if pairs.pipeline
              else None, "seed": seed}

    def model_state() -> dict[str, Any]:
        return {**common, "model": net.state_dict(), "normalizer": norm.state_dict()}

    net.train()
    with run, progress(total=cfg.epochs * len(sampler), desc="train denoise", unit="step") as bar:
        bar.update(start * len(sampler))
        for epoch in range(start, cfg.epochs):
            if stopped:
                break
            sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            t0, loss_sum, seen, steps = time.perf_counter(), 0.0, 0, 0
            for batch in loader:
                check_finite(batch, pairs.fields, ds)
                rows = batch["rows"]
                fresh = int(batch["pass"]) if "pass" in batch else epoch  # steps_per_epoch: the pass over the rows
                codes = augment_codes(seed, fresh, rows) if cfg.augment else None
                noisy, clean = pairs.make(batch, seeds=train_seeds(seed, fresh, rows), device=device, codes=codes)
                loss = F.mse_loss(model(norm(noisy)), norm(clean))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(rows)
                seen += len(rows)
                steps += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4g}")
                faults.point("train.step")
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
            # rank 0 logs and checkpoints; the others have the same weights and decisions
            run.log(epoch=done, train_loss=loss_sum / max(seen, 1), holdout_loss=holdout, lr=lr,
                    images_per_s=seen / elapsed if elapsed > 0 else None, steps=steps, best_epoch=best_epoch,
                    stopped=stopped)
            if improved:
                run.save_named(BEST, {**model_state(), "holdout_loss": holdout}, number=done)
            if run.due(done, every=cfg.checkpoint_every) or stopped:
                run.save({**model_state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "best_loss": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped": stopped},
                         number=done, keep=cfg.keep_checkpoints)
