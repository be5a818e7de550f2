"""Conditions for conditional generators: values of the training data's ``params`` columns to sample at.

A condition is a mapping from column name to either one value (every
sample) or an array with one value per sample. :func:`parse_conditions`
reads ``--condition r_half=2.5,flux=900``; :func:`read_condition_table`
reads ``--condition-from`` (a CSV file with a header row, or a galaug
dataset's ``params``). A generator that takes conditions offers
``condition_names`` and ``check_condition`` on its model (see
docs/plugins.md); :func:`galaug.generators.generate` checks every
condition before anything is written.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galaug.errors import GalaugError

__all__ = ["parse_conditions", "parse_assignments", "read_condition_table", "check_conditions", "SAMPLING_OPTIONS", "sampling_options"]

#: Keywords of ``GeneratorModel.sample`` beyond the common ones, passed only when set (their CLI options).
SAMPLING_OPTIONS = {"condition": "--condition", "guidance": "--guidance", "steps": "--steps",
                    "extrapolate": "--extrapolate"}


def parse_conditions(items: Iterable[str]) -> dict[str, float]:
    """``["r_half=2.5,flux=900", "n=1"]`` to ``{"r_half": 2.5, "flux": 900.0, "n": 1.0}``; ValueError on a bad item."""
    parts = [p for item in items for p in item.split(",") if p.strip()]
    return parse_assignments(parts, example="r_half=2.5")


def parse_assignments(parts: Iterable[str], *, example: str, value: str = "VALUE",
                      twice: str = "is given twice") -> dict[str, float]:
    """``NAME=NUMBER`` items to a dict; ValueError names the bad item (``example`` shows the form) or a repeat."""
    out: dict[str, float] = {}
    for part in parts:
        name, sep, text = part.partition("=")
        name = name.strip()
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not sep or not name or not math.isfinite(number):
            raise ValueError(f"expected NAME={value} (e.g. {example}), got {part.strip()!r}")
        if name in out:
            raise ValueError(f"{name} {twice}")
        out[name] = number
    return out


def read_condition_table(path: str | Path, n: int, *, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One condition row per sample from a CSV file (header row) or a dataset's params: ``{column: (n,)}``.

    The table must have exactly ``n`` rows. A dataset contributes its params
    columns that are in ``names`` (the generator's condition columns); a CSV
    file all its columns (an unknown one is refused by the generator's check).
    """
    path = Path(path)
    if path.suffix == ".zarr" or path.is_dir():
        from galaug.data import open_dataset

        ds = open_dataset(path)
        take = [c for c in ds.param_names if names is None or c in names]
        if not take:
            raise GalaugError(f"{path}: its params ({', '.join(ds.param_names) or 'none'}) have none of the "
                              f"condition columns ({', '.join(names or ())})")
        params = ds.read(fields=["params"])["params"]
        table = {c: params[:, ds.param_names.index(c)].astype(np.float64) for c in take}
    else:
        table = _read_csv(path)
    rows = len(next(iter(table.values())))
    if rows != n:
        raise GalaugError(f"{path}: {rows} condition rows, but -n asks for {n} samples (one row per sample)")
    return table


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [r for r in reader if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise GalaugError(f"{path}: cannot read the condition table ({exc})") from None
    if not header or not rows:
        raise GalaugError(f"{path}: a condition table needs a header row of column names and at least one row")
    header = [h.strip() for h in header]
    values = np.full((len(rows), len(header)), np.nan)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise GalaugError(f"{path}: line {i + 2} has {len(row)} values for {len(header)} columns")
        try:
            values[i] = [float(v) for v in row]
        except ValueError:
            raise GalaugError(f"{path}: line {i + 2} is not all numbers: {','.join(row)}") from None
    if not np.isfinite(values).all():
        raise GalaugError(f"{path}: NaN or Inf among the condition values")
    return {name: values[:, j] for j, name in enumerate(header)}


def check_conditions(model, condition: Mapping[str, Any] | None, n: int, *, extrapolate: bool = False) -> None:
    """Refuse a condition the generator cannot take, before anything is sampled or written."""
    if not condition:
        return
    names = tuple(getattr(model, "condition_names", ()))
    if not names:
        raise GalaugError("this generator run takes no condition (it was not trained on any params columns)")
    for name, value in condition.items():
        v = np.asarray(value)
        if v.ndim > 1 or (v.ndim == 1 and len(v) != n):
            raise GalaugError(f"condition {name}: {v.size} values for {n} samples (one value, or one per sample)")
    model.check_condition(condition, extrapolate=extrapolate)


def sampling_options(model, **options: Any) -> dict[str, Any]:
    """The options that are set (not None or False), refused with one clear line when ``model.sample`` lacks one."""
    import inspect

    given = {k: v for k, v in options.items() if v is not None and v is not False}
    if not given:
        return {}
    try:
        params = inspect.signature(model.sample).parameters
    except (TypeError, ValueError):
        params = {}
    missing = [k for k in given if k not in params]
    if missing:
        flags = ", ".join(SAMPLING_OPTIONS.get(k, k) for k in missing)
        raise GalaugError(f"this generator's sample() takes no {', '.join(missing)} ({flags}); see its docs")
    return given
