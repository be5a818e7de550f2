"""Checkpoints: state dicts only, written atomically; the newest good one (or the best model) found on load.

A run keeps ``checkpoints/ckpt-<epoch>.pt`` (everything needed to resume,
the newest ``keep`` of them) and ``checkpoints/best.pt`` (the model with the
lowest held-out loss so far). All are read with ``torch.load(...,
weights_only=True)``: plain values and tensors, never pickled code.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from galaug.checkpoints import CheckpointStore
from galaug.errors import GalaugError

__all__ = ["FORMAT", "BEST", "checkpoint_store", "list_checkpoints", "load_best"]

FORMAT = "galaug-denoise/1"
BEST = "best.pt"


def checkpoint_store(run_dir: Path) -> CheckpointStore:
    """The checkpoints of a denoiser run (``ckpt-<epoch>.pt`` and ``best.pt``)."""
    return CheckpointStore(run_dir, format=FORMAT, what="a denoiser checkpoint", digits=6)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Resumable checkpoints of a run, newest first."""
    return checkpoint_store(run_dir).list()


def load_best(run_dir: Path) -> dict[str, Any]:
    """``best.pt``; if it is missing or unreadable, the newest good checkpoint (with a warning)."""
    store = checkpoint_store(run_dir)
    path = store.folder / BEST
    try:
        return store.read(path)
    except GalaugError as exc:
        if not store.list():
            raise GalaugError(f"{run_dir}: has no trained model ({exc})") from None
        state = store.load()
        warnings.warn(f"{path.name} unusable ({exc}); evaluating the newest checkpoint, epoch {state['epoch']}",
                      stacklevel=2)
        return state
