"""The ``memorisation`` analysis: are generated images copies of training images?

``galaug analyze memorisation GENERATED.zarr TRAIN.zarr HELDOUT.zarr OUT``
finds, for every generated image, its nearest training image (exact brute
force, in blocks), and does the same for every held-out image. The held-out
images were never seen by the generator, so their nearest-neighbour
distances are what chance alone gives: a generated image closer to a
training image than the closest ``quantile`` of the held-out images is
counted as memorised. A generator that draws from the data distribution
without regard to its training set has, on average, a fraction ``chance``
(about ``quantile``) of such images; more is memorisation.

Images are compared after a Gaussian smoothing (1 pixel by default: it takes
out the pixel noise) and a per-image flux normalisation (:func:`normalise`),
by default under the eight rotations and flips of the training images (the
ALAE trains on them). See ``docs/realism.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from galaug import ConfigError, GalaugError, open_dataset
from galaug.data import Dataset
from galaug.experiment_summary import table_format
from galaug.kinds import Analysis
from galaug.progress import progress
from galaug.viz import image_grid, pick_rgb_bands, pyplot, role_colour

from ._common import check_alike

__all__ = ["MemorisationConfig", "Memorisation", "Neighbours", "TrainingSet", "TRANSFORMS", "COPY_DISTANCE",
           "normalise", "nearest", "threshold", "binomial_interval", "chance_p_value"]

#: What a training image is compared under, by index: quarter turns (numpy's ``rot90`` of the
#: (H, W) axes), then a left-right flip. ``symmetries = "none"`` uses the first only.
TRANSFORMS = ("none", "rot90", "rot180", "rot270", "flip", "rot90+flip", "rot180+flip", "rot270+flip")
#: Nearest-neighbour distances at or below this are copies (the same pixels, up to rounding); distances lie in [0, 2].
COPY_DISTANCE = 1e-6
#: Roles of the inputs, in the order they are given.
ROLES = ("generated", "train", "heldout")
#: Candidates per image kept from each float32 block of the search, then measured exactly in float64.
_CANDIDATES = 4


@dataclasses.dataclass
class MemorisationConfig:
    """Options of ``galaug analyze memorisation GENERATED.zarr TRAIN.zarr HELDOUT.zarr OUT``."""

    #: threshold: this quantile of the held-out-to-train nearest-neighbour distances
    quantile: float = 0.01
    #: confidence of the intervals (binomial on the generated fraction; the chance level's)
    confidence: float = 0.95
    #: ``dihedral``: a training image also matches in its 8 rotations and flips (what ALAE's
    #: augmentation trains on); ``none``: only as stored (8 times faster)
    symmetries: Literal["dihedral", "none"] = "dihedral"
    #: Gaussian smoothing before the comparison, standard deviation in pixels (0: none): takes out the
    #: pixel noise, which a generator draws afresh even for a memorised galaxy
    smooth: float = 1.0
    #: generated images used at most, drawn with the seed (0: all)
    max_generated: int = 0
    #: training images searched at most, drawn with the seed (0: all)
    max_train: int = 0
    #: held-out images used at most, drawn with the seed (0: all)
    max_heldout: int = 0
    #: closest generated-training pairs shown in pairs.png
    pairs: int = 12
    #: bands shown: one (grey) or three (R, G, B); empty: the default choice
    bands: list[str] = dataclasses.field(default_factory=list)
    #: histogram bins
    bins: int = 50
    #: images per block of the search (memory grows as block x pixels and block^2)
    block: int = 2048
    #: ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; the distances do not depend on it
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 0.5:
            raise ValueError(f"quantile must be in (0, 0.5), got {self.quantile}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        for key in ("max_generated", "max_train", "max_heldout"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 (all) or positive, got {getattr(self, key)}")
        if not 1 <= self.pairs <= 64:
            raise ValueError(f"pairs must be between 1 and 64, got {self.pairs}")
        if not (self.smooth >= 0 and math.isfinite(self.smooth)):
            raise ValueError(f"smooth must be 0 or a positive number of pixels, got {self.smooth}")
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")
        if self.block < 8:
            raise ValueError(f"block must be at least 8, got {self.block}")


# -- distances ----------------------------------------------------------------------


def normalise(images: np.ndarray, *, smooth: float = 0.0) -> np.ndarray:
    """Images (N, C, H, W) as sky-subtracted unit vectors (N, C*H*W), float64.

    With ``smooth`` > 0, each band is first convolved with a Gaussian of that
    standard deviation in pixels (edges: nearest pixel), which takes out
    pixel noise. The sky of each band is the median of the stamp's outer
    frame, ``max(1, min(H, W) // 8)`` pixels wide (4 at 32 x 32); after
    subtracting it the image, all bands together, is divided by its L2 norm.
    The distance of two normalised images is then ``sqrt(2 - 2 cos)`` of the
    angle between them, in [0, 2], whatever their brightness. An image with
    nothing left (norm 0) stays all zero: at distance 1 from every other image.
    """
    x = np.asarray(images, dtype=np.float64)
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        x = gaussian_filter(x, sigma=(0, 0, smooth, smooth), mode="nearest")
    n, _, h, w = x.shape
    b = max(1, min(h, w) // 8)
    frame = np.ones((h, w), dtype=bool)
    frame[b:h - b, b:w - b] = False
    sky = np.median(x[:, :, frame], axis=2)  # (N, C)
    x = (x - sky[:, :, None, None]).reshape(n, -1)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


@dataclasses.dataclass
class Neighbours:
    """The nearest training image of each query image."""

    rows: np.ndarray       # (n,) rows of the query images in their dataset
    distance: np.ndarray   # (n,) distance of the normalised images
    train_row: np.ndarray  # (n,) row of the nearest training image
    transform: np.ndarray  # (n,) index into TRANSFORMS: the training image matches after this transform
    blank: int = 0         # query images with nothing left after sky subtraction


Images = Dataset | np.ndarray


def _blocks(data: Images, rows: np.ndarray, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, images) of the sorted ``rows`` of ``data``, at most ``block`` images at a time.

    A dataset is read in contiguous windows of ``block`` rows (whole windows,
    then the rows asked for are kept), so memory stays near two blocks
    whatever the size of the set. Non-finite pixels are an error.
    """
    pending_rows: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    held = 0
    for start in range(0, len(data), block):
        lo, hi = np.searchsorted(rows, [start, start + block])
        if hi == lo:
            continue
        picked = rows[lo:hi]
        if isinstance(data, Dataset):
            images = data.read(start, start + block, fields=["images"])["images"][picked - start]
        else:
            images = np.asarray(data[picked])
        bad = ~np.isfinite(images).all(axis=(1, 2, 3))
        if bad.any():
            where = f"{data.path}: " if isinstance(data, Dataset) else ""
            raise GalaugError(f"{where}{int(bad.sum())} image(s) have non-finite pixels (first: row "
                              f"{int(picked[bad][0])}); the nearest-neighbour search needs finite images")
        pending_rows.append(picked)
        pending.append(images)
        held += len(picked)
        while held >= block:
            all_rows, all_images = np.concatenate(pending_rows), np.concatenate(pending)
            yield all_rows[:block], all_images[:block]
            pending_rows, pending, held = [all_rows[block:]], [all_images[block:]], held - block
    if held:
        yield np.concatenate(pending_rows), np.concatenate(pending)


class TrainingSet:
    """Training images normalised once (float32, (N, C*H*W)), then read in blocks by every search.

    Held in memory, or with ``directory`` in a scratch file there (removed by
    :meth:`close`), so that memory stays bounded whatever the size of the set.
    """

    def __init__(self, data: Images, *, rows: np.ndarray | None = None, smooth: float = 0.0,
                 directory: Path | None = None, block: int = 2048) -> None:
        self.smooth = smooth
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) == 0:
            raise GalaugError("no training images to search")
        self.shape: tuple[int, int, int] = tuple(data.image_shape if isinstance(data, Dataset)
                                                 else np.shape(data)[1:])  # type: ignore[assignment]
        size = (len(self.rows), math.prod(self.shape))
        self._file = None
        if directory is None:
            self.vectors = np.empty(size, dtype=np.float32)
        else:
            self._file = Path(directory) / ".memorisation-train.f32"
            self.vectors = np.lib.format.open_memmap(self._file, mode="w+", dtype=np.float32, shape=size)
        done = 0
        for _, images in _blocks(data, self.rows, block):
            self.vectors[done:done + len(images)] = normalise(images, smooth=smooth)
            done += len(images)

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        """Remove the scratch file, if any."""
        if self._file is not None:
            del self.vectors
            self._file.unlink(missing_ok=True)
            self._file = None

    def __enter__(self) -> TrainingSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _inverse(index: int) -> int:
    """Index in TRANSFORMS of the inverse transform: quarter turns undo each other, flips are their own inverse."""
    return (4 - index) % 4 if index < 4 else index


