"""Is the data a task is used on in the units it was trained in? The domain of a dataset, and the check.

A task trained on simulated images in nJy and evaluated on images scaled to
0..1 learns nothing that applies: measured on real Hubble Deep Field
cutouts, a denoiser's MSE was 8.5 against 0.013 for the noisy input
itself, with no warning. So a task run records the *domain* of its
training data when it is planned (``options.json``: ``data_domain``):

- ``flux_unit`` (None when unknown) and ``bands``;
- ``peak``: per band, the median over images of each image's brightest
  pixel, a robust flux scale (from at most ``max_images`` images, chosen
  with a seed, so it costs one read of a subsample).

``galaug task eval`` and ``galaug experiment`` compare the evaluation
data's domain with it and refuse (:class:`DomainError`, one line giving
both values) a different flux unit (both known) or a per-band scale more
than :data:`FACTOR` times larger or smaller, unless
``allow_domain_shift``, which the metrics file records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from galaug.data._format import same_unit
from galaug.errors import ParamError

__all__ = ["FACTOR", "DomainError", "data_domain", "compare_domains", "require_same_domain"]

#: A per-band flux scale this many times larger or smaller than the training data's is a domain shift.
FACTOR = 10.0


class DomainError(ParamError):
    """Data in other units, or on another flux scale, than a task's training data (``allow_domain_shift``)."""


def data_domain(data, *, seed: int = 0, max_images: int = 1000) -> dict[str, Any]:
    """The flux unit, bands and per-band median peak of a dataset (a path or an opened Dataset)."""
    from galaug.data import open_dataset

    ds = open_dataset(data) if not hasattr(data, "read") else data
    n = len(ds)
    rows = np.sort(np.random.default_rng([seed, 0x0D0]).choice(n, max_images, replace=False)) \
        if n > max_images else np.arange(n)
    peaks = []
    for start in range(0, len(rows), 256):
        part = rows[start:start + 256]
        block = ds.read(int(part[0]), int(part[-1]) + 1, fields=["images"])["images"][part - part[0]]
        peaks.append(np.nanmax(block.reshape(len(part), block.shape[1], -1), axis=2))
    peak = np.median(np.concatenate(peaks), axis=0) if peaks else np.full(len(ds.bands), np.nan)
    return {"flux_unit": ds.flux_unit, "bands": list(ds.bands),
            "peak": [float(f"{p:.6g}") for p in peak], "n_images": int(len(rows)), "seed": seed}


def compare_domains(trained: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Why ``other`` is not in the domain of ``trained`` (empty when it is, or when nothing can be compared)."""
    problems = []
    unit_a, unit_b = trained.get("flux_unit"), other.get("flux_unit")
    if unit_a and unit_b and not same_unit(unit_a, unit_b):
        problems.append(f"flux unit {unit_b}, the training data's {unit_a}")
    bands_b, peaks_b = other.get("bands") or [], other.get("peak") or []
    for band, a in zip(trained.get("bands") or [], trained.get("peak") or []):
        if band not in bands_b or bands_b.index(band) >= len(peaks_b):
            continue
        b = peaks_b[bands_b.index(band)]
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        if a > 0 and b > 0 and max(a / b, b / a) > FACTOR:
            problems.append(f"band {band} peaks at {b:.4g} (median), the training data's at {a:.4g} "
                            f"({max(a / b, b / a):.3g}x apart, more than {FACTOR:g}x)")
        elif (a > 0) != (b > 0):
            problems.append(f"band {band} peaks at {b:.4g} (median), the training data's at {a:.4g}")
    return problems


def require_same_domain(trained: dict[str, Any] | None, data, *, allow_domain_shift: bool = False,
                        what: str = "the task run") -> dict[str, Any]:
    """Check ``data`` against a run's recorded training domain; returns the record for the metrics file.

    The record has ``verdict`` (``same``, ``shifted`` (overridden) or
    ``unchecked`` for a run that recorded no domain), the data's domain and
    the problems found. Raises :class:`DomainError` for a shift unless
    ``allow_domain_shift``.
    """
    if not trained:
        return {"verdict": "unchecked", "reason": f"{what} recorded no training domain"}
    domain = data_domain(data)
    problems = compare_domains(trained, domain)
    if problems and not allow_domain_shift:
        path = str(getattr(data, "path", data))
        raise DomainError("allow_domain_shift", "{path} is not in the units {what} was trained in: {problems}; "
                          "{allow_domain_shift} uses it anyway", path=path, what=what,
                          problems="; ".join(problems))
    return {"verdict": "shifted" if problems else "same", "problems": problems, "domain": domain,
            "overridden": bool(problems)}

