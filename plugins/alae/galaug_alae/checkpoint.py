"""ALAE checkpoints, kept by galaug's :class:`galaug.checkpoints.CheckpointStore`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaug.checkpoints import CheckpointStore

__all__ = ["checkpoint_store", "list_checkpoints", "load_checkpoint", "FORMAT"]

FORMAT = "galaug-alae/1"


def checkpoint_store(run_dir: Path) -> CheckpointStore:
    """The checkpoints of an ALAE run (``checkpoints/ckpt-<step>.pt``)."""
    return CheckpointStore(run_dir, format=FORMAT, what="an ALAE checkpoint", digits=8)


def load_checkpoint(run_dir: Path, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """The given checkpoint, or the newest one that loads (falling back with a warning)."""
    return checkpoint_store(run_dir).load(checkpoint=checkpoint)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, newest first."""
    return checkpoint_store(run_dir).list()
