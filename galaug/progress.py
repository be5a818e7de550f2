"""Progress bars: shown on a terminal, quiet otherwise (``GALAUG_PROGRESS=0/1`` forces)."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress"]


def _enabled() -> bool:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 shows progress
        return False
    forced = os.environ.get("GALAUG_PROGRESS", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


def progress(iterable: Any = None, *, total: int | None = None, desc: str = "", unit: str = "img") -> tqdm:
    """A tqdm bar on stderr, disabled when stderr is not a terminal."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not _enabled(),
                file=sys.stderr, dynamic_ncols=True, leave=False)
