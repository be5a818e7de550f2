"""The ``attribute-editing`` analysis: does moving w along w*(p) change the fitted p, and what else does it change?

For a generator trained on the ``sersic`` source and a latent-structure
report of it (:mod:`galaug.editing`): draw ``n`` samples, edit each along
w* of every parameter by each of ``steps`` standard deviations of the
projection (same z, same noise), fit the seven Sersic parameters to the
unedited and to every edited image, and report the median change of every
fitted parameter: on the diagonal whether editing works (the sign of the
median change must be the requested one for parameters ordered with
|rho| >= ``min_rho``), off it how entangled the directions are. See
``docs/analyses.md``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from galaug import GalaugError
from galaug.devices import device_name
from galaug.editing import LatentDirections, can_edit
from galaug.fitting import FitResult, fit_sersic
from galaug.kinds import Analysis
from galaug.sources.sersic import PARAM_NAMES
from galaug.viz import pyplot, save_grid

from galaug_analyses._common import band_index, load_run, sample

__all__ = ["AttributeEditingConfig", "AttributeEditing", "changes", "per_sigma"]


@dataclasses.dataclass
class AttributeEditingConfig:
    """Options of ``galaug analyze attribute-editing RUN LATENT_REPORT OUT``."""

    #: samples drawn (with the seed), edited and fitted
    n: int = 500
    #: edits, in standard deviations of the projection on w*
    steps: list[float] = dataclasses.field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    #: parameters edited (empty: every one the report has a direction for)
    parameters: list[str] = dataclasses.field(default_factory=list)
    #: the median change must have the requested sign for parameters ordered at least this well (|rho|)
    min_rho: float = 0.9
    #: the sample shown in editing_strip.png
    strip_sample: int = 0
    #: truncation psi of the samples (None: none)
    truncation: float | None = None
    #: band to fit (empty: the latent-structure report's)
    band: str = ""
    #: Gaussian PSF FWHM in arcsec (None: the latent-structure report's)
    psf_fwhm: float | None = None
    #: pixel noise for chi-square (None: the latent-structure report's, else estimated from the image border)
    noise_std: float | None = None
    fit_max_iter: int = 200
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if not self.steps or not all(math.isfinite(s) for s in self.steps):
            raise ValueError("steps must be one or more finite numbers")
        self.steps = sorted(set(float(s) for s in self.steps))
        if not 0 <= self.min_rho <= 1:
            raise ValueError("min_rho must be in [0, 1]")
        if not 0 <= self.strip_sample < self.n:
            raise ValueError("strip_sample must be a sample number below n")
        if self.truncation is not None and not 0 <= self.truncation <= 1:
            raise ValueError("truncation must be in [0, 1]")
        for name in ("psf_fwhm", "noise_std"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive")
        if self.fit_max_iter < 1:
            raise ValueError("fit_max_iter must be at least 1")


def changes(edited: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Edited minus unedited fitted parameters (N, 7); the position angle's change wrapped to [-pi/2, pi/2)."""
    d = np.asarray(edited, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    beta = PARAM_NAMES.index("beta")
    d[:, beta] = (d[:, beta] + np.pi / 2) % np.pi - np.pi / 2
    return d


def per_sigma(steps: list[float], medians: list[float | None]) -> float | None:
    """The median change per +1 standard deviation: at step +1 if measured, else the slope through 0."""
    pairs = [(s, m) for s, m in zip(steps, medians) if m is not None]
    for s, m in pairs:
        if s == 1.0:
            return m
    pairs = [(s, m) for s, m in pairs if s != 0]
    if not pairs:
        return None
    return float(sum(s * m for s, m in pairs) / sum(s * s for s, _ in pairs))


#: one sentence per figure (used by ``galaug report``)
CAPTIONS = {
    "entanglement.png": "Median change of every fitted Sersic parameter (columns) per +1 standard deviation "
                        "along w* of each edited parameter (rows), in standard deviations of the measured "
                        "parameter over the samples: a strong diagonal and a weak rest mean disentangled edits.",
    "editing_strip.png": "One sample edited along w* of each parameter (rows), from the smallest to the "
                         "largest step (columns), same z and noise; fitted value of the edited parameter above.",
}


class AttributeEditing(Analysis):
    """Edit samples along the latent-structure directions; refit; median change of every parameter."""

    name = "attribute-editing"
    Config = AttributeEditingConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        cfg = self.config
        if len(inputs) != 2:
            raise GalaugError(f"attribute-editing takes RUN LATENT_REPORT, got {len(inputs)} inputs")
        directions = LatentDirections.load(inputs[1])
        names = list(cfg.parameters) or list(directions.names)
        directions.shift(dict.fromkeys(names, 0.0))  # unknown parameters: refused before anything runs
        model = load_run(inputs[0], device=device_name(cfg.device))
        if not can_edit(model):
            raise GalaugError(f"{inputs[0]}: this generator's sample() takes no edit (see docs/plugins.md)")
        directions.check(model, run=inputs[0])
        meta = directions.meta
        band = band_index(model.layout.bands, cfg.band or meta.get("band") or "")
        fwhm = cfg.psf_fwhm if cfg.psf_fwhm is not None else meta.get("psf_fwhm_arcsec")
        if fwhm is None:
            raise GalaugError(f"{directions.source} records no PSF: give it with --set psf_fwhm=ARCSEC")
        noise = cfg.noise_std if cfg.noise_std is not None else meta.get("noise_std")

        def draw(edit: dict[str, float] | None) -> tuple[np.ndarray, FitResult]:
            images = sample(model, cfg.n, seed=seed, truncation=cfg.truncation, edit=edit,
                            directions=directions)["images"]
            return images, fit_sersic(images[:, band], pixel_scale=model.layout.pixel_scale, psf_fwhm=fwhm,
                                      noise_std=noise, max_iter=cfg.fit_max_iter)

        base_images, base = draw(None)
        if not base.success.any():
            raise GalaugError(f"none of the {cfg.n} generated images could be fitted by a Sersic profile: "
                              "is the generator trained (on the sersic source)?")
        spread = np.std(base.params[base.success], axis=0)
        steps = cfg.steps
        k = cfg.strip_sample
        strip, labels, parameters = [], [], {}
        for name in names:
            i = PARAM_NAMES.index(name) if name in PARAM_NAMES else None
            medians: dict[str, list[float | None]] = {m: [] for m in PARAM_NAMES}
            valid, failures = [], []
            for s in steps:
                images, f = (base_images, base) if s == 0 else draw({name: s})
                ok = base.success & f.success
                d = changes(f.params, base.params)[ok]
                for j, m in enumerate(PARAM_NAMES):
                    medians[m].append(float(np.median(d[:, j])) if len(d) else None)
                valid.append(int(ok.sum()))
                failures.append(int((~f.success).sum()))
                strip.append(images[k])
                value = f"{f.params[k, i]:.2f}" if i is not None and f.success[k] else "-"
                labels.append(f"{name} {s:+g}σ: {value}")
            d = directions.directions[name]
            own = medians.get(name)
            signs = ([m is not None and np.sign(m) == np.sign(s) for s, m in zip(steps, own) if s != 0]
                     if own is not None else [])
            parameters[name] = {
                "spearman_rho": d.rho, "projection_std": d.std,
                "median_change": medians,
                "per_sigma": {m: per_sigma(steps, v) for m, v in medians.items()},
                "per_sigma_standardised": {m: _div(per_sigma(steps, v), spread[j])
                                           for j, (m, v) in enumerate(medians.items())},
                "sign_required": d.rho is not None and abs(d.rho) >= cfg.min_rho and bool(signs),
                "sign_ok": bool(signs) and all(signs),
                "n_valid": valid, "fit_failures": failures}
        required = [p for p in parameters.values() if p["sign_required"]]
        results: dict[str, Any] = {
            "n": cfg.n, "steps": steps, "band": model.layout.bands[band], "psf_fwhm_arcsec": fwhm,
            "noise_std": noise, "directions": directions.source, "min_rho": cfg.min_rho,
            "run": {k_: v for k_, v in directions.run.items() if k_ != "fingerprint"},
            "checkpoint_step": model.step,
            "fits": {"n_fitted_unedited": int(base.success.sum()), "n_failed_unedited": base.n_failed,
                     "total": cfg.n * (1 + len(names) * sum(1 for s in steps if s != 0))},
            "parameter_std": dict(zip(PARAM_NAMES, spread.tolist())),
            "parameters": parameters,
            "sign_check_passed": all(p["sign_ok"] for p in required),
        }
        results["table"] = table(results)
        results["steps_table"] = steps_table(results)
        self._entanglement_figure(results, out_dir / "entanglement.png")
        save_grid(np.stack(strip), out_dir / "editing_strip.png", channels=[band], labels=labels,
                  ncols=len(steps), title=f"Sample {k} edited along w* (rows: parameters; fitted value above)")
        results["figures"] = [f for f in CAPTIONS if (out_dir / f).exists()]
        results["captions"] = {f: CAPTIONS[f] for f in results["figures"]}
        return results

    def _entanglement_figure(self, results: dict[str, Any], path: Path) -> None:
        plt = pyplot()
        rows = list(results["parameters"])
        matrix = np.array([[_nan(results["parameters"][r]["per_sigma_standardised"][m]) for m in PARAM_NAMES]
                           for r in rows])
        raw = [[results["parameters"][r]["per_sigma"][m] for m in PARAM_NAMES] for r in rows]
        limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
        fig, ax = plt.subplots(figsize=(1.1 * len(PARAM_NAMES) + 2, 0.7 * len(rows) + 1.8))
        im = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for a, row in enumerate(raw):
            for b, v in enumerate(row):
                dark = abs(_nan(matrix[a, b])) > 0.6 * limit
                ax.text(b, a, "-" if v is None else f"{v:+.3g}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(PARAM_NAMES)), PARAM_NAMES)
        ax.set_yticks(range(len(rows)),
                      [f"{r} (rho {_fmt(results['parameters'][r]['spearman_rho'])})" for r in rows])
        ax.set_xlabel("measured (fitted) parameter")
        ax.set_ylabel("edited along w* of")
        fig.colorbar(im, ax=ax, label="change / std of the parameter")
        ax.set_title("Median change per +1 sigma along w* (cells: in the parameter's units)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _div(a: float | None, b: float) -> float | None:
    return None if a is None or not b > 0 else float(a / b)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _signed_format(values: list[float | None]):
    """One signed number format for ``values`` (a column, in one unit): ``+12.30`` beside ``-0.04``, never
    ``+1.23e+03`` beside ``+12.3``; None is ``-``."""
    from galaug.experiment_summary import table_format

    fmt = table_format([v for v in values if v is not None])
    return lambda v: "-" if v is None else ("+" + fmt(abs(v)) if v >= 0 else fmt(v))


def table(results: dict[str, Any]) -> str:
    """Median change of every fitted parameter per +1 sigma along each w* (Markdown), with rho and the sign check."""
    lines = ["| edited | rho | " + " | ".join(f"Δ{m}" for m in PARAM_NAMES) + " | sign |",
             "|---|---|" + "---|" * len(PARAM_NAMES) + "---|"]
    fmt = {m: _signed_format([p["per_sigma"][m] for p in results["parameters"].values()]) for m in PARAM_NAMES}
    for name, p in results["parameters"].items():
        sign = ("ok" if p["sign_ok"] else "FAIL") if p["sign_required"] else ("(ok)" if p["sign_ok"] else "(no)")
        cells = " | ".join(fmt[m](p["per_sigma"][m]) for m in PARAM_NAMES)
        lines.append(f"| {name} | {_fmt(p['spearman_rho'])} | {cells} | {sign} |")
    return "\n".join(lines)


def steps_table(results: dict[str, Any]) -> str:
    """Median change of each edited parameter itself at every step (Markdown)."""
    steps = results["steps"]
    lines = ["| edited | " + " | ".join(f"{s:+g}σ" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for name, p in results["parameters"].items():  # a row per parameter, in its own units: one format a row
        own = p["median_change"].get(name, [None] * len(steps))
        fmt = _signed_format(own)
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in own) + " |")
    return "\n".join(lines)