#: Inverse of each transform, by index.
_INVERSE = np.array([_inverse(i) for i in range(len(TRANSFORMS))], dtype=np.int8)


def _transforms(x, shape: tuple[int, int, int], count: int):
    """Normalised images (q, D) under the first ``count`` TRANSFORMS, (count * q, D), transform-major."""
    import torch

    if count == 1:
        return x
    pixels = np.arange(math.prod(shape)).reshape(shape)
    order = torch.from_numpy(np.stack([_transform(pixels, i).reshape(-1) for i in range(count)]))  # (count, D)
    return x[:, order.to(x.device)].transpose(0, 1).reshape(count * len(x), -1)


def nearest(query: Images, train: TrainingSet | Images, *, query_rows: np.ndarray | None = None,
            symmetries: str = "dihedral", smooth: float = 0.0, block: int = 2048, device: str = "cpu",
            bar=None) -> Neighbours:
    """Exact nearest training image of every query image, after :func:`normalise`.

    Brute force over every (query, transform, training image) triple: a block
    of query images under the transforms (``block`` rows in all) against
    blocks of ``block`` training images, so memory does not grow with the
    sets. Each pair of blocks is searched with one float32 matrix product;
    the best 4 candidates of each query are measured again from their
    pixel differences in float64, which gives the exact distance of the
    normalised (float32) images, 0 for a copy, and the exact neighbour
    unless five training images lie within float32 rounding of each other.
    Transforming the query by T is comparing it with the training image
    transformed by T's inverse, which is what is reported.

    Parameters
    ----------
    query : Dataset or ndarray (N, C, H, W)
    train : TrainingSet, Dataset or ndarray (N, C, H, W)
        A :class:`TrainingSet` is normalised once for several searches; the
        queries are normalised with its ``smooth``.
    query_rows : sorted int array, optional
        The query rows used (default: all).
    symmetries : ``"dihedral"`` or ``"none"``
        Whether the training images also match rotated and flipped
        (:data:`TRANSFORMS`; square images only).
    smooth : float
        Gaussian smoothing of :func:`normalise`, in pixels, when ``train`` is
        not a :class:`TrainingSet` already.
    bar : tqdm, optional
        Updated with the number of (query, training) image pairs measured.
    """
    import torch

    from galaug.devices import resolve_device

    if not isinstance(train, TrainingSet):
        train = TrainingSet(train, smooth=smooth, block=block)
    dev = resolve_device(device)
    query_rows = np.arange(len(query)) if query_rows is None else np.asarray(query_rows, dtype=np.int64)
    shape = train.shape
    count = len(TRANSFORMS) if symmetries == "dihedral" else 1
    if count > 1 and shape[1] != shape[2]:
        raise ConfigError(f"symmetries = 'dihedral' needs square images, these are {shape[1]} x {shape[2]}; "
                          f"use --set symmetries=none")
    # twice the worst float32 rounding of a squared distance of unit vectors of D pixels: a block whose
    # float32 best is further than this above a query's exact best cannot hold a closer image
    margin = 2.0 ** -23 * math.prod(shape)
    parts: dict[str, list[np.ndarray]] = {"rows": [], "distance": [], "train_row": [], "transform": []}
    blank = 0
    for rows, images in _blocks(query, query_rows, max(1, block // count)):
        q = len(rows)
        vectors = torch.from_numpy(normalise(images, smooth=train.smooth).astype(np.float32)).to(dev)
        blank += int((vectors.abs().sum(1) == 0).sum())
        queries = _transforms(vectors, shape, count)  # (count * q, D)
        q_norm = (queries * queries).sum(1)
        best = torch.full((q,), math.inf, dtype=torch.float64, device=dev)
        best_row = torch.zeros(q, dtype=torch.int64, device=dev)
        best_transform = torch.zeros(q, dtype=torch.int64, device=dev)
        for start in range(0, len(train), block):
            t32 = torch.from_numpy(np.asarray(train.vectors[start:start + block])).to(dev)  # (b, D)
            b = len(t32)
            d2 = q_norm[:, None] + (t32 * t32).sum(1)[None, :] - 2 * (queries @ t32.T)  # (count * q, b)
            d2 = d2.view(count, q, b).transpose(0, 1).reshape(q, count * b)  # columns: transform-major
            top, candidates = d2.topk(min(_CANDIDATES, count * b), dim=1, largest=False)
            maybe = torch.nonzero(top[:, 0] <= best + margin)[:, 0]  # queries this block may bring closer
            if len(maybe):
                candidates = candidates[maybe]
                value, which = _exact_d2(queries, t32, maybe, candidates, q, b).min(1)
                column = candidates.gather(1, which[:, None])[:, 0]
                better = value < best[maybe]  # strict: the first of equal neighbours is kept
                at, column = maybe[better], column[better]
                best[at] = value[better]
                best_row[at] = start + column % b
                best_transform[at] = column // b
            if bar is not None:
                bar.update(q * b)
        parts["rows"].append(rows)
        parts["distance"].append(best.sqrt().cpu().numpy())
        parts["train_row"].append(train.rows[best_row.cpu().numpy()])
        parts["transform"].append(_INVERSE[best_transform.cpu().numpy()])
    if not parts["rows"]:
        raise GalaugError("no query images to search with")
    return Neighbours(**{k: np.concatenate(v) for k, v in parts.items()}, blank=blank)


def _exact_d2(queries, t32, at, candidates, q: int, b: int):
    """Squared distances (len(at), k), in float64, of queries ``at`` to their ``candidates``.

    A candidate is a column of the block's distances: transform * b + training row.
    """
    import torch

    out = torch.empty(candidates.shape, dtype=torch.float64, device=queries.device)
    chunk = max(1, 2 ** 22 // (candidates.shape[1] * queries.shape[1]))  # about 32 MB of differences at a time
    for s in range(0, len(at), chunk):
        c = candidates[s:s + chunk]
        rows_q = (c // b) * q + at[s:s + chunk, None]  # row of the transformed query in ``queries``
        diff = queries[rows_q].double() - t32[c % b].double()  # (c, k, D)
        out[s:s + chunk] = (diff * diff).sum(-1)
    return out


# -- statistics ---------------------------------------------------------------------


def threshold(heldout_distance: np.ndarray, quantile: float) -> tuple[float, int, float]:
    """The threshold distance, its rank among the held-out distances, and the chance level.

    The threshold is the ``rank``-th smallest of the m held-out distances,
    ``rank = max(1, floor(quantile * (m + 1)))``. For m independent values
    of a continuous distribution, another value from it falls below the
    ``rank``-th smallest with probability exactly ``rank / (m + 1)``: the
    chance level, which is ``quantile`` up to rounding of the rank (with m = 200
    and quantile 0.01: the 2nd smallest, chance 2/201 = 0.995%).
    """
    d = np.asarray(heldout_distance, dtype=np.float64)
    m = len(d)
    rank = min(m, max(1, math.floor(quantile * (m + 1) + 1e-9)))
    return float(np.partition(d, rank - 1)[rank - 1]), rank, rank / (m + 1)


def binomial_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a fraction ``k / n`` at ``confidence``."""
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def chance_p_value(k: int, n: int, rank: int, m: int) -> float:
    """P(at least ``k`` of ``n`` generated images fall below the threshold) when none is memorised.

    Under that hypothesis the generated and held-out distances are independent
    draws of one distribution, so the tail probability below the ``rank``-th
    smallest of ``m`` held-out distances is Beta(rank, m + 1 - rank) and the
    count is beta-binomial: the p-value accounts for the held-out sample
    that fixes the threshold as well as for the ``n`` generated images.
    """
    from scipy.stats import betabinom

    if k <= 0:
        return 1.0
    # the sum of the tail's terms, not 1 - cdf, which cannot go below about 1e-13
    return min(1.0, float(betabinom.pmf(np.arange(int(k), int(n) + 1), int(n), rank, m + 1 - rank).sum()))


def _chance_interval(rank: int, m: int, confidence: float) -> tuple[float, float]:
    """Central interval of the true tail probability below the threshold: Beta(rank, m + 1 - rank)."""
    from scipy.stats import beta

    lo, hi = beta.ppf([(1 - confidence) / 2, (1 + confidence) / 2], rank, m + 1 - rank)
    return float(lo), float(hi)


def _quantiles(d: np.ndarray) -> dict[str, float]:
    q = np.quantile(d, [0.0, 0.01, 0.05, 0.25, 0.5])
    return {"min": float(q[0]), "q01": float(q[1]), "q05": float(q[2]), "q25": float(q[3]), "median": float(q[4])}


def _pairs(nb: Neighbours, count: int, limit: float) -> list[dict[str, Any]]:
    order = np.argsort(nb.distance, kind="stable")[:count]
    return [{"row": int(nb.rows[i]), "train_row": int(nb.train_row[i]), "transform": TRANSFORMS[nb.transform[i]],
             "distance": float(nb.distance[i]), "below_threshold": bool(nb.distance[i] < limit)} for i in order]


# -- the analysis -------------------------------------------------------------------


class Memorisation(Analysis):
    """Nearest training image of each generated image, against held-out-to-train distances."""

    name = "memorisation"
    Config = MemorisationConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        cfg = self.config
        if len(inputs) != 3:
            raise GalaugError(f"memorisation takes GENERATED TRAIN HELDOUT (3 datasets), got {len(inputs)}")
        datasets = dict(zip(ROLES, (open_dataset(p) for p in inputs)))
        check_alike({role: datasets[role] for role in ("train", "generated", "heldout")}, analysis="memorisation")
        train, heldout = datasets["train"], datasets["heldout"]
        if train.id == heldout.id:
            raise GalaugError(f"{heldout.path} is the training set {train.path} (dataset id {train.id}); "
                              f"give a held-out set the generator did not train on (e.g. the val set of galaug split)")
        _, h, w = train.image_shape
        if cfg.symmetries == "dihedral" and h != w:
            raise ConfigError(f"symmetries = 'dihedral' needs square images, these are {h} x {w}; "
                              f"use --set symmetries=none")
        bands = train.bands
        try:
            channels = pick_rgb_bands(bands, cfg.bands or None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        caps = {"generated": cfg.max_generated, "train": cfg.max_train, "heldout": cfg.max_heldout}
        rows = {role: _select(len(ds), caps[role], seed, salt)
                for salt, (role, ds) in enumerate(datasets.items())}
        n_gen, n_train, m = (len(rows[r]) for r in ROLES)

        options = {"symmetries": cfg.symmetries, "block": cfg.block, "device": cfg.device}
        start = time.perf_counter()
        train_set = TrainingSet(train, rows=rows["train"], smooth=cfg.smooth, directory=out_dir, block=cfg.block)
        with train_set, progress(total=(n_gen + m) * n_train, desc="nearest neighbours", unit="pair") as bar:
            held = nearest(heldout, train_set, query_rows=rows["heldout"], bar=bar, **options)
            limit, rank, chance = threshold(held.distance, cfg.quantile)
            held_copies = int(np.count_nonzero(held.distance <= COPY_DISTANCE))
            if limit <= COPY_DISTANCE:
                raise GalaugError(
                    f"the threshold is 0: {held_copies} of {m} held-out images are copies of training images "
                    f"(nearest-neighbour distance 0), so {heldout.path} overlaps {train.path}; give a held-out set "
                    f"the generator did not train on (e.g. the val set of galaug split)")
            gen = nearest(datasets["generated"], train_set, query_rows=rows["generated"], bar=bar, **options)
        seconds = time.perf_counter() - start

        memorised = int(np.count_nonzero(gen.distance < limit))
        fraction = memorised / n_gen
        p_value = chance_p_value(memorised, n_gen, rank, m)
        alpha = 1 - cfg.confidence
        warnings = []
        if held_copies:
            warnings.append(f"{held_copies} of {m} held-out images are copies of training images: the held-out set "
                            f"overlaps the training set, which lowers the threshold")
        if cfg.quantile * (m + 1) < 1:
            warnings.append(f"only {m} held-out images: the threshold is the closest one and chance is "
                            f"1/{m + 1} = {chance:.2%}, more than quantile = {cfg.quantile:g}")
        if gen.blank or held.blank:
            warnings.append(f"{gen.blank} generated and {held.blank} held-out images are blank after sky "
                            f"subtraction (at distance 1 from everything)")

        results: dict[str, Any] = {
            "sets": {role: str(ds.path) for role, ds in datasets.items()},
            "n": {role: {"total": len(datasets[role]), "used": len(rows[role])} for role in ROLES},
            "normalisation": f"Gaussian smoothing of {cfg.smooth:g} px (sigma); per band, minus the median of the "
                             f"outer frame (max(1, min(H, W) // 8) px); then divided by the L2 norm over all bands "
                             f"and pixels",
            "smooth": cfg.smooth,
            "distance": "L2 distance of the normalised images, in [0, 2]",
            "symmetries": list(TRANSFORMS if cfg.symmetries == "dihedral" else TRANSFORMS[:1]),
            "threshold": {"quantile": cfg.quantile, "distance": limit, "rank": rank, "heldout": m,
                          "chance": chance,
                          "chance_interval": list(_chance_interval(rank, m, cfg.confidence))},
            "generated": {
                "memorised": memorised,
                "memorised_fraction": fraction,
                "interval": list(binomial_interval(memorised, n_gen, cfg.confidence)),
                "confidence": cfg.confidence,
                "chance": chance,
                "excess": fraction - chance,
                "p_value": p_value,
                "above_chance": bool(p_value < alpha),
                "copies": int(np.count_nonzero(gen.distance <= COPY_DISTANCE)),
                "distinct_train_images": int(len(np.unique(gen.train_row[gen.distance < limit]))),
                "blank": gen.blank,
                "distance_quantiles": _quantiles(gen.distance),
            },
            "heldout": {
                "below_threshold": int(np.count_nonzero(held.distance < limit)),
                "copies": held_copies,
                "blank": held.blank,
                "distance_quantiles": _quantiles(held.distance),
            },
            "closest": _pairs(gen, cfg.pairs, limit),
            "heldout_closest": _pairs(held, cfg.pairs, limit),
            "timing": {"seconds": round(seconds, 3), "device": _device_name(cfg.device),
                       "pairs_measured": (n_gen + m) * n_train},
            "warnings": warnings,
        }
        results["summary"] = _summary(results)
        results["table"] = _table(results)
        np.savez_compressed(out_dir / "nearest.npz", **{f"{role}_{k}": getattr(nb, k) for role, nb in
                                                        (("generated", gen), ("heldout", held))
                                                        for k in ("rows", "distance", "train_row", "transform")})
        results["files"] = ["nearest.npz"]
        results["figures"] = _plot(datasets, gen, held, results, channels, cfg, out_dir)
        results["captions"] = {name: text for name, text in _CAPTIONS.items() if name in results["figures"]}
        return results


def _device_name(device: str) -> str:
    from galaug.devices import device_name

    return device_name(device)


def _select(n: int, cap: int, seed: int, salt: int) -> np.ndarray:
    """All rows, or ``cap`` of them drawn without replacement with (seed, salt), sorted."""
    if cap and n > cap:
        return np.sort(np.random.default_rng([seed, salt]).choice(n, cap, replace=False))
    return np.arange(n)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _summary(r: dict[str, Any]) -> str:
    g, t = r["generated"], r["threshold"]
    verdict = "more than chance" if g["above_chance"] else "consistent with chance"
    lo, hi = g["interval"]
    return (f"{g['memorised']} of {r['n']['generated']['used']} generated images ({_pct(g['memorised_fraction'])}, "
            f"{g['confidence']:.0%} interval {_pct(lo)}-{_pct(hi)}) are closer to a training image than "
            f"d = {t['distance']:.4g}, the {_ordinal(t['rank'])} smallest of {t['heldout']} held-out distances; "
            f"chance {_pct(t['chance'])}: {verdict} (p = {g['p_value']:.3g})")


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _table(r: dict[str, Any]) -> str:
    g, t, h = r["generated"], r["threshold"], r["heldout"]
    n = r["n"]["generated"]["used"]
    lo, hi = g["interval"]
    clo, chi = t["chance_interval"]
    medians = (g["distance_quantiles"]["median"], h["distance_quantiles"]["median"])
    distance = table_format([t["distance"], *medians])  # one format for the three distances
    rows = [
        ("generated images closer than the threshold",
         f"{g['memorised']} / {n} = {_pct(g['memorised_fraction'])} ({g['confidence']:.0%}: {_pct(lo)}-{_pct(hi)})"),
        ("expected by chance", f"{_pct(t['chance'])} (what {t['heldout']} held-out images pin it to: "
                               f"{_pct(clo)}-{_pct(chi)})"),
        ("p-value (more than chance)", f"{g['p_value']:.3g}"),
        ("threshold distance", f"{distance(t['distance'])} ({_ordinal(t['rank'])} smallest of {t['heldout']} "
                               "held-out)"),
        ("training images copied (distinct, below threshold)", str(g["distinct_train_images"])),
        ("exact copies: generated / held-out", f"{g['copies']} / {h['copies']}"),
        ("median nearest-neighbour distance: generated / held-out",
         f"{distance(medians[0])} / {distance(medians[1])}"),
    ]
    lines = ["| quantity | value |", "|---|---:|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += [f"\nwarning: {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"


# -- figures ------------------------------------------------------------------------


#: Captions of the figures (``galaug report`` shows them under each figure).
_CAPTIONS = {
    "pairs.png": "The closest generated images (left of each pair) next to their nearest training image (right, "
                 "rotated or flipped as it matched), with the distance; red: closer than the threshold",
    "heldout_pairs.png": "The same for held-out images: how close two different real galaxies come by chance",
    "distances.png": "Nearest-neighbour distances to the training set of the generated and held-out images; "
                     "dashed: the threshold. Right: the low tail, cumulative",
}


def _read_rows(ds: Dataset, rows) -> dict[int, np.ndarray]:
    """Images of a few rows (for the figures), one read each."""
    return {int(r): ds.read(int(r), int(r) + 1, fields=["images"])["images"][0] for r in sorted(set(rows))}


def _transform(image: np.ndarray, index: int) -> np.ndarray:
    """``image`` (C, H, W) under TRANSFORMS[index], as the search compared it."""
    out = np.rot90(image, index % 4, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if index >= 4 else out)


def _plot_pairs(path: Path, query: Dataset, train: Dataset, pairs: list[dict[str, Any]], channels: list[int],
                role: str, title: str) -> None:
    """One mosaic of (query, nearest training image) pairs, four pairs a row, labels above the tiles.

    One axes for the whole mosaic: a figure of 24 small axes takes seconds to lay out and draw.
    """
    plt = pyplot()
    queries = _read_rows(query, [p["row"] for p in pairs])
    trains = _read_rows(train, [p["train_row"] for p in pairs])
    h, w = query.image_shape[1:]
    per_row = min(4, len(pairs))
    nrows = math.ceil(len(pairs) / per_row)
    scale = 1.25 / w  # inches per pixel: a tile 1.25 inches wide
    gap, pair_gap, label = max(1, w // 16), math.ceil(w / 4), math.ceil(0.32 / scale)  # pixels
    pair_w = 2 * w + gap
    mosaic = np.ones((nrows * (label + h), per_row * pair_w + (per_row - 1) * pair_gap, 3))  # white
    texts = []
    for i, p in enumerate(pairs):
        images = np.stack([queries[p["row"]], _transform(trains[p["train_row"]], TRANSFORMS.index(p["transform"]))])
        tiles = image_grid(images, channels)  # one stretch for the pair
        if tiles.ndim == 3:
            tiles = np.repeat(tiles[..., None], 3, axis=-1)
        y = (i // per_row) * (label + h) + label
        colour = "red" if p["below_threshold"] else "black"
        labels = (f"{role} {p['row']}\nd={p['distance']:.3g}",
                  f"train {p['train_row']}" + (f"\n{p['transform']}" if p["transform"] != "none" else ""))
        for j in range(2):
            x = (i % per_row) * (pair_w + pair_gap) + j * (w + gap)
            mosaic[y:y + h, x:x + w] = tiles[j][::-1]  # row 0 at the bottom, as in the other figures
            texts.append((x + w / 2, y - 0.5, labels[j], colour))
    fig = plt.figure(figsize=(mosaic.shape[1] * scale, mosaic.shape[0] * scale + 0.35))
    ax = fig.add_axes((0, 0, 1, mosaic.shape[0] * scale / (mosaic.shape[0] * scale + 0.35)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for x, y, text, colour in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=6.5, color=colour, linespacing=1.1)
    fig.suptitle(title, fontsize=8.5, y=1 - 0.06 / (mosaic.shape[0] * scale + 0.35))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot(datasets: dict[str, Dataset], gen: Neighbours, held: Neighbours, results: dict[str, Any],
          channels: list[int], cfg: MemorisationConfig, out_dir: Path) -> list[str]:
    plt = pyplot()
    t = results["threshold"]
    g = results["generated"]
    _plot_pairs(out_dir / "pairs.png", datasets["generated"], datasets["train"], results["closest"], channels,
                "gen", f"closest generated / training pairs (threshold d = {t['distance']:.3g})")
    _plot_pairs(out_dir / "heldout_pairs.png", datasets["heldout"], datasets["train"],
                results["heldout_closest"][:8], channels, "held-out",
                f"closest held-out / training pairs (threshold d = {t['distance']:.3g})")

    layout = {"left": 0.07, "right": 0.99, "bottom": 0.14, "top": 0.91, "wspace": 0.22}  # tight_layout is slow
    fig, (ax, cax) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw=layout)
    pooled = np.concatenate([gen.distance, held.distance])
    top = float(pooled.max()) if pooled.max() > 0 else 1.0
    edges = np.linspace(0, top * 1.02, cfg.bins + 1)
    sets = ((f"generated (n={len(gen.distance)})", gen.distance, role_colour("generated")),
            (f"held-out (n={len(held.distance)})", held.distance, role_colour("held-out")))
    for label, d, colour in sets:
        ax.hist(d, bins=edges, histtype="step", density=True, label=label, color=colour)
    for a in (ax, cax):
        a.axvline(t["distance"], color="red", ls="--", lw=1,
                  label=f"threshold {t['distance']:.3g} ({_ordinal(t['rank'])} of {t['heldout']} held-out)")
        a.set_xlabel("distance to the nearest training image")  # of unit-norm images: no unit
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title(f"memorised {_pct(g['memorised_fraction'])} (chance {_pct(t['chance'])}, p = {g['p_value']:.3g})",
                 fontsize=9)
    for label, d, colour in sets:
        s = np.sort(d)
        cax.step(s, np.arange(1, len(s) + 1) / len(s), where="post", label=label, color=colour)
    cax.axhline(t["chance"], color="0.5", lw=0.8, ls=":", label=f"chance {_pct(t['chance'])}")
    cax.set_yscale("log")
    cax.set_ylim(0.5 / max(len(gen.distance), len(held.distance)), 1)
    right = max(float(np.quantile(pooled, 0.25)), 2 * t["distance"])
    cax.set_xlim(-0.02 * right, right)  # copies, at 0, off the axis
    cax.set_ylabel("fraction closer than d")
    cax.set_title("the low tail", fontsize=9)
    cax.legend(fontsize=7)
    fig.savefig(out_dir / "distances.png", dpi=90)
    plt.close(fig)
    return ["pairs.png", "heldout_pairs.png", "distances.png"]
