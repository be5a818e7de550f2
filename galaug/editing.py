"""Attribute editing: move latents along the directions that order a physical parameter.

``galaug analyze latent-structure RUN OUT`` finds, per Sersic parameter, the
unit normal w* of a hyperplane that separates low from high values in w
space, and the standard deviation of the latents' projections on it. An
edit ``{"r_half": 1.0}`` moves a latent w by one such standard deviation
along w*(r_half); several edits add up (the directions need not be
orthogonal, so an edit of one parameter may move others: see the
``attribute-editing`` analysis).

Directions belong to one trained generator: the report records a
fingerprint of it (its map of two fixed prior samples, and statistics of
their decoded images), and :meth:`LatentDirections.check` refuses any other
generator. See ``docs/analyses.md``.

::

    from galaug import load_generator
    from galaug.editing import LatentDirections

    model = load_generator("runs/00000-alae-sersic")
    d = LatentDirections.load("runs/latent")          # the folder or its report.json
    out = model.sample(16, seed=0, edit={"r_half": 1.0}, directions=d)
    moved = model.edit(out["w"], {"q": -0.5}, directions=d)   # {"images", "w"}
"""

from __future__ import annotations

import dataclasses
import json
import math
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from galaug.errors import GalaugError

__all__ = ["Direction", "LatentDirections", "as_directions", "fingerprint", "parse_edits", "can_edit"]

#: the analysis whose report holds directions
REPORT_PLUGIN = "analysis:latent-structure"


@dataclasses.dataclass(frozen=True)
class Direction:
    """One parameter's direction in w space.

    Attributes
    ----------
    normal : ndarray (D,)
        Unit normal w*, pointing from low to high values of the parameter.
    std : float
        Standard deviation of the latents' projections on ``normal``: the unit of an edit.
    rho : float or None
        Spearman's rho of the (out-of-fold) projection against the fitted parameter.
    """

    normal: np.ndarray
    std: float
    rho: float | None


class LatentDirections:
    """The directions of one latent-structure report, for one generator.

    Parameters
    ----------
    directions : mapping of str to Direction
    space : str
        ``w`` (editing needs it) or ``z``.
    run : dict
        Which run they were computed on: ``path``, ``generator``,
        ``checkpoint_step``, ``fingerprint`` (see :func:`fingerprint`).
    source : str
        Where they were read from (for messages and provenance).
    meta : dict
        Fit settings of the report (``band``, ``psf_fwhm_arcsec``, ``noise_std``, ``n``).
    """

    def __init__(self, directions: Mapping[str, Direction], *, space: str = "w", run: Mapping[str, Any] | None = None,
                 source: str = "", meta: Mapping[str, Any] | None = None) -> None:
        self.directions = dict(directions)
        self.space = space
        self.run = dict(run or {})
        self.source = source or "the directions"
        self.meta = dict(meta or {})
        dims = {len(d.normal) for d in self.directions.values()}
        if len(dims) > 1:
            raise GalaugError(f"{self.source}: directions of different lengths {sorted(dims)}")
        self._checked: weakref.WeakSet = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"LatentDirections({', '.join(self.names)}; {self.space}, dim {self.dim}, from {self.source})"

    @property
    def names(self) -> tuple[str, ...]:
        """Parameters that have a direction."""
        return tuple(self.directions)

    @property
    def dim(self) -> int:
        """Length of every normal (the latent dimension they were computed in)."""
        return len(next(iter(self.directions.values())).normal) if self.directions else 0

    @classmethod
    def load(cls, path: str | Path) -> LatentDirections:
        """The directions of a ``latent-structure`` output folder, or of its ``report.json``."""
        path = Path(path)
        file = path / "report.json" if path.is_dir() else path
        if not file.is_file():
            raise GalaugError(f"{path}: no latent-structure report here (give its output folder or report.json)")
        try:
            report = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GalaugError(f"{file}: cannot read the report ({exc})") from None
        if not isinstance(report, dict) or report.get("plugin") != REPORT_PLUGIN:
            raise GalaugError(f"{file}: not a latent-structure report (galaug analyze latent-structure RUN OUT)")
        return cls.from_results(report.get("results") or {}, source=str(file))

    @classmethod
    def from_results(cls, results: Mapping[str, Any], *, source: str = "") -> LatentDirections:
        """The directions in the ``results`` of a latent-structure report."""
        params = results.get("parameters") or {}
        directions = {name: Direction(np.asarray(r["normal"], dtype=np.float64), float(r["projection_std"]),
                                      r.get("spearman_rho"))
                      for name, r in params.items() if "normal" in r and "projection_std" in r}
        if not directions:
            raise GalaugError(f"{source or 'the report'}: no directions stored (a report of an older galaug, or "
                              "no parameter could be ordered): rerun galaug analyze latent-structure")
        meta = {k: results[k] for k in ("band", "psf_fwhm_arcsec", "noise_std", "n") if k in results}
        return cls(directions, space=results.get("space", "w"), run=results.get("run"), source=source, meta=meta)

    # ------------------------------------------------------------------ edits

    def shift(self, edits: Mapping[str, float]) -> np.ndarray:
        """The step (D,) of ``edits``: the sum of edits[name] * std(name) * w*(name)."""
        step = np.zeros(self.dim)
        for name, sigmas in edits.items():
            if name not in self.directions:
                raise GalaugError(f"no direction for {name!r} in {self.source}: it has "
                                  f"{', '.join(self.names)}")
            sigmas = float(sigmas)
            if not math.isfinite(sigmas):
                raise GalaugError(f"the edit of {name} must be a finite number of standard deviations")
            d = self.directions[name]
            step += sigmas * d.std * d.normal
        return step

    def move(self, w, edits: Mapping[str, float]):
        """``w`` (D,) or (B, D), a numpy array or a torch tensor, moved by ``edits`` (same type, device, dtype)."""
        step = self.shift(edits)
        if hasattr(w, "detach"):  # a torch tensor
            import torch

            return w + torch.as_tensor(step, dtype=w.dtype, device=w.device)
        w = np.asarray(w)
        return w + step.astype(w.dtype if np.issubdtype(w.dtype, np.floating) else np.float64)

    def check(self, model, *, run: str | Path | None = None) -> None:
        """Refuse a generator these directions were not computed on (another run, checkpoint or latent size).

        The first check of a model computes its fingerprint (one map and
        decode of two latents); later checks of the same model are free.
        """
        try:
            if model in self._checked:
                return
        except TypeError:  # an unhashable model: checked every time
            pass
        where = f"{run} (step {model.step})" if run is not None else f"this generator (step {model.step})"
        if self.space != "w":
            raise GalaugError(f"{self.source}: its directions are in {self.space} space, and editing moves w: "
                              "rerun galaug analyze latent-structure with space=w")
        if self.dim != model.w_dim:
            raise GalaugError(f"{self.source}: latent dimension mismatch: its directions have {self.dim} "
                              f"dimensions, the w of {where} has {model.w_dim}")
        recorded = self.run.get("fingerprint")
        if not recorded:
            raise GalaugError(f"{self.source} does not record which run its directions were computed on: "
                              "rerun galaug analyze latent-structure")
        if not same_fingerprint(recorded, fingerprint(model)):
            raise GalaugError(f"{self.source}: directions computed on another run ({self.run.get('path', '?')}, "
                              f"step {self.run.get('checkpoint_step', '?')}), not on {where}: "
                              "run galaug analyze latent-structure on this one")
        try:
            self._checked.add(model)
        except TypeError:
            pass

    def record(self, edits: Mapping[str, float]) -> dict[str, Any]:
        """What provenance keeps of the directions used by ``edits``."""
        return {"report": self.source, "space": self.space,
                "run": {k: v for k, v in self.run.items() if k != "fingerprint"},
                "parameters": {name: {"normal": self.directions[name].normal.tolist(),
                                      "projection_std": self.directions[name].std,
                                      "spearman_rho": self.directions[name].rho} for name in edits}}


