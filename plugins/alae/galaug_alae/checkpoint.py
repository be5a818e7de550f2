"""Checkpoints: state dicts only, written atomically, newest good one found on load."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from galaug.errors import GalaugError

__all__ = ["save_checkpoint", "load_checkpoint", "list_checkpoints", "FORMAT"]

FORMAT = "galaug-alae/1"
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, newest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(run_dir: Path, state: dict[str, Any], *, step: int, keep: int) -> Path:
    """Write ``checkpoints/ckpt-<step>.pt`` atomically and keep only the newest ``keep``."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(exist_ok=True)
    final = folder / f"ckpt-{step:08d}.pt"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "step": step, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return final


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or carrying pickled code
        raise GalaugError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GalaugError(f"{path}: not an ALAE checkpoint (format {state.get('format') if isinstance(state, dict) else None!r})")
    return state


def load_checkpoint(run_dir: Path, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """The given checkpoint, or the newest one that loads (falling back with a warning)."""
    if checkpoint is not None:
        return _read(checkpoint)
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
