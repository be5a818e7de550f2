"""The torch adapter: contiguous batch reads, workers that open the store themselves."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from galaug.data.dataset import Dataset
from galaug.data.torch import BlockDataset, BlockSampler, make_loader


def test_every_sample_once_per_epoch_with_two_workers(make_dataset):
    ds = make_dataset(53)
    loader = make_loader(ds.path, batch_size=8, fields=("images", "index"), shuffle=True, seed=1, num_workers=2)
    seen = []
    for batch in loader:
        idx = batch["index"].numpy()
        assert np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx)))  # one contiguous range per batch
        assert batch["images"].dtype == torch.float32 and batch["images"].shape[1:] == (3, 16, 16)
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(53))


def test_each_batch_is_one_read_per_field(make_dataset, monkeypatch):
    ds = make_dataset(40)
    calls = []
    original = Dataset.read

    def counting_read(self, start=0, stop=None, *, fields=None):
        calls.append((start, stop, tuple(fields)))
        return original(self, start, stop, fields=fields)

    monkeypatch.setattr(Dataset, "read", counting_read)
    batches = list(make_loader(ds.path, batch_size=10, fields=("images", "origin"), shuffle=False))
    assert len(batches) == 4 and len(calls) == 4
    assert [c[:2] for c in calls] == [(0, 10), (10, 20), (20, 30), (30, 40)]


def test_shuffle_is_seeded_and_changes_with_the_epoch():
    def order(seed, epoch):
        s = BlockSampler(100, batch_size=8, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    for o in (order(0, 0), order(3, 2)):
        covered = sorted(r for a, b in o for r in range(a, b))
        assert covered == list(range(100))


def test_ranks_get_disjoint_equal_shares():
    shares = [list(BlockSampler(100, batch_size=8, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1
    rows = [set(i for a, b in s for i in range(a, b)) for s in shares]
    assert not (rows[0] & rows[1]) and not (rows[1] & rows[2]) and not (rows[0] & rows[2])


def test_drop_last_keeps_full_batches_only():
    assert all(b - a == 8 for a, b in BlockSampler(50, batch_size=8, drop_last=True, seed=2))


@pytest.mark.parametrize("n", [16, 20, 30, 31, 32, 33, 50, 800])
def test_drop_last_gives_every_epoch_the_same_number_of_batches(n):
    """Training loops map a step to (epoch, batch); a shorter epoch would leave them without a batch."""
    sampler = BlockSampler(n, batch_size=16, drop_last=True, seed=0)
    lengths = set()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        ranges = list(sampler)
        lengths.add(len(ranges))
        assert all(b - a == 16 for a, b in ranges)
    assert lengths == {len(sampler)} and len(sampler) >= 1


def test_pickled_dataset_does_not_carry_an_open_store(make_dataset):
    ds = BlockDataset(make_dataset(10).path, fields=("images",), batch_size=4)
    ds[0]  # opens the store in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._ds is None
    assert torch.equal(clone[(2, 6)]["images"], ds[(2, 6)]["images"])


def test_missing_field_is_reported(make_dataset):
    with pytest.raises(ValueError, match="no member"):
        BlockDataset(make_dataset(5).path, fields=("latents",))
