"""What the generator analyses share: the run and its training data, batched sampling, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from galaug import GalaugError, open_dataset
from galaug.data import Dataset
from galaug.generators import load_generator
from galaug.runs import Run

__all__ = ["load_run", "training_data", "sersic_geometry", "sersic_unit", "band_index", "check_alike", "sample",
           "decode"]

#: Units of the fitted Sersic parameters (galaug.fitting.FitResult.params) but the flux, which is the data's.
_SERSIC_UNITS = {"x": "arcsec", "y": "arcsec", "r_half": "arcsec", "n": "", "q": "", "beta": "rad"}


def load_run(path: Path, *, device: str):
    """The trained generator of run directory ``path`` (one clear error if it is not one)."""
    Run.open(path, kind="generator")  # GalaugError: not a run, not a generator run
    return load_generator(path, device=device)


def training_data(run: Path) -> Dataset | None:
    """The dataset the run was trained on, if it is still where the run says."""
    data = Run.open(run, kind="generator").data
    try:
        return open_dataset(data) if data else None
    except GalaugError:
        return None


def sersic_geometry(ds: Dataset | None) -> dict[str, Any]:
    """PSF (``psf``, ``psf_fwhm`` arcsec) and ``noise_std`` recorded by the ``sersic`` simulator of ``ds``.

    Empty when ``ds`` is None or was not simulated by ``source:sersic``.
    """
    if ds is None:
        return {}
    for entry in reversed(ds.provenance):
        if entry.get("plugin") == "source:sersic":
            cfg = entry.get("config") or {}
            return {k: cfg[k] for k in ("psf", "psf_fwhm", "noise_std") if k in cfg}
    return {}


def sersic_unit(name: str, flux_unit: str | None) -> str:
    """The unit of fitted Sersic parameter ``name`` for an axis label: arcsec, rad, the data's flux unit, or ``""``."""
    if name == "flux":
        return flux_unit or "data units"
    return _SERSIC_UNITS.get(name, "")


def band_index(bands: tuple[str, ...], band: str) -> int:
    """Index of ``band`` (empty: the first); the error names the bands there are."""
    if not band:
        return 0
    if band not in bands:
        raise GalaugError(f"band {band!r} not among the generator's bands {', '.join(bands)}")
    return bands.index(band)


def check_alike(datasets: dict[str, Dataset], *, analysis: str, minimum: int = 1) -> None:
    """Same bands and image size in every set (role -> dataset), and at least ``minimum`` images in each.

    The first set is the reference the others are compared with; the errors
    name the analysis, which compares images band by band and pixel by pixel.
    """
    roles = iter(datasets.items())
    _, first = next(roles)
    for role, ds in datasets.items():
        if len(ds) < minimum:
            raise GalaugError(f"{ds.path}: the {role} set has {len(ds)} image(s); {analysis} needs at least "
                              f"{minimum} per set")
        if ds.bands != first.bands:
            raise GalaugError(f"{ds.path}: bands {','.join(ds.bands)} differ from {','.join(first.bands)} "
                              f"of {first.path}; {analysis} compares images band by band")
        if ds.image_shape[1:] != first.image_shape[1:]:
            raise GalaugError(f"{ds.path}: images of {ds.image_shape[1]}x{ds.image_shape[2]} pixels differ from "
                              f"{first.image_shape[1]}x{first.image_shape[2]} of {first.path}; "
                              f"{analysis} compares images pixel by pixel")


def sample(model, n: int, *, seed: int, truncation: float | None, batch: int = 256, edit: dict | None = None,
           directions=None) -> dict[str, np.ndarray]:
    """``n`` samples of ``model`` (images, z, w) as numpy arrays, drawn in batches with a progress bar.

    ``edit`` and ``directions`` go to ``model.sample`` (attribute editing, :mod:`galaug.editing`).
    """
    from galaug.progress import progress

    extra = {"edit": edit, "directions": directions} if edit else {}
    parts: dict[str, list[np.ndarray]] = {"images": [], "z": [], "w": []}
    with progress(total=n, desc="generate") as bar:
        for start in range(0, n, batch):
            rows = range(start, min(n, start + batch))
            out = model.sample(rows=rows, seed=seed, truncation=truncation, **extra)
            for k in parts:
                parts[k].append(out[k].float().cpu().numpy())
            bar.update(len(rows))
    return {k: np.concatenate(v) for k, v in parts.items()}


def decode(model, latents: np.ndarray, *, space: str, noise_seed: int, batch: int = 256) -> np.ndarray:
    """Images of latents in ``space`` (``w``, or ``z`` mapped through F first), all with the same noise."""
    import torch

    out = []
    for start in range(0, len(latents), batch):
        chunk = torch.as_tensor(latents[start:start + batch], dtype=torch.float32)
        w = model.map(chunk) if space == "z" else chunk
        out.append(model.decode(w, seeds=[noise_seed] * len(chunk)).float().cpu().numpy())
    size = model.layout.image_size
    return np.concatenate(out) if out else np.zeros((0, len(model.layout.bands), size, size), np.float32)
