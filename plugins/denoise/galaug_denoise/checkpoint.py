"""Checkpoints: state dicts only, written atomically; the newest good one (or the best model) found on load.

A run keeps ``checkpoints/ckpt-<epoch>.pt`` (everything needed to resume,
the newest ``keep`` of them) and ``checkpoints/best.pt`` (the model with the
lowest held-out loss so far). All are read with ``torch.load(...,
weights_only=True)``: plain values and tensors, never pickled code.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from galaug.errors import GalaugError

__all__ = ["FORMAT", "BEST", "list_checkpoints", "save_checkpoint", "save_best", "load_checkpoint", "load_best"]

FORMAT = "galaug-denoise/1"
BEST = "best.pt"
_NAME = re.compile(r"^ckpt-(\d{6})\.pt$")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Resumable checkpoints of a run, newest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _write(path: Path, state: dict[str, Any]) -> Path:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_checkpoint(run_dir: Path, state: dict[str, Any], *, epoch: int, keep: int) -> Path:
    """Write ``checkpoints/ckpt-<epoch>.pt`` atomically and keep only the newest ``keep``."""
    path = _write(Path(run_dir) / "checkpoints" / f"ckpt-{epoch:06d}.pt", {"epoch": epoch, **state})
    for old in list_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def save_best(run_dir: Path, state: dict[str, Any], *, epoch: int) -> Path:
    """Write ``checkpoints/best.pt`` atomically (the model only: no optimizer)."""
    return _write(Path(run_dir) / "checkpoints" / BEST, {"epoch": epoch, **state})


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or carrying pickled code
        raise GalaugError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise GalaugError(f"{path}: not a denoiser checkpoint (format {found!r})")
    return state


def load_checkpoint(run_dir: Path, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """The given checkpoint, or the newest resumable one that loads (falling back with a warning)."""
    if checkpoint is not None:
        return _read(Path(checkpoint))
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise GalaugError(f"{run_dir}: has no checkpoints yet")
    problems = []
    for path in candidates:
        try:
            state = _read(path)
        except GalaugError as exc:
            problems.append(str(exc))
            continue
        if problems:
            warnings.warn(f"skipped unreadable checkpoint(s), using {path.name}: " + "; ".join(problems), stacklevel=2)
        return state
    raise GalaugError(f"{run_dir}: no loadable checkpoint ({'; '.join(problems)})")


def load_best(run_dir: Path) -> dict[str, Any]:
    """``best.pt``; if it is missing or unreadable, the newest good checkpoint (with a warning)."""
    path = Path(run_dir) / "checkpoints" / BEST
    try:
        return _read(path)
    except GalaugError as exc:
        if not list_checkpoints(run_dir):
            raise GalaugError(f"{run_dir}: has no trained model ({exc})") from None
        state = load_checkpoint(run_dir)
        warnings.warn(f"{path.name} unusable ({exc}); evaluating the newest checkpoint, epoch {state['epoch']}",
                      stacklevel=2)
        return state
