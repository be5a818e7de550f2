"""ALAE checkpoints, kept by galaug's :class:`galaug.checkpoints.CheckpointStore`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaug.checkpoints import CheckpointStore

__all__ = ["save_checkpoint", "load_checkpoint", "list_checkpoints", "FORMAT"]

FORMAT = "galaug-alae/1"


def _store(run_dir: Path) -> CheckpointStore:
    return CheckpointStore(run_dir, format=FORMAT, what="an ALAE checkpoint", digits=8)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, newest first."""
    return _store(run_dir).list()


def save_checkpoint(run_dir: Path, state: dict[str, Any], *, step: int, keep: int) -> Path:
    """Write ``checkpoints/ckpt-<step>.pt`` atomically and keep only the newest ``keep``."""
    return _store(run_dir).save({"step": step, **state}, number=step, keep=keep)


def load_checkpoint(run_dir: Path, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """The given checkpoint, or the newest one that loads (falling back with a warning)."""
    return _store(run_dir).load(checkpoint=checkpoint)
