"""The checkpoint store plugins share: atomic saves, keep-last-K, fallback, weights-only loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from galaug import GalaugError
from galaug.checkpoints import CheckpointStore, trim_metrics


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


def test_trim_metrics_keeps_the_lines_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "loss": 0.3}\n{"step": 4, "lo')
    trim_metrics(path, "step", 2)  # resumed from the step-2 checkpoint; step 4 was cut off by a kill
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
