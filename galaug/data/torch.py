"""Feeding datasets to torch: contiguous blocks, each worker opening the store itself.

Each item of :class:`BlockDataset` is a whole batch, read as one contiguous
row range per field. :class:`BlockSampler` decides the ranges: shuffled
order, and an offset that changes every epoch so batches are not always
made of the same samples. Use them with ``DataLoader(batch_size=None)``,
or call :func:`make_loader`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from galaug.data.dataset import Dataset, open_dataset

__all__ = ["BlockDataset", "BlockSampler", "StepRanges", "make_loader", "step_loader", "random_dihedral"]


class BlockDataset(torch.utils.data.Dataset):
    """Batches of a galaug dataset; ``ds[(start, stop)]`` is rows ``start:stop``.

    The Zarr store is opened lazily in the process that reads, so a
    ``DataLoader`` worker never inherits a parent's handle.

    Parameters
    ----------
    path : str or Path
        The dataset.
    fields : sequence of str
        Members to read (``images``, ``origin``, ``index``, ``params``, ``latents``).
    batch_size : int
        Rows per batch for integer indexing, ``ds[i]``.
    """

    def __init__(self, path: str | Path, *, fields: Sequence[str] = ("images",), batch_size: int = 64) -> None:
        self.path = Path(path)
        self.fields = tuple(fields)
        self.batch_size = int(batch_size)
        ds = open_dataset(self.path)  # validate once, up front
        missing = [f for f in self.fields if f not in ds.fields]
        if missing:
            raise ValueError(f"{self.path}: no member(s) {', '.join(missing)}")
        self.n = len(ds)
        self.chunk_rows = ds.chunk_rows
        self._ds: Dataset | None = None
        self._pid: int | None = None

    def _dataset(self) -> Dataset:
        if self._ds is None or self._pid != os.getpid():
            self._ds, self._pid = open_dataset(self.path), os.getpid()
        return self._ds

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ds"] = state["_pid"] = None
        return state

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple):
            start, stop = key
        else:
            if not 0 <= key < len(self):
                raise IndexError(key)
            start, stop = key * self.batch_size, (key + 1) * self.batch_size
        arrays = self._dataset().read(start, stop, fields=self.fields)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


class BlockSampler(Sampler):
    """Yields ``(start, stop)`` row ranges covering the dataset once per epoch.

    Parameters
    ----------
    n : int
        Number of rows.
    batch_size : int
    shuffle : bool
        Shuffle the order of the ranges and shift their boundaries by a
        random offset each epoch; otherwise ranges are in order.
    seed : int
        With :meth:`set_epoch`, fixes the order of every epoch.
    drop_last : bool
        Drop ranges shorter than ``batch_size``; every epoch then has the
        same number of ranges (with shifting, the fewest that any offset
        gives: ``(n - batch_size + 1) // batch_size``).
    rank, world_size : int
        Keep every ``world_size``-th range starting at ``rank`` (for
        data-parallel training); each rank gets the same number of ranges.
    shift : bool
        With ``shuffle``, move the range boundaries by a random offset each
        epoch (off: ranges always start at multiples of ``batch_size``).
        Only done when ``n`` is at least two batches.
    """

    def __init__(self, n: int, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, shift: bool = True) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size, self.shift = drop_last, rank, world_size, shift
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _ranges(self) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        # shifting needs room for at least one full batch whatever the offset
        shifted = self.shuffle and self.shift and self.n >= 2 * self.batch_size
        offset = int(rng.integers(self.batch_size)) if shifted else 0
        bounds = [0] + list(range(offset or self.batch_size, self.n, self.batch_size)) + [self.n]
        ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        if self.drop_last:
            ranges = [(a, b) for a, b in ranges if b - a == self.batch_size]
        if self.shuffle:
            ranges = [ranges[i] for i in rng.permutation(len(ranges))]
        if self.drop_last and shifted:
            # the same number of batches every epoch (the fewest any offset gives), so that a training
            # step maps to one (epoch, batch) whatever the epoch's offset
            ranges = ranges[: (self.n - self.batch_size + 1) // self.batch_size]
        if self.world_size > 1:
            per_rank = len(ranges) // self.world_size
            ranges = ranges[self.rank :: self.world_size][:per_rank]
        return ranges

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._ranges())

    def __len__(self) -> int:
        return len(self._ranges())


class StepRanges(Sampler):
    """The row range of each training step from ``start`` to ``steps``: this rank's part of the global batch.

    Step s is batch ``s % per_epoch`` of epoch ``s // per_epoch`` of
    :class:`BlockSampler` (a new order every epoch); with several ranks,
    each reads its part of the batch (:func:`galaug.runs.rank_rows`). One
    sampler for the whole run lets one ``DataLoader`` (with workers that
    open the store themselves, pinned memory) feed it.
    """

    def __init__(self, sampler: BlockSampler, start: int, steps: int) -> None:
        self.sampler, self.start, self.steps = sampler, start, steps
        self.per_epoch = len(sampler)
        self._cache: tuple[int, list] | None = None

    def _epoch(self, epoch: int) -> list:
        if self._cache is None or self._cache[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._cache = (epoch, list(self.sampler))
        return self._cache[1]

    def at(self, step: int) -> tuple[int, int]:
        from galaug.runs import rank_rows

        epoch, pos = divmod(step, self.per_epoch)
        return rank_rows(*self._epoch(epoch)[pos])

    def __iter__(self):
        return (self.at(step) for step in range(self.start, self.steps))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def make_loader(path: str | Path, *, batch_size: int, fields: Sequence[str] = ("images",),
                shuffle: bool = True, seed: int = 0, drop_last: bool = False, num_workers: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A ``DataLoader`` yielding dicts of tensors, one contiguous read per field and batch.

    Call ``loader.sampler.set_epoch(e)`` each epoch for a fresh order.
    """
    dataset = BlockDataset(path, fields=fields, batch_size=batch_size)
    sampler = BlockSampler(dataset.n, batch_size=batch_size, shuffle=shuffle, seed=seed,
                           drop_last=drop_last, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0)


def step_loader(path: str | Path, *, batch_size: int, seed: int, start: int, steps: int,
                fields: Sequence[str] = ("images",), num_workers: int = 0,
                pin_memory: bool = False) -> tuple[DataLoader, StepRanges]:
    """The batches of a training run's steps ``start`` to ``steps``, and the :class:`StepRanges` behind them.

    Full batches only; a new order every epoch, from ``seed``; this rank's
    part of each global batch of ``batch_size``. The loader draws its worker
    seed from its own generator: one drawn from torch's global RNG would
    shift every later draw of a resumed run.
    """
    batches = BlockDataset(path, fields=fields, batch_size=batch_size)
    ranges = StepRanges(BlockSampler(batches.n, batch_size=batch_size, seed=seed, drop_last=True), start, steps)
    loader = DataLoader(batches, batch_size=None, sampler=ranges, num_workers=num_workers, pin_memory=pin_memory,
                        generator=torch.Generator().manual_seed(seed))
    return loader, ranges


def random_dihedral(x: torch.Tensor) -> torch.Tensor:
    """A batch (B, C, H, W) rotated by a random multiple of 90 degrees and maybe flipped: one draw per batch.

    Drawn from torch's global generator, so a training run that saves and
    restores its RNG state (:class:`galaug.runs.Training`) repeats it.
    """
    k, flip = (int(v) for v in torch.randint(0, 4, (2,)))
    x = torch.rot90(x, k, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip % 2 else x
