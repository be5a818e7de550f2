"""Per-band files grouped by a CSV manifest: ``galaug ingest SRC OUT --group manifest.csv``.

A manifest is a CSV file with a header row and the columns ``id`` (the
object), ``band`` and ``path`` (its file in that band; other columns are
ignored), one row per file. A relative ``path`` is relative to the
manifest's folder. Objects keep the order in which the manifest first
names them. A manifest without these columns, with an empty value, a file
that does not exist or two files of one object in one band is an error
naming the manifest and the row.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

from galaug.errors import GalaugError

__all__ = ["COLUMNS", "is_manifest", "read_manifest", "manifest_objects"]

#: The columns a manifest must have (names compared case-insensitively).
COLUMNS = ("id", "band", "path")
#: Missing files named in the error.
_NAMED = 2


def is_manifest(group: str | Path) -> bool:
    """Whether a ``group`` value names a CSV manifest (it ends in ``.csv``) rather than a file name pattern."""
    return str(group).lower().endswith(".csv")


def read_manifest(path: str | Path) -> dict[str, dict[str, Path]]:
    """``{id: {band: file}}`` of the manifest at ``path``; :class:`GalaugError` naming the row for bad rows."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = list(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GalaugError(f"{path}: not a readable CSV manifest ({exc})") from None
    header = [name.strip() for name in names]
    lower = {name.strip().lower(): name for name in names}
    missing = [c for c in COLUMNS if c not in lower]
    if missing:
        raise GalaugError(f"{path}: a manifest needs the columns {', '.join(COLUMNS)}; it lacks {', '.join(missing)} "
                          f"(has {', '.join(header) or 'none'})")
    if not rows:
        raise GalaugError(f"{path}: the manifest has no rows")
    objects: dict[str, dict[str, Path]] = {}
    first_row: dict[tuple[str, str], int] = {}
    absent: list[str] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        values = {}
        for column in COLUMNS:
            value = row.get(lower[column])
            if value is None or not value.strip():
                raise GalaugError(f"{path}: row {line}: no {column}")
            values[column] = value.strip()
        key = (values["id"], values["band"])
        if key in first_row:
            raise GalaugError(f"{path}: rows {first_row[key]} and {line}: two files of object {key[0]!r} "
                              f"in band {key[1]!r}")
        first_row[key] = line
        file = Path(values["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            absent.append(f"row {line}: {values['path']}")
        objects.setdefault(values["id"], {})[values["band"]] = file
    if absent:
        raise GalaugError(f"{path}: {len(absent)} of {len(rows)} files do not exist (first: "
                          f"{'; '.join(absent[:_NAMED])}; paths are relative to the manifest's folder)")
    return objects


def manifest_objects(path: str | Path, files: Sequence[Path],
                     on_unlisted: Callable[[str, str], None]) -> dict[str, dict[str, Path]]:
    """The objects of the manifest at ``path``; ``on_unlisted(name, reason)`` for each of ``files`` it does not list.

    The files an object lists are read whether or not they are among
    ``files``; a file of ``files`` that the manifest does not list is bad
    input, as a file that a ``--group`` pattern does not name.
    """
    objects = read_manifest(path)
    listed = {file.resolve() for per_band in objects.values() for file in per_band.values()}
    for file in files:
        if Path(file).resolve() not in listed:
            on_unlisted(Path(file).name, f"not listed in the manifest {Path(path).name}")
    return objects