def as_directions(directions) -> LatentDirections:
    """``directions`` as :class:`LatentDirections` (loaded when a path)."""
    if isinstance(directions, LatentDirections):
        return directions
    if directions is None:
        raise GalaugError("an edit needs directions: a latent-structure report (galaug analyze latent-structure)")
    return LatentDirections.load(directions)


def parse_edits(items: Iterable[str]) -> dict[str, float]:
    """``["r_half=+1.0", "q=-0.5"]`` to ``{"r_half": 1.0, "q": -0.5}``; ValueError names the bad item."""
    from galaug.conditions import parse_assignments

    return parse_assignments(items, example="r_half=+1.0", value="SIGMAS", twice="is edited twice")


def can_edit(model) -> bool:
    """Whether ``model.sample`` takes ``edit=`` (generators written before editing may not)."""
    import inspect

    try:
        params = inspect.signature(model.sample).parameters
    except (TypeError, ValueError):
        return False
    return "edit" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# ------------------------------------------------------------------ which generator

def fingerprint(model) -> dict[str, list]:
    """What identifies a trained generator: its w of two fixed prior samples, and their decoded images.

    ``w``: ``map`` of two standard normal z drawn with seed 0 (2, w_dim);
    ``images``: mean and standard deviation of each band of their images
    decoded with noise seeds 0 and 1 (2, C, 2). Equal (to 1e-3) for the same
    weights on any device, wherever the run folder is.
    """
    import torch

    z = torch.randn(2, model.z_dim, generator=torch.Generator().manual_seed(0))
    w = model.map(z.to(model.device))
    images = model.decode(w, seeds=[0, 1]).double().cpu().numpy()
    stats = np.stack([images.mean(axis=(2, 3)), images.std(axis=(2, 3))], axis=-1)
    return {"w": w.double().cpu().numpy().tolist(), "images": stats.tolist()}


def same_fingerprint(a: Mapping[str, Any], b: Mapping[str, Any], *, rtol: float = 1e-3) -> bool:
    """Whether two fingerprints are of the same generator (each array equal to ``rtol`` of its largest value)."""
    for key in ("w", "images"):
        if key not in a or key not in b:
            return False
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
            return False
        if np.max(np.abs(x - y), initial=0.0) > rtol * max(np.max(np.abs(y), initial=0.0), 1e-12):
            return False
    return True
