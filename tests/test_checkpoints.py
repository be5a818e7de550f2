"""The checkpoint store plugins share: atomic saves, keep-last-K, fallback, weights-only loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from galaug import GalaugError
from galaug.checkpoints import CheckpointStore


def test_keeps_the_newest_and_falls_back_past_a_truncated_one(tmp_path):
    store = CheckpointStore(tmp_path, format="t/1", what="a test checkpoint", digits=4)
    for n in (1, 2, 3):
        store.save({"w": torch.full((3,), float(n))}, number=n, keep=2)
    assert [p.name for p in store.list()] == ["ckpt-0003.pt", "ckpt-0002.pt"]
    assert list(tmp_path.joinpath("checkpoints").glob(".*")) == []  # no temporaries left
    newest = store.list()[0]
    newest.write_bytes(newest.read_bytes()[:50])
    with pytest.warns(UserWarning, match="using ckpt-0002.pt"):
        assert float(store.load()["w"][0]) == 2.0


def test_foreign_format_and_pickled_code_are_refused(tmp_path):
    store = CheckpointStore(tmp_path, format="t/1", what="a test checkpoint")
    store.save({"w": torch.zeros(1)}, number=1, keep=3)
    other = CheckpointStore(tmp_path, format="other/1", what="another checkpoint")
    with pytest.raises(GalaugError, match="not another checkpoint"):
        other.load()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    store.list()[0].write_bytes(pickle.dumps({"format": "t/1", "x": Evil()}))
    with pytest.raises(GalaugError, match="no loadable checkpoint"):
        store.load()
    with pytest.raises(GalaugError, match="has no checkpoints yet"):
        CheckpointStore(tmp_path / "empty", format="t/1").load()
