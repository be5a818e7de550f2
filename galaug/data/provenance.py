"""Provenance entries: one per step that wrote a dataset."""

from __future__ import annotations

import datetime
import shlex
import sys
from typing import Any

__all__ = ["make_entry", "current_command"]


def current_command() -> str:
    """The command line of this process, as a user would retype it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("galaug", "__main__.py")):
        argv[0] = "galaug"
    return shlex.join(argv)


def make_entry(step: str, *, command: str | None = None, plugin: str | None = None,
               plugin_version: str | None = None, config: dict[str, Any] | None = None,
               seed: int | None = None, parents: list[str] | tuple[str, ...] = (),
               **extra: Any) -> dict[str, Any]:
    """One provenance entry.

    Parameters
    ----------
    step : str
        What was done: ``"simulate"``, ``"split"``, ``"mix"``...
    command : str, optional
        The command line; the current process's by default.
    plugin, plugin_version : str, optional
        The component that produced the data, as ``kind:name``, and its version.
    config : dict, optional
        The resolved config (see :func:`galaug.config.config_to_dict`).
    seed : int, optional
        The seed of every random step of this entry.
    parents : list of str
        Ids of the datasets read.
    **extra
        Any other JSON-serialisable facts (counts, fractions).
    """
    from galaug._version import __version__

    entry = {
        "step": step,
        "command": current_command() if command is None else command,
        "plugin": plugin,
        "plugin_version": plugin_version,
        "config": config or {},
        "seed": seed,
        "parents": list(parents),
        "galaug_version": __version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    entry.update(extra)
    return entry
