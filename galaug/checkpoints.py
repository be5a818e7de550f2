"""Checkpoints for plugins: state dicts only, written atomically, the newest good one found on load.

A store keeps ``RUN/checkpoints/ckpt-<number>.pt`` (the newest ``keep`` of
them) and optionally named files such as ``best.pt``. Every file carries a
``format`` tag and is read with ``torch.load(..., weights_only=True)``: plain
values and tensors, never pickled code. A newest checkpoint that is
truncated, corrupt, of another format or carries code is skipped with a
warning and the previous one used.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from galaug import faults
from galaug.errors import GalaugError
from galaug.files import atomic_path, atomic_write_text, dead_writer

__all__ = ["CheckpointStore", "trim_metrics"]


def trim_metrics(path: Path, key: str, last: int) -> None:
    """Keep the JSON lines of ``path`` whose ``key`` is at most ``last``, atomically.

    On resume, the lines logged after the checkpoint are dropped (they are
    logged again); a line cut off by a kill, or one without ``key``, goes too.
    A kill during the trim leaves the old file whole.
    """
    path = Path(path)
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)[key] <= last:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(kept))


_NUMBERED = re.compile(r"^ckpt-(\d+)\.pt$")


def numbered_checkpoints(folder: Path) -> list[Path]:
    """The numbered checkpoints (``ckpt-<step>.pt``) in ``folder``, newest first; named ones are left out."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("ckpt-*.pt") if (m := _NUMBERED.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


class CheckpointStore:
    """The checkpoints of one run directory.

    Parameters
    ----------
    run_dir : Path
    format : str
        Tag written into every file and required on load, e.g. ``"galaug-alae/1"``.
    what : str
        Name used in errors: ``"an ALAE checkpoint"``.
    digits : int
        Zero padding of the number in file names.
    """

    def __init__(self, run_dir: Path, *, format: str, what: str = "a checkpoint", digits: int = 8) -> None:
        self.folder = Path(run_dir) / "checkpoints"
        self.run_dir, self.format, self.what, self.digits = Path(run_dir), format, what, digits

    def list(self) -> list[Path]:
        """Numbered checkpoints, newest first."""
        return numbered_checkpoints(self.folder)

    def _write(self, path: Path, state: dict[str, Any]) -> Path:
        import torch

        path.parent.mkdir(exist_ok=True)
        for stale in path.parent.glob(".*.pt.tmp-*"):  # left by a writer that was killed
            if dead_writer(stale.name.rpartition(".tmp-")[2]):
                stale.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save({"format": self.format, **state}, f)
            faults.point("checkpoint.write")
        return path

    def save(self, state: dict[str, Any], *, number: int, keep: int) -> Path:
        """Write ``ckpt-<number>.pt`` atomically and keep only the newest ``keep``."""
        path = self._write(self.folder / f"ckpt-{number:0{self.digits}d}.pt", state)
        for old in self.list()[keep:]:
            old.unlink(missing_ok=True)
        return path

    def save_named(self, name: str, state: dict[str, Any]) -> Path:
        """Write ``checkpoints/<name>`` atomically (e.g. ``best.pt``)."""
        return self._write(self.folder / name, state)

    def read(self, path: Path) -> dict[str, Any]:
        """One checkpoint file, checked; :class:`GalaugError` saying why it cannot be used."""
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt, or carrying pickled code
            raise GalaugError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
        if not isinstance(state, dict) or state.get("format") != self.format:
            found = state.get("format") if isinstance(state, dict) else None
            raise GalaugError(f"{path}: not {self.what} (format {found!r})")
        return state

    def load(self, *, checkpoint: Path | None = None) -> dict[str, Any]:
        """The given checkpoint, or the newest one that loads (falling back with a warning)."""
        if checkpoint is not None:
            return self.read(Path(checkpoint))
        candidates = self.list()
        if not candidates:
            raise GalaugError(f"{self.run_dir}: has no checkpoints yet")
        problems = []
        for path in candidates:
            try:
                state = self.read(path)
            except GalaugError as exc:
                problems.append(str(exc))
                continue
            if problems:
                warnings.warn(f"skipped unreadable checkpoint(s), using {path.name}: " + "; ".join(problems),
                              stacklevel=3)
            return state
        raise GalaugError(f"{self.run_dir}: no loadable checkpoint ({'; '.join(problems)})")
