"""What the denoiser reads: the held-out split, contiguous batches of it, seeds and augmentation.

The held-out rows are blocks of consecutive rows (at most a chunk, and
small enough that the held-out part is made of at least eight of them)
chosen at random with the seed, so that reads stay contiguous while a
dataset sorted by some property is still sampled across its length. The
training rows are the rest: a list of row ranges that :class:`SplitSampler`
addresses as one virtual range ``[0, n_train)`` with
:class:`galaug.data.torch.BlockSampler`'s shuffled, shifted batches.

Seeds (:func:`galaug.degrade.derive_seeds`, written ``derive``):

- training, epoch ``e``, row ``r``: ``derive(derive(derive(seed, 0), e), r)``
  (a fresh degradation every epoch); with ``steps_per_epoch`` (a fixed
  number of batches per epoch, however many rows), ``e`` counts the passes
  over the training rows through the whole run instead, so a row seen twice
  in one epoch is degraded and augmented afresh each time;
- held-out rows: ``derive(derive(seed, 1), r)``, the same every epoch;
- augmentation of row ``r`` in epoch ``e``: ``derive(derive(derive(seed, 2), e), r) % 8``
  picks one of the eight flips and 90-degree rotations;
- evaluation: ``derive(eval_seed, r)``, the seeds ``galaug degrade --seed``
  gives row ``r``;
- tuning the classical baselines (:mod:`galaug_denoise.baselines`): a
  sample of training rows held out as :func:`split_rows` would with the seed
  ``derive(seed, 5)``, row ``r`` degraded with ``derive(derive(seed, 5), r)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from galaug import distributed
from galaug.data import Dataset
from galaug.data.torch import BlockDataset, BlockSampler
from galaug.degrade import Pipeline, as_pipeline, derive_seeds
from galaug.errors import GalaugError
from galaug.runs import rank_rows

__all__ = ["Split", "split_rows", "SplitSampler", "Pass", "RangeBatches", "ranges_rows", "train_seeds", "holdout_seeds",
           "augment_codes", "tuning_seeds", "dihedral", "Pairs", "resolve_pairs", "check_model_fits", "check_finite",
           "row_batches"]

Ranges = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Split:
    """Training and held-out rows of a dataset, each as sorted, disjoint ``(start, stop)`` ranges."""

    train: Ranges
    holdout: Ranges

    @property
    def n_train(self) -> int:
        return sum(b - a for a, b in self.train)

    @property
    def n_holdout(self) -> int:
        return sum(b - a for a, b in self.holdout)

    def train_ranges(self, start: int, stop: int) -> Ranges:
        """Rows ``start:stop`` of the training part (counted over its ranges) as dataset row ranges."""
        out, offset = [], 0
        for a, b in self.train:
            lo, hi = max(start - offset, 0), min(stop - offset, b - a)
            if lo < hi:
                out.append((a + lo, a + hi))
            offset += b - a
            if offset >= stop:
                break
        return tuple(out)


def _merge(ranges: Sequence[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


def split_rows(n: int, fraction: float, *, seed: int, chunk_rows: int) -> Split:
    """Hold out about ``fraction`` of ``n`` rows (at least one if ``fraction > 0``) in random blocks.

    Blocks are ``min(chunk_rows, ceil(m / 8))`` rows long for ``m`` held-out
    rows; they are taken in a random order (from ``seed``) until ``m`` rows
    are covered, so a partial last block of the dataset may add a few less.
    """
    if not fraction:
        return Split(train=((0, n),) if n else (), holdout=())
    m = max(1, round(fraction * n))
    block = max(1, min(chunk_rows, math.ceil(m / 8)))
    starts = np.arange(0, n, block)
    order = np.random.default_rng(derive_seeds(seed, 3).tolist()).permutation(len(starts))
    chosen, covered = [], 0
    for i in order:
        if covered >= m:
            break
        a = int(starts[i])
        b = min(a + block, n)
        chosen.append((a, b))
        covered += b - a
    holdout = _merge(chosen)
    bounds = [0, *(x for r in holdout for x in r), n]
    train = _merge([(a, b) for a, b in zip(bounds[::2], bounds[1::2]) if b > a])
    return Split(train=train, holdout=holdout)


@dataclasses.dataclass(frozen=True)
class Pass:
    """A batch's row ranges and the pass over the training rows it belongs to (:class:`SplitSampler` with
    ``steps``); :class:`RangeBatches` returns the pass as ``batch["pass"]``."""

    ranges: Ranges
    index: int


class SplitSampler(torch.utils.data.Sampler):
    """:class:`BlockSampler` batches over the training rows of a :class:`Split`, as dataset row ranges.

    Parameters
    ----------
    split : Split
    batch_size : int
    seed : int
        With :meth:`set_epoch`, fixes each epoch's order.
    max_batches : int
        Only the first so many batches of each epoch (0: all).
    steps : int
        Exactly this many batches every epoch, whatever the number of rows
        (0: one pass over the rows). The batches run through passes over the
        rows, each in a new order, continuing from one epoch into the next,
        and come as :class:`Pass` (ranges and pass number), so that a
        training set of any size gets the same number of gradient steps.

    With several processes, each yields its part of every batch
    (:func:`galaug.runs.rank_rows`); a batch of fewer rows than processes
    (an epoch's last) is skipped by all.
    """

    def __init__(self, split: Split, *, batch_size: int, seed: int, max_batches: int = 0, steps: int = 0) -> None:
        if steps and max_batches:
            raise ValueError("give steps or max_batches, not both")
        self.split = split
        self.blocks = BlockSampler(split.n_train, batch_size=batch_size, shuffle=True, seed=seed)
        self.max_batches, self.steps = max_batches, steps
        self.world = distributed.world_size()
        self.epoch = 0
        self._at: tuple[int, int, int] = (0, 0, 0)  # (epoch, pass, batch of the pass) where an epoch starts

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.blocks.set_epoch(epoch)

    def __iter__(self) -> Iterator[Ranges | Pass]:
        if self.steps:
            yield from self._passes()
            return
        for i, (start, stop) in enumerate(self.blocks):
            if self.max_batches and i >= self.max_batches:
                return
            if stop - start < self.world:
                continue
            yield self.split.train_ranges(*rank_rows(start, stop))

    def _pass(self, index: int) -> list[tuple[int, int]]:
        self.blocks.set_epoch(index)
        return [r for r in self.blocks if r[1] - r[0] >= self.world]

    def _passes(self) -> Iterator[Pass]:
        """Batches ``epoch * steps`` to ``(epoch + 1) * steps`` of the run's stream of passes."""
        epoch, index, pos = self._at
        if epoch > self.epoch:  # started over (a resumed run, or a second iteration): count from the start
            epoch, index, pos = 0, 0, 0
        while epoch < self.epoch:  # skip whole epochs of batches to where this one starts
            left = self.steps
            while left:
                n = len(self._pass(index)) - pos
                if n > left:
                    pos, left = pos + left, 0
                else:
                    index, pos, left = index + 1, 0, left - n
            epoch += 1
        self._at = (epoch, index, pos)
        made = 0
        while made < self.steps:
            ranges = self._pass(index)
            for start, stop in ranges[pos:]:
                yield Pass(self.split.train_ranges(*rank_rows(start, stop)), index)
                made += 1
                pos += 1
                if made == self.steps:
                    break
            if pos >= len(ranges):
                index, pos = index + 1, 0
        self._at = (epoch + 1, index, pos)  # where the next epoch starts
        self.blocks.set_epoch(self.epoch)

    def __len__(self) -> int:
        if self.steps:
            return self.steps
        if self.world > 1:  # batches shorter than the number of processes are skipped
            return sum(1 for _ in self)
        n = len(self.blocks)
        return min(n, self.max_batches) if self.max_batches else n


class RangeBatches(torch.utils.data.Dataset):
    """``batches[ranges]``: the rows of a few ``(start, stop)`` ranges, one contiguous read per range and field.

    Adds ``rows`` (int64), the dataset row of every sample. Wraps
    :class:`BlockDataset`, so DataLoader workers open the store themselves.
    """

    def __init__(self, path: str | Path, *, fields: Sequence[str]) -> None:
        self.blocks = BlockDataset(path, fields=fields)

    def __len__(self) -> int:
        return self.blocks.n

    def __getitem__(self, ranges: Ranges | Pass) -> dict[str, torch.Tensor]:
        index = None
        if isinstance(ranges, Pass):
            ranges, index = ranges.ranges, ranges.index
        parts = [self.blocks[(a, b)] for a, b in ranges]
        batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        batch["rows"] = ranges_rows(ranges)
        if index is not None:
            batch["pass"] = torch.tensor(index, dtype=torch.int64)
        return batch


def ranges_rows(ranges: Ranges) -> torch.Tensor:
    """The rows (int64) that ``ranges`` cover, in order."""
    return torch.cat([torch.arange(a, b, dtype=torch.int64) for a, b in ranges])


def train_seeds(seed: int, epoch: int, rows: torch.Tensor | np.ndarray) -> np.ndarray:
    """Degradation seeds of ``rows`` in training epoch ``epoch`` (0-based)."""
    return derive_seeds(derive_seeds(derive_seeds(seed, 0), epoch), np.asarray(rows))


def holdout_seeds(seed: int, rows: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fixed degradation seeds of held-out ``rows``."""
    return derive_seeds(derive_seeds(seed, 1), np.asarray(rows))


def tuning_seeds(seed: int, rows: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fixed degradation seeds of the training ``rows`` the classical baselines are tuned on."""
    return derive_seeds(derive_seeds(seed, 5), np.asarray(rows))


def augment_codes(seed: int, epoch: int, rows: torch.Tensor | np.ndarray) -> np.ndarray:
    """One of the eight dihedral transforms (0-7) for each row in ``epoch``."""
    return derive_seeds(derive_seeds(derive_seeds(seed, 2), epoch), np.asarray(rows)) % 8


def dihedral(images: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    """Rotate sample ``i`` by ``codes[i] % 4`` quarter turns, then flip it left-right if ``codes[i] >= 4``.

    Non-square images only take half turns (odd quarter turns are rounded down).
    """
    codes = np.asarray(codes)
    if images.shape[-1] != images.shape[-2]:
        codes = codes & ~1
    out = images.clone()
    for code in np.unique(codes):
        idx = torch.from_numpy(np.flatnonzero(codes == code)).to(images.device)
        x = torch.rot90(images[idx], int(code) % 4, dims=(2, 3))
        out[idx] = torch.flip(x, dims=(3,)) if code >= 4 else x
    return out


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


def resolve_pairs(ds: Dataset, degrade: str | Pipeline | None) -> Pairs:
    """The pairs of ``ds`` under the degradation ``degrade`` (a spec is parsed); :class:`GalaugError` if none.

    Raises
    ------
    GalaugError
        No ``spec`` and no ``clean`` member; ``clean`` and ``images`` of
        different sizes; a pipeline that changes the image size.
    """
    pipeline = as_pipeline(degrade)
    if pipeline is not None:
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


def check_model_fits(model: str, shape: Sequence[int], ds: Dataset) -> None:
    if model == "unet" and (shape[1] % 4 or shape[2] % 4):
        raise GalaugError(f"{ds.path}: the U-Net needs image sizes divisible by 4, got {shape[1]}x{shape[2]} "
                          "(--set model=resnet works with any size)")


def check_finite(batch: dict[str, torch.Tensor], fields: Sequence[str], ds: Dataset) -> None:
    for field in fields:
        bad = ~torch.isfinite(batch[field]).flatten(1).all(dim=1)
        if bad.any():
            row = int(batch["rows"][bad][0])
            raise GalaugError(f"{ds.path}: {int(bad.sum())} image(s) with NaN/Inf pixels in {field!r} (first at "
                              f"row {row}); clean the data (galaug ingest --on-bad) first")


def row_batches(ranges: Sequence[tuple[int, int]], size: int) -> Iterator[tuple[tuple[int, int], ...]]:
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
