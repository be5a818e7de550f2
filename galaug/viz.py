"""Looking at galaxy images: asinh stretches, colour composites, grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["pyplot", "figure_format", "asinh_gray", "asinh_rgb", "pick_rgb_bands", "image_grid", "save_grid",
           "ROLE_COLOURS", "role_colour", "role_label", "axis_label", "metric_unit"]

#: The colour of each part a dataset plays in a figure, the same in every panel of every figure (realism,
#: memorisation, condition-check): held-out real images are always orange, generated ones always blue.
ROLE_COLOURS = {"generated": "C0", "held-out": "C1", "training": "C2", "control": "0.6"}
#: Other spellings of the roles (the analyses' own names for their inputs).
_ROLE_NAMES = {"heldout": "held-out", "held_out": "held-out", "train": "training", "gen": "generated"}


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures are files, never windows.

    A backend chosen before (``MPLBACKEND``, an earlier ``matplotlib.use``) is kept.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def role_label(role: str) -> str:
    """The name of a role in a legend: ``"held-out"`` for ``"heldout"``, ``"training"`` for ``"train"``."""
    return _ROLE_NAMES.get(role, role)


def role_colour(role: str) -> str:
    """The colour of ``role`` in every figure (:data:`ROLE_COLOURS`; ``"heldout"`` and ``"train"`` too).

    Raises ``KeyError`` for a role without a colour.
    """
    return ROLE_COLOURS[role_label(role)]


def axis_label(quantity: str, unit: str | None = None) -> str:
    """An axis label with its unit in brackets: ``"r_half [arcsec]"``; the quantity alone when it has no unit."""
    return f"{quantity} [{unit}]" if unit else quantity


def metric_unit(metric: str, flux_unit: str | None) -> str | None:
    """The unit of an image metric, by the last part of its name: ``mse`` (``input_mse`` too) in the square of
    the data's ``flux_unit``, ``psnr`` in dB; None for a metric without one (``ssim``) or one not known here."""
    name = metric.rsplit(".", 1)[-1].removeprefix("input_").lower()
    if name == "mse":
        unit = flux_unit or "data unit"
        return f"{unit}²" if unit.isalnum() else f"({unit})²"
    return "dB" if name == "psnr" else None


def figure_format(path: str | Path) -> str:
    """The image format matplotlib writes for ``path`` (``"png"``), from its extension.

    Raises ``ValueError`` (one line, listing the formats) for a name without
    one or with one matplotlib cannot write, such as ``.fits``.
    """
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in formats:
        named = f"a .{ext} file" if ext else "a file without an extension"
        hint = " (to write FITS files: galaug export)" if ext in ("fits", "fit", "fts") else ""
        raise ValueError(f"{path}: a figure cannot be saved as {named}{hint}; "
                         f"image formats: {', '.join(sorted(formats))}")
    return ext


def _robust_scale(x: np.ndarray) -> tuple[float, float]:
    """Sky level (median) and a bright level (99.5th percentile above sky) of ``x``."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 1.0
    sky = float(np.median(finite))
    top = float(np.percentile(finite, 99.5)) - sky
    return sky, top if top > 0 else 1.0


def asinh_gray(images: np.ndarray, *, q: float = 8.0) -> np.ndarray:
    """Map (N, H, W) images of one band to [0, 1] with one asinh stretch for all.

    The zero point is the median (sky), the scale the 99.5th percentile,
    shared by all images so that their brightness can be compared.
    """
    sky, top = _robust_scale(images)
    x = np.nan_to_num((images - sky) / top, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(np.arcsinh(q * np.clip(x, 0, None)) / np.arcsinh(q), 0, 1)


def asinh_rgb(images: np.ndarray, *, q: float = 8.0) -> np.ndarray:
    """Colour composites of (N, 3, H, W) images in R, G, B order, as (N, H, W, 3) in [0, 1].

    After subtracting each band's sky (median), all bands share one scale
    and the asinh stretch is applied to the mean intensity, every channel
    scaled by the same factor (Lupton et al. 2004): colours stay physical
    (a galaxy brighter in the red band looks red) while faint outskirts and
    bright cores are both visible.
    """
    rgb = np.stack([images[:, c] - _robust_scale(images[:, c])[0] for c in range(3)], axis=-1)
    rgb = np.clip(np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    intensity = rgb.mean(axis=-1, keepdims=True)
    _, top = _robust_scale(intensity)
    x = intensity / top
    factor = np.where(x > 0, np.arcsinh(q * x) / (np.arcsinh(q) * np.maximum(x, 1e-12)), 0) / top
    rgb = rgb * factor
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = np.where(peak > 1, rgb / np.maximum(peak, 1e-12), rgb)  # saturate to white, keep the hue
    return np.clip(rgb, 0, 1)


def pick_rgb_bands(bands: Sequence[str], requested: Sequence[str] | None = None) -> list[int]:
    """Channel indices to show as R, G, B (or one channel for grey).

    ``requested`` lists band names as R,G,B (``["i", "r", "g"]``) or one
    band. By default bands are assumed ordered blue to red and the first
    three are shown as B, G, R (``g,r,i,z`` shows ``i,r,g``); one or two
    bands show the first in grey.
    """
    if requested:
        missing = [b for b in requested if b not in bands]
        if missing:
            raise ValueError(f"band(s) {', '.join(missing)} not in dataset bands {', '.join(bands)}")
        if len(requested) not in (1, 3):
            raise ValueError(f"give one band (grey) or three (R,G,B), got {len(requested)}")
        return [list(bands).index(b) for b in requested]
    if len(bands) >= 3:
        return [2, 1, 0]
    return [0]


def image_grid(images: np.ndarray, channels: Sequence[int], *, q: float = 8.0,
               groups: Sequence | np.ndarray | None = None) -> np.ndarray:
    """Stretched tiles, (N, H, W) grey or (N, H, W, 3) colour, of (N, C, H, W) images.

    The stretch (sky and bright level: median and 99.5th percentile) is
    shared by all images, or, with ``groups`` (one label per image, such as
    its origin), computed from each group's own images: a group with wild
    pixel values cannot turn another group black.
    """
    picked = images[:, list(channels)]

    def stretch(x: np.ndarray) -> np.ndarray:
        return asinh_rgb(x, q=q) if len(channels) == 3 else asinh_gray(x[:, 0], q=q)

    if groups is None:
        return stretch(picked)
    groups = np.asarray(groups)
    if len(groups) != len(images):
        raise ValueError(f"groups must label every image: {len(groups)} labels for {len(images)} images")
    tiles = np.empty(picked.shape[:1] + picked.shape[2:] + ((3,) if len(channels) == 3 else ()))
    for g in np.unique(groups):
        tiles[groups == g] = stretch(picked[groups == g])
    return tiles


def save_grid(images: np.ndarray, path: str | Path, *, channels: Sequence[int], labels: Sequence[str] = (),
              title: str = "", q: float = 8.0, ncols: int | None = None,
              groups: Sequence | np.ndarray | None = None) -> Path:
    """Save a grid of (N, C, H, W) images to a PNG (or any format matplotlib writes).

    ``groups`` (one label per image) gives each group its own stretch (see :func:`image_grid`).
    """
    plt = pyplot()
    tiles = image_grid(images, channels, q=q, groups=groups)
    n = len(tiles)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.6 * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(tiles[i], cmap="gray" if tiles.ndim == 3 else None, origin="lower", interpolation="nearest")
            if i < len(labels):
                ax.set_title(labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
