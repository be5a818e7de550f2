"""Fault injection for the kill tests: ``GALAUG_FAULT=NAME`` or ``NAME:K`` SIGKILLs the process at a point.

Code that writes marks the moments where a crash matters with
``point("dataset.chunk")``; the process kills itself with SIGKILL the K-th
time (default the first) it reaches the point named in ``GALAUG_FAULT``.
The variable is read once, at import; unset (always, outside tests) a point
costs one string comparison. ``tests/test_kill.py`` runs every command
under every point in :data:`POINTS` and checks what is left on disk.
"""

from __future__ import annotations

import os
import signal

__all__ = ["point", "POINTS", "ENV"]

ENV = "GALAUG_FAULT"

#: every point, with the moment it marks
POINTS = {
    "dataset.start": "the temporary of a new dataset is created, its arrays still empty",
    "dataset.chunk": "a whole chunk of every array was written (one per chunk, K counts them)",
    "dataset.rename": "everything is written and consolidated, just before the rename into place",
    "dataset.aside": "with --overwrite where paths cannot be exchanged: the old output is moved aside, "
                     "the new one not yet in place",
    "dataset.renamed": "the new output is in place, the old one (with --overwrite) not yet removed",
    "checkpoint.write": "a checkpoint file is fully written under its temporary name, not yet renamed",
    "train.step": "a training step is done (K counts them), before its metrics and checkpoint",
    "export.file": "a FITS file of galaug export is written into the temporary folder (K counts them)",
    "analyze.results": "an analysis wrote its figures into the temporary folder, report.json not yet",
}


def _parse(value: str) -> tuple[str | None, int]:
    if not value.strip():
        return None, 0
    name, _, k = value.strip().partition(":")
    if name not in POINTS or (k and not (k.isdigit() and int(k) >= 1)):
        raise RuntimeError(f"{ENV}={value!r}: expected NAME or NAME:K with K >= 1, NAME one of {', '.join(POINTS)}")
    return name, int(k or 1)


_NAME, _AT = _parse(os.environ.get(ENV, ""))
_reached = 0


def point(name: str) -> None:
    """Die here with SIGKILL if ``GALAUG_FAULT`` names this point and this is its K-th visit."""
    global _reached
    if name != _NAME:
        return
    _reached += 1
    if _reached == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
