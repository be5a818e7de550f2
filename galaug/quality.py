"""The quality gate: statistics of a dataset's images, and generated images checked against them.

A broken generator must not poison a training set. Every generator run
records the statistics of its training data (``RUN/data_stats.json``,
written by :mod:`galaug.runs` before training); ``galaug generate`` and
``galaug mix --generator`` measure the same statistics on what they
generate and refuse an output that is far outside; ``galaug mix`` and
``galaug experiment`` refuse a generated set that failed (its provenance
says so). See docs/quality.md.

Statistics (:func:`dataset_stats`, :class:`StatsAccumulator`), computed in
one streaming pass in bounded memory:

- per band, over every pixel: ``min``, ``max`` (finite pixels) and the
  number of non-finite pixels;
- per band, pixel quantiles ``p0.1``, ``p1``, ``p50``, ``p99``, ``p99.9``
  from a seeded subsample (every pixel when the dataset holds at most
  ``max_pixels`` per band);
- per band, the distribution of the per-image total flux (the sum of the
  image's pixels in that band, no sky subtraction): ``min``, the same
  quantiles, ``max``;
- the distribution of a per-image size, the half-light radius in pixels:
  subtract from each band its sky (the median of the image's border, a
  frame ``max(1, min(H, W) // 16)`` pixels wide), sum the bands, and take
  the radius about the stamp's centre at which the curve of growth (pixels
  summed in order of distance from the centre) first reaches half the
  image's total (interpolated linearly within the pixel that reaches it);
  images whose total is not positive have no size (counted as
  ``undefined``).

Per-image statistics and the pixel subsample come from at most
``max_images`` images. Which images and which pixels depend only on
(``seed``, row): the statistics of a dataset do not depend on how its rows
are split into blocks or among processes.

The gate (:func:`compare`), for every band b, with the training
statistics t and the generated ones g:

- fail when any pixel is not finite;
- with ``D+ = t.p99.9 - t.p50`` (the bright tail above the sky; when it is
  not positive, ``t.max - t.p50``; when that is not positive either,
  ``|t.p50|``, at least the smallest normal float32) and
  ``D- = max(t.p50 - t.p0.1, D+)``, fail when ``g.p99.9`` or ``g.p0.1``
  lies outside ``[t.p50 - 10 D-, t.p50 + 10 D+]``. On sky-subtracted data
  (``t.p50`` near 0) the upper limit is 10x the training 99.9th
  percentile; measuring from the sky keeps the rule meaningful when the
  training 99.9th percentile is near zero or negative, or sits on a large
  sky level.

Every other statistic is reported side by side (generated value, training
value and a range) with the status ``ok`` or ``outside``, never failing:
the other pixel quantiles, min and max against the same interval; the
per-image flux and size quantiles ``p1``, ``p50``, ``p99`` against the
training set's ``[min, max]`` of that per-image statistic.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galaug.errors import GalaugError, ParamError
from galaug.runs import DATA_STATS  # the file of a generator run that holds the statistics of its training data

__all__ = ["DATA_STATS", "STATS_FORMAT", "QUANTILES", "FACTOR", "StatsAccumulator", "dataset_stats", "Verdict",
           "compare", "QualityError", "gate", "unchecked", "run_stats", "write_run_stats", "failed_gate",
           "require_passed", "summary_line", "format_table"]

STATS_FORMAT = "galaug-data-stats/1"
#: Quantiles (percent) of pixels and of the per-image statistics.
QUANTILES = (0.1, 1.0, 50.0, 99.0, 99.9)
#: How far (in units of the training data's bright tail above its sky) a generated p99.9 or p0.1 may go.
FACTOR = 10.0
_Q = tuple(f"p{q:g}" for q in QUANTILES)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of uint64 values (vectorised; wraps modulo 2**64)."""
    x = x.astype(np.uint64, copy=True)
    x += np.array(0x9E3779B97F4A7C15, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.array(0xBF58476D1CE4E5B9, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(27))) * np.array(0x94D049BB133111EB, dtype=np.uint64)
    return x ^ (x >> np.uint64(31))


def _row_hash(seed: int, rows: np.ndarray, salt: int) -> np.ndarray:
    base = _splitmix(np.array([seed * 4 + salt], dtype=np.uint64))
    return _splitmix(np.asarray(rows, dtype=np.int64).astype(np.uint64) ^ base)


