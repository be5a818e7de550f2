"""Files written atomically: to a hidden temporary beside the final name, flushed to disk, renamed into place.

A reader never sees a half-written file, and a process killed while
writing leaves only its temporary, ``.NAME.tmp-PID`` (``.NAME.tmp-PID.SUFFIX``
for :func:`atomic_path`), which the next writer of ``NAME`` removes once
process ``PID`` is gone (:func:`dead_writer`). Datasets, which are folders
and may replace an existing output, go through :mod:`galaug.data.writer`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "dead_writer"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_writer(tag: str) -> bool:
    """Whether ``tag`` (what follows ``.tmp-`` in a temporary's name: ``PID``, ``PID-...`` or ``PID.SUFFIX``)
    names a process that no longer runs, so that what it left can be tidied."""
    pid = re.split(r"[-.]", tag, maxsplit=1)[0]
    return pid.isdigit() and not _pid_alive(int(pid))


def _tidy(path: Path) -> None:
    """Remove the temporaries of ``path`` left by writers that were killed."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if stale.is_file() and dead_writer(stale.name[len(path.name) + 6:]):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _renamed_into_place(path: Path, suffix: str) -> Iterator[Path]:
    _tidy(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_path(path: str | Path) -> contextlib.AbstractContextManager[Path]:
    """The temporary to write ``path`` through: renamed onto ``path`` when the block ends, removed if it raises.

    The temporary, ``.NAME.tmp-PID.SUFFIX``, keeps the suffix of ``path``, so
    that writers that choose the format by the name (matplotlib, numpy)
    write the right one. It is flushed to disk before the rename::

        with atomic_path(out) as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    return _renamed_into_place(path, path.suffix)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return ``path``.

    The text goes to the hidden temporary ``.NAME.tmp-PID``, is flushed to
    disk and renamed onto ``path``: a kill leaves the old file whole.
    """
    path = Path(path)
    with _renamed_into_place(path, "") as tmp:
        tmp.write_text(text, encoding=encoding)
    return path