def _stride(n: int) -> int:
    """An integer coprime to ``n`` near ``0.618 n``: ``(offset + j * stride) % n`` visits every pixel once."""
    s = max(1, int(round(n * 0.6180339887)))
    while math.gcd(s, n) != 1:
        s += 1
    return s


def _summary(values: np.ndarray) -> dict[str, float | None]:
    """``min``, the quantiles and ``max`` of ``values`` (None for an empty set)."""
    if values.size == 0:
        return {"min": None, **{k: None for k in _Q}, "max": None}
    qs = np.quantile(values.astype(np.float64), [q / 100 for q in QUANTILES])
    return {"min": float(values.min()), **{k: float(v) for k, v in zip(_Q, qs)}, "max": float(values.max())}


class StatsAccumulator:
    """The statistics of images seen block by block (in any order, by any number of processes).

    Parameters
    ----------
    n : int
        Rows of the whole dataset (sets the subsampling rates).
    bands : sequence of str
    image_shape : (C, H, W)
    seed : int
        Seed of the choice of images and pixels.
    max_pixels : int
        Subsampled pixels per band at most (about; every pixel below it).
    max_images : int
        Images whose per-image statistics and pixels are kept, at most (about).
    """

    def __init__(self, n: int, bands: Sequence[str], image_shape: Sequence[int], *, seed: int = 0,
                 max_pixels: int = 1_000_000, max_images: int = 100_000) -> None:
        self.n, self.bands, self.image_shape = int(n), tuple(bands), tuple(int(s) for s in image_shape)
        self.seed, self.max_pixels, self.max_images = int(seed), int(max_pixels), int(max_images)
        c, h, w = self.image_shape
        self._hw = h * w
        self._kept = min(self.n, self.max_images)  # images kept (expected)
        self._k = min(self._hw, max(1, -(-self.max_pixels // max(1, self._kept))))  # pixels per kept image and band
        self._stride = _stride(self._hw)
        yy, xx = np.mgrid[:h, :w]
        radius = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).ravel()
        self._order = np.argsort(radius, kind="stable")
        self._radius = radius[self._order]
        bw = max(1, min(h, w) // 16)
        frame = np.ones((h, w), bool)
        frame[bw:h - bw, bw:w - bw] = False
        self._border = np.flatnonzero(frame.ravel())
        self.seen = 0
        self.min = np.full(c, np.inf)
        self.max = np.full(c, -np.inf)
        self.nonfinite = np.zeros(c, np.int64)
        self._pixels: list[np.ndarray] = []  # (C, m) float32 each
        self._flux: list[np.ndarray] = []  # (C, m)
        self._size: list[np.ndarray] = []  # (m,), NaN where undefined

    # -- adding images -----------------------------------------------------------------
    def add(self, images: np.ndarray, rows: Sequence[int] | np.ndarray) -> None:
        """Add a block of images (B, C, H, W) that are the dataset's ``rows``."""
        x = np.asarray(images, dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        c = self.image_shape[0]
        if x.ndim != 4 or x.shape[1:] != self.image_shape or len(rows) != len(x):
            raise ValueError(f"images must be (B, {', '.join(map(str, self.image_shape))}) with one row each, "
                             f"got {x.shape} and {len(rows)} rows")
        if not len(x):
            return
        self.seen += len(x)
        flat = x.reshape(len(x), c, self._hw)
        finite = np.isfinite(flat)
        self.nonfinite += (~finite).sum(axis=(0, 2))
        self.min = np.minimum(self.min, np.where(finite, flat, np.inf).min(axis=(0, 2)))
        self.max = np.maximum(self.max, np.where(finite, flat, -np.inf).max(axis=(0, 2)))
        keep = self._keep(rows)
        if not keep.any():
            return
        sel, sel_rows = flat[keep], rows[keep]
        if self._k == self._hw:
            picked = sel
        else:
            offsets = (_row_hash(self.seed, sel_rows, 1) % np.uint64(self._hw)).astype(np.int64)
            idx = (offsets[:, None] + np.arange(self._k) * self._stride) % self._hw  # (m, k)
            picked = np.take_along_axis(sel, idx[:, None, :], axis=2)
        picked = np.moveaxis(picked, 1, 0).reshape(c, -1)
        self._pixels.append(picked[:, np.isfinite(picked).all(axis=0)] if not np.isfinite(picked).all() else picked)
        self._flux.append(sel.sum(axis=2, dtype=np.float64).T)
        self._size.append(self._half_light(sel))

    def _keep(self, rows: np.ndarray) -> np.ndarray:
        if self.n <= self.max_images:
            return np.ones(len(rows), bool)
        u = (_row_hash(self.seed, rows, 0) >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
        return u < self.max_images / self.n

    def _half_light(self, flat: np.ndarray) -> np.ndarray:
        """Half-light radii (pixels) of (m, C, H*W) images; NaN where the total flux is not positive."""
        out = np.empty(len(flat))
        step = max(1, 2**21 // self._hw)  # images at a time: a few float64 copies of 2**21 pixels
        for a in range(0, len(flat), step):
            part = flat[a:a + step]
            sky = np.median(part[:, :, self._border], axis=2).sum(axis=1)  # (m,) the bands' skies summed
            light = part.sum(axis=1, dtype=np.float64)[:, self._order] - sky[:, None]  # (m, HW) by radius
            growth = np.cumsum(light, axis=1)
            total = growth[:, -1]
            half = 0.5 * total
            with np.errstate(invalid="ignore"):
                i = np.argmax(growth >= half[:, None], axis=1)  # the first pixel that reaches half
            j = np.maximum(i - 1, 0)
            g0 = np.where(i > 0, np.take_along_axis(growth, j[:, None], axis=1)[:, 0], 0.0)
            g1 = np.take_along_axis(growth, i[:, None], axis=1)[:, 0]
            r0 = np.where(i > 0, self._radius[j], 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                frac = np.clip((half - g0) / (g1 - g0), 0, 1)  # linear within the last step of the curve
            r = r0 + (self._radius[i] - r0) * np.nan_to_num(frac, nan=1.0)
            out[a:a + step] = np.where(np.isfinite(total) & (total > 0), r, np.nan)
        return out

    # -- combining ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What :meth:`merge` needs (picklable, for gathering across processes)."""
        c = self.image_shape[0]
        return {"seen": self.seen, "min": self.min, "max": self.max, "nonfinite": self.nonfinite,
                "pixels": np.concatenate(self._pixels, axis=1) if self._pixels else np.empty((c, 0), np.float32),
                "flux": np.concatenate(self._flux, axis=1) if self._flux else np.empty((c, 0)),
                "size": np.concatenate(self._size) if self._size else np.empty(0)}

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add the images another accumulator (of the same dataset and settings) has seen."""
        self.seen += int(state["seen"])
        self.min = np.minimum(self.min, state["min"])
        self.max = np.maximum(self.max, state["max"])
        self.nonfinite = self.nonfinite + np.asarray(state["nonfinite"])
        self._pixels.append(np.asarray(state["pixels"]))
        self._flux.append(np.asarray(state["flux"]))
        self._size.append(np.asarray(state["size"]))

    def gathered(self) -> StatsAccumulator:
        """An accumulator of what every process has seen (this one with a single process); collective."""
        from galaug import distributed

        if distributed.world_size() == 1:
            return self
        out = StatsAccumulator(self.n, self.bands, self.image_shape, seed=self.seed, max_pixels=self.max_pixels,
                               max_images=self.max_images)
        for state in distributed.all_gather(self.state()):
            out.merge(state)
        return out

    # -- the result --------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """The statistics (JSON-serialisable); see the module docstring."""
        s = self.state()
        pixels, flux, size = s["pixels"], s["flux"], s["size"]
        bands = {}
        for i, band in enumerate(self.bands):
            px = _summary(pixels[i])
            px["min"] = float(self.min[i]) if np.isfinite(self.min[i]) else None
            px["max"] = float(self.max[i]) if np.isfinite(self.max[i]) else None
            f = flux[i]
            bands[band] = {"pixels": {**px, "nonfinite": int(self.nonfinite[i])},
                           "flux": _summary(f[np.isfinite(f)])}
        defined = size[np.isfinite(size)]
        return {
            "format": STATS_FORMAT, "n": self.seen, "bands": list(self.bands), "image_shape": list(self.image_shape),
            "quantiles": list(QUANTILES),
            "sampling": {"seed": self.seed, "images": int(flux.shape[1]), "pixels_per_band": int(pixels.shape[1]),
                         "every_pixel": bool(self._k == self._hw and flux.shape[1] == self.seen)},
            "bands_stats": bands,
            "size": {"definition": "half-light radius about the stamp centre, band-summed, border-median sky "
                                   "subtracted (pixels)", **_summary(defined),
                     "undefined": int(size.size - defined.size)},
        }


def dataset_stats(data, *, seed: int = 0, block_rows: int | None = None, max_pixels: int = 1_000_000,
                  max_images: int = 100_000) -> dict[str, Any]:
    """The statistics of a dataset's images (see the module docstring), in one streaming pass.

    ``data`` is a path or an opened :class:`galaug.data.Dataset`; it is read
    in blocks of ``block_rows`` (whole chunks by default). The result also
    names the dataset (``data``, ``data_id``) and its flux unit.
    """
    from galaug.data import open_dataset
    from galaug.progress import progress

    ds = open_dataset(data) if not hasattr(data, "iter_blocks") else data
    acc = StatsAccumulator(len(ds), ds.bands, ds.image_shape, seed=seed, max_pixels=max_pixels,
                           max_images=max_images)
    rows = block_rows or max(ds.chunk_rows, 1)
    with progress(total=len(ds), desc="data stats", unit="img") as bar:
        for start, block in ds.iter_blocks(rows=rows, fields=("images",)):
            acc.add(block["images"], np.arange(start, start + len(block["images"])))
            bar.update(len(block["images"]))
    return {**acc.result(), "data": str(ds.path), "data_id": ds.id, "flux_unit": ds.flux_unit}


# -- the gate ------------------------------------------------------------------------------

@dataclasses.dataclass
class Verdict:
    """The comparison of generated statistics with the training ones.

    Attributes
    ----------
    passed : bool
    rows : list of dict
        Every statistic: ``statistic``, ``band``, ``generated``, ``training``,
        ``low``, ``high`` (the range it is held to), ``status`` (``ok``,
        ``outside`` or ``fail``) and ``gate`` (True for the statistics that can fail).
    failures : list of str
        One sentence per failed statistic (name, generated value, training range).
    """

    passed: bool
    rows: list[dict[str, Any]]
    failures: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": "pass" if self.passed else "fail", "factor": FACTOR, "failures": list(self.failures),
                "rows": [dict(r) for r in self.rows]}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.4g}"


def _limits(t: Mapping[str, Any]) -> tuple[float, float]:
    """The interval ``[t.p50 - FACTOR D-, t.p50 + FACTOR D+]`` of a band's training pixel statistics."""
    sky = t["p50"]
    plus = t["p99.9"] - sky
    if not plus > 0:
        plus = (t["max"] - sky) if t.get("max") is not None else 0.0
    if not plus > 0:
        plus = max(abs(sky), float(np.finfo(np.float32).tiny))
    minus = max(sky - t["p0.1"], plus)
    return sky - FACTOR * minus, sky + FACTOR * plus


def compare(generated: Mapping[str, Any], training: Mapping[str, Any]) -> Verdict:
    """Hold ``generated`` statistics to ``training`` ones (both from :func:`dataset_stats` / :class:`StatsAccumulator`).

    The rule is the module docstring's. Bands are matched by name; a band
    of the generated set that the training set lacks is an error.
    """
    rows: list[dict[str, Any]] = []
    failures: list[tuple[int, str]] = []
    priority = {"non-finite pixels": 0, "pixel p99.9": 1, "pixel p0.1": 2}

    def row(name: str, band: str, g: Any, t: Any, low: Any, high: Any, *, gate: bool) -> None:
        inside = g is not None and (low is None or g >= low) and (high is None or g <= high)
        status = "ok" if inside else ("fail" if gate else "outside")
        rows.append({"statistic": name, "band": band, "generated": g, "training": t, "low": low, "high": high,
                     "status": status, "gate": gate})
        if status == "fail":
            text = (f"band {band}: {g} non-finite pixels (training: {t})" if name == "non-finite pixels" else
                    f"band {band}: {name} = {_fmt(g)}, training {_fmt(t)} (allowed {_fmt(low)} to {_fmt(high)})")
            failures.append((priority[name], text))

    tb, gb = training["bands_stats"], generated["bands_stats"]
    missing = [b for b in gb if b not in tb]
    if missing:
        raise GalaugError(f"the generated bands {', '.join(missing)} are not in the training statistics "
                          f"({', '.join(tb)})")
    for band, g in gb.items():
        tp, gp = tb[band]["pixels"], g["pixels"]
        row("non-finite pixels", band, gp["nonfinite"], tp.get("nonfinite", 0), 0, 0, gate=True)
        low, high = _limits(tp)
        for key in ("min", *_Q, "max"):
            row(f"pixel {key}", band, gp[key], tp[key], low, high, gate=key in ("p0.1", "p99.9"))
        tf, gf = tb[band]["flux"], g["flux"]
        for key in ("p1", "p50", "p99"):
            row(f"flux {key}", band, gf[key], tf[key], tf["min"], tf["max"], gate=False)
    ts, gs = training["size"], generated["size"]
    for key in ("p1", "p50", "p99"):
        row(f"size {key}", "all", gs[key], ts[key], ts["min"], ts["max"], gate=False)
    failures.sort(key=lambda f: f[0])  # non-finite pixels first, then the bright tail, then the faint one
    return Verdict(not failures, rows, [text for _, text in failures])


class QualityError(ParamError):
    """A generated set far outside its generator's training data (or one that failed the gate before).

    A :class:`galaug.errors.ParamError` of the parameter ``allow_outliers``,
    so that each front end names its own override (``--allow-outliers``).
    """


def unchecked(reason: str) -> dict[str, Any]:
    """The provenance record of output that could not be checked (no training statistics)."""
    return {"verdict": "unchecked", "reason": reason, "overridden": False}


def gate(generated: Mapping[str, Any], training: Mapping[str, Any] | None, *, allow_outliers: bool = False,
         where: str = "the generated images are", source: str = "run") -> dict[str, Any]:
    """Compare and enforce: the provenance record of the comparison, or :class:`QualityError`.

    ``source`` says where ``training`` came from (:func:`run_stats`'s second
    value); ``training`` None (the run has no statistics) gives the record
    of :func:`unchecked` with ``source`` as the reason. A failed comparison
    raises unless ``allow_outliers``; then the record says
    ``"overridden": true``. The error is one line: what failed (statistic,
    generated value, training range) and how to override.
    """
    if training is None:
        return unchecked(source)
    verdict = compare(generated, training)
    if not verdict.passed and not allow_outliers:
        more = f" and {len(verdict.failures) - 1} more" if len(verdict.failures) > 1 else ""
        raise QualityError("allow_outliers", "quality gate: {first}{more}: {where} far outside the generator's "
                           "training data; nothing was written ({allow_outliers} overrides the gate)",
                           where=where, first=verdict.failures[0], more=more)
    record = {**verdict.as_dict(), "overridden": not verdict.passed, "statistics": source}
    return record


# -- the statistics of a run ---------------------------------------------------------------

def write_run_stats(run_dir: str | Path, data, *, seed: int = 0) -> Path:
    """Compute the statistics of ``data`` and write them to ``run_dir/data_stats.json`` (atomically)."""
    from galaug.files import atomic_write_text

    stats = dataset_stats(data, seed=seed)
    path = Path(run_dir) / DATA_STATS
    atomic_write_text(path, json.dumps(stats, indent=1) + "\n")
    return path


def run_stats(run_dir: str | Path) -> tuple[dict[str, Any] | None, str]:
    """The training statistics of a generator run and where they came from: ``(stats, source)``.

    ``RUN/data_stats.json`` when it is there (source ``"run"``); else, when
    the dataset ``options.json`` names is still there with the same id, its
    statistics, computed now and saved to the run where it is writable
    (source ``"computed"``); else ``(None, reason)``.
    """
    from galaug.data import open_dataset
    from galaug.runs import Run

    run = Run.open(run_dir, kind="generator")
    path = run.path / DATA_STATS
    if path.is_file():
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GalaugError(f"{path}: unreadable ({exc}); delete it to compute it again from the data") from None
        if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT:
            raise GalaugError(f"{path}: not galaug data statistics ({STATS_FORMAT})")
        return stats, "run"
    if not run.data:
        return None, f"{run.path} has no {DATA_STATS} and names no training data"
    try:
        ds = open_dataset(run.data)
    except GalaugError:
        return None, f"{run.path} has no {DATA_STATS} and its training data {run.data} is gone"
    if run.data_id and ds.id != run.data_id:
        return None, f"{run.path} has no {DATA_STATS} and {run.data} is no longer the dataset it was trained on"
    stats = dataset_stats(ds)
    try:
        from galaug.files import atomic_write_text

        atomic_write_text(path, json.dumps(stats, indent=1) + "\n")
    except OSError:
        pass  # a read-only run: computed again next time
    return stats, "computed"


# -- generated sets that failed ------------------------------------------------------------

def failed_gate(ds) -> dict[str, Any] | None:
    """The first quality record in ``ds``'s provenance chain with the verdict ``fail``, or None."""
    for entry in getattr(ds, "provenance", ()):
        record = entry.get("quality") if isinstance(entry, dict) else None
        if isinstance(record, dict) and record.get("verdict") == "fail":
            return record
    return None


def require_passed(ds, *, allow_outliers: bool = False) -> dict[str, Any] | None:
    """:class:`QualityError` if a step that made ``ds`` failed the gate, unless ``allow_outliers``.

    Returns the failed record (overridden) or None.
    """
    record = failed_gate(ds)
    if record is not None and not allow_outliers:
        first = (record.get("failures") or ["see its provenance"])[0]
        raise QualityError("allow_outliers", "{path} failed the quality gate when it was generated ({first}); "
                           "{allow_outliers} uses it anyway", path=str(ds.path), first=first)
    return record


def summary_line(record: Mapping[str, Any] | None) -> str:
    """One line saying what a quality record found: the verdict, and the statistics outside or failing."""
    if not record:
        return "quality gate: not run"
    verdict = record.get("verdict")
    if verdict == "unchecked":
        return f"quality gate: unchecked ({record.get('reason')})"
    rows = record.get("rows", [])
    outside = [r for r in rows if r["status"] != "ok"]
    formats = _formats(outside)  # one format for the values of a kind of statistic: 8638 beside 556051
    odd = [f"{r['statistic']} ({r['band']}) {formats[r['statistic'].split()[0]](r['generated'])}" for r in outside]
    head = f"quality gate: {verdict}" + (" (overridden)" if record.get("overridden") else "")
    head += f", {len(rows) - len(odd)} of {len(rows)} statistics within the training range"
    if odd:
        head += f"; outside: {', '.join(odd[:6])}" + (f" and {len(odd) - 6} more" if len(odd) > 6 else "")
    return head


def _formats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One number format per kind of statistic (``flux``, ``size``, ``pixel``: the first word of its name) over
    every number of ``rows`` (generated, training, range): ``8638`` beside ``556100``, never ``5.561e+05``."""
    from galaug.experiment_summary import table_format

    values: dict[str, list[float]] = {}
    for r in rows:
        values.setdefault(r["statistic"].split()[0], []).extend(
            float(r[k]) for k in ("generated", "training", "low", "high")
            if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool))
    def written(fmt):
        return lambda v: "-" if v is None else fmt(float(v))

    return {kind: written(table_format(v)) for kind, v in values.items()}


def format_table(record: Mapping[str, Any], *, only: Sequence[str] | None = None) -> str:
    """A quality record (or :meth:`Verdict.as_dict`) as a Markdown table; ``only`` keeps rows of these statuses."""
    lines = [f"verdict: {record.get('verdict')}" + (" (overridden)" if record.get("overridden") else ""), "",
             "| statistic | band | generated | training | range | status |", "|---|---|---|---|---|---|"]
    rows = [r for r in record.get("rows", []) if not only or r["status"] in only]
    formats = _formats(rows)
    for r in rows:
        fmt = formats[r["statistic"].split()[0]]
        lines.append(f"| {r['statistic']} | {r['band']} | {fmt(r['generated'])} | {fmt(r['training'])} | "
                     f"{fmt(r['low'])} to {fmt(r['high'])} | {r['status']} |")
    return "\n".join(lines)
