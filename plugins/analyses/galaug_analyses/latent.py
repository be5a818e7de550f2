"""The ``latent-structure`` analysis: is a generator's latent space linearly ordered by the Sersic parameters?

The study's experiment, for a generator trained on the ``sersic`` source:
draw latents, generate, fit the seven Sersic parameters to every image
(batched BFGS, :func:`galaug.fitting.fit_sersic`), split the latents into
low and high per parameter, find a separating hyperplane, project the
latents onto its unit normal w* and measure how well the projection orders
the fitted parameter. See ``docs/analyses.md``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import kendalltau, spearmanr

from galaug import GalaugError, open_dataset
from galaug.devices import device_name
from galaug.fitting import FitResult, fit_sersic
from galaug.kinds import Analysis
from galaug.sources.sersic import PARAM_NAMES
from galaug.viz import axis_label, pyplot, role_colour, save_grid

from galaug_analyses._common import (band_index, decode, load_run, sample, sersic_geometry, sersic_unit,
                                     training_data)

__all__ = ["LatentStructureConfig", "LatentStructure", "Ordering", "order_latents", "rank_correlation"]


@dataclasses.dataclass
class LatentStructureConfig:
    """Options of ``galaug analyze latent-structure RUN [CONTROL.zarr]``."""

    #: latents drawn (and images generated and fitted)
    n: int = 2000
    #: ``w`` (ALAE's learned latent) or ``z`` (the prior)
    space: Literal["w", "z"] = "w"
    #: ``median``: low / high at the median; ``quantile``: below ``quantile`` / above 1 - ``quantile``
    split: Literal["median", "quantile"] = "median"
    quantile: float = 0.25
    #: the separating hyperplane: a linear SVM or logistic regression (on standardised latents)
    classifier: Literal["svm", "logistic"] = "svm"
    #: cross-validation folds (accuracy and out-of-fold projections)
    folds: int = 5
    #: truncation psi of the sampled latents (None: none)
    truncation: float | None = None
    #: band to fit (empty: the first)
    band: str = ""
    #: FWHM of the Gaussian PSF in arcsec (None: the one the training data was simulated with)
    psf_fwhm: float | None = None
    #: pixel noise for chi-square (None: the training data's, else estimated from the image border)
    noise_std: float | None = None
    fit_max_iter: int = 200
    #: images per parameter in the strip ordered by projection
    strip: int = 10
    #: latents moved along each w*, steps per walk, and the walk's half-length in std of the projection
    walk_latents: int = 8
    walk_steps: int = 9
    walk_range: float = 2.0
    #: source images fitted against their true parameters as the control (0: no control)
    control: int = 500
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.n < 20:
            raise ValueError("n must be at least 20")
        if not 0 < self.quantile < 0.5:
            raise ValueError("quantile must be in (0, 0.5)")
        if self.folds < 2:
            raise ValueError("folds must be at least 2")
        if self.truncation is not None and not 0 <= self.truncation <= 1:
            raise ValueError("truncation must be in [0, 1]")
        for name in ("psf_fwhm", "noise_std"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive")
        if self.fit_max_iter < 1 or self.strip < 2 or self.walk_steps < 3 or self.walk_latents < 0:
            raise ValueError("fit_max_iter >= 1, strip >= 2, walk_steps >= 3 and walk_latents >= 0 are required")
        if not self.walk_range > 0 or self.control < 0:
            raise ValueError("walk_range must be positive and control at least 0")


@dataclasses.dataclass
class Ordering:
    """How well one direction in latent space orders a parameter.

    Attributes
    ----------
    accuracy, accuracy_std : float
        Mean and spread over folds of the held-out low/high classification accuracy.
    normal : ndarray (D,)
        Unit normal w* of the hyperplane fitted on all labelled latents,
        pointing from low to high.
    projection : ndarray (N,)
        Every latent projected on the normal of the fold that did not see
        it (out-of-fold, so an overfitted hyperplane cannot order its own
        training points).
    spearman_rho, kendall_tau : float
        Rank correlations of ``projection`` with the parameter.
    n_low, n_high : int
        Latents labelled low and high.
    """

    accuracy: float
    accuracy_std: float
    normal: np.ndarray
    projection: np.ndarray
    spearman_rho: float | None
    kendall_tau: float | None
    n_low: int
    n_high: int


def _classifier(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    model = (LinearSVC(C=1.0, max_iter=20000, random_state=seed) if kind == "svm"
             else LogisticRegression(C=1.0, max_iter=5000))
    return make_pipeline(StandardScaler(), model)


def _normal(clf) -> np.ndarray:
    """Unit normal, in the latents' own coordinates, of a fitted scaler + linear classifier."""
    scaler, linear = clf[0], clf[-1]
    normal = np.asarray(linear.coef_, dtype=np.float64).ravel() / scaler.scale_
    return normal / np.linalg.norm(normal)


def order_latents(latents: np.ndarray, values: np.ndarray, *, split: str = "median", quantile: float = 0.25,
                  classifier: str = "svm", folds: int = 5, seed: int = 0) -> Ordering:
    """Separate low from high ``values`` by a hyperplane in latent space; order the latents by its normal.

    Parameters
    ----------
    latents : ndarray (N, D)
    values : ndarray (N,)
        The parameter of each latent (e.g. a fitted Sersic index).
    split : {"median", "quantile"}
        ``median``: every latent is low (<= median) or high; ``quantile``:
        low <= the ``quantile`` quantile, high >= the 1 - ``quantile`` one,
        the middle unlabelled (but still projected).
    classifier : {"svm", "logistic"}
    folds : int
        Stratified folds for the accuracy and the out-of-fold projections.
    seed : int
        Seed of the fold assignment and of the classifier.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    latents = np.asarray(latents, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if latents.ndim != 2 or values.shape != (len(latents),):
        raise ValueError(f"latents (N, D) and values (N,) expected, got {latents.shape} and {values.shape}")
    if split == "median":
        high = values > np.median(values)
        labelled = np.ones(len(values), dtype=bool)
    elif split == "quantile":
        lo, hi = np.quantile(values, [quantile, 1 - quantile])
        high = values >= hi
        labelled = (values <= lo) | high
    else:
        raise ValueError(f"split must be 'median' or 'quantile', got {split!r}")
    n_high = int(np.count_nonzero(high & labelled))
    n_low = int(np.count_nonzero(labelled)) - n_high
    if min(n_low, n_high) < folds:
        raise ValueError(f"too few latents to split: {n_low} low and {n_high} high for {folds} folds")
    groups = np.where(labelled, high.astype(int), 2)  # stratify low, high and the unlabelled middle
    projection = np.empty(len(values))
    accuracies = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the hyperplane is still usable; accuracy says how
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(latents, groups):
            train = train[labelled[train]]
            clf = _classifier(classifier, seed).fit(latents[train], high[train])
            projection[test] = latents[test] @ _normal(clf)
            scored = test[labelled[test]]
            accuracies.append(float(np.mean(clf.predict(latents[scored]) == high[scored])))
        clf = _classifier(classifier, seed).fit(latents[labelled], high[labelled])
    return Ordering(accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
                    normal=_normal(clf), projection=projection,
                    spearman_rho=rank_correlation(projection, values),
                    kendall_tau=rank_correlation(projection, values, "kendall"), n_low=n_low, n_high=n_high)


def rank_correlation(a: np.ndarray, b: np.ndarray, kind: str = "spearman") -> float | None:
    """Spearman's rho (or Kendall's tau) of ``a`` and ``b``; None where one is constant (undefined)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float((spearmanr if kind == "spearman" else kendalltau)(a, b).statistic)


def _psf_and_noise(config: LatentStructureConfig, geometry: dict[str, Any],
                   where: str) -> tuple[float, float | None, str]:
    """PSF FWHM (arcsec), noise for chi-square, and a note on where they came from (``where``)."""
    if config.psf_fwhm is not None:
        fwhm, note = config.psf_fwhm, "psf_fwhm from the config"
    elif geometry.get("psf") == "gaussian":
        fwhm, note = float(geometry["psf_fwhm"]), f"Gaussian PSF of {where}"
    elif geometry.get("psf") == "moffat":
        fwhm, note = float(geometry["psf_fwhm"]), f"Moffat PSF of {where} fitted as a Gaussian of its FWHM"
    else:
        why = ("it has no PSF" if geometry.get("psf") == "none"
               else "it is not available or was not simulated by the sersic source")
        raise GalaugError(f"cannot take the PSF from the run's training data ({why}): "
                          "give it with --set psf_fwhm=ARCSEC")
    noise = config.noise_std if config.noise_std is not None else (geometry.get("noise_std") or None)
    return fwhm, noise, note


#: one sentence per figure (used by ``galaug report``)
CAPTIONS = {
    "projection.png": "Fitted Sersic parameter against the projection of each latent on that parameter's "
                      "hyperplane normal w* (out of fold): a tight monotonic band means one direction orders it.",
    "ordered.png": "Generated images at evenly spaced ranks of the projection, one row per parameter: "
                   "the parameter should grow from left to right.",
    "walk.png": "Latents moved along each w* and refitted: rising lines mean the direction controls the parameter.",
    "walk_images.png": "One latent moved along each w* (rows), decoded with the same noise.",
    "control.png": "The fit alone on source images against their true parameters: the precision the "
                   "ordering can reach.",
}


class LatentStructure(Analysis):
    """Sersic fits of generated images; separating hyperplanes and ordering in latent space."""

    name = "latent-structure"
    Config = LatentStructureConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        cfg = self.config
        if len(inputs) not in (1, 2):
            raise GalaugError(f"latent-structure takes RUN [CONTROL.zarr], got {len(inputs)} inputs")
        model = load_run(inputs[0], device=device_name(cfg.device))
        train_ds = training_data(inputs[0])
        control_ds = open_dataset(inputs[1]) if len(inputs) == 2 else train_ds
        # the PSF and noise the generator learned: its training data's, else those of the control images
        geometry, where = sersic_geometry(train_ds), "the training data"
        if not geometry:
            geometry, where = sersic_geometry(control_ds), "the control data"
        fwhm, noise, psf_note = _psf_and_noise(cfg, geometry, where)
        band = band_index(model.layout.bands, cfg.band)
        scale = model.layout.pixel_scale

        def fit(images: np.ndarray, noise_std=noise) -> FitResult:
            return fit_sersic(images[:, band], pixel_scale=scale, psf_fwhm=fwhm, noise_std=noise_std,
                              max_iter=cfg.fit_max_iter)

        drawn = sample(model, cfg.n, seed=seed, truncation=cfg.truncation)
        latents = drawn[cfg.space].astype(np.float64)
        fits = fit(drawn["images"])
        ok = fits.success
        if np.count_nonzero(ok) < 2 * cfg.folds + 2:
            raise GalaugError(f"only {np.count_nonzero(ok)} of {cfg.n} generated images could be fitted by a "
                              "Sersic profile: is the generator trained (on the sersic source)?")
        values = fits.params[ok]
        orderings = {}
        for i, name in enumerate(PARAM_NAMES):
            try:
                orderings[name] = order_latents(latents[ok], values[:, i], split=cfg.split, quantile=cfg.quantile,
                                                classifier=cfg.classifier, folds=cfg.folds, seed=seed)
            except ValueError as exc:  # e.g. a parameter with one value only
                orderings[name] = exc
        walks = self._walks(model, latents[ok], orderings, fit, seed=seed, out_dir=out_dir)

        results: dict[str, Any] = {
            "n": cfg.n, "space": cfg.space, "band": model.layout.bands[band], "psf_fwhm_arcsec": fwhm,
            "psf": psf_note, "noise_std": noise, "checkpoint_step": model.step,
            "fits": {"n_fitted": int(np.count_nonzero(ok)), "n_failed": fits.n_failed,
                     "chi2_reduced_median": float(np.nanmedian(fits.chi2_reduced[ok]))},
            "parameters": {},
        }
        for name, o in orderings.items():
            if isinstance(o, Exception):
                results["parameters"][name] = {"error": str(o)}
                continue
            results["parameters"][name] = {
                "accuracy": o.accuracy, "accuracy_std": o.accuracy_std, "spearman_rho": o.spearman_rho,
                "kendall_tau": o.kendall_tau, "n_low": o.n_low, "n_high": o.n_high, **walks.get(name, {}),
                # what attribute editing needs (galaug.editing): w* and the spread of the latents along it
                "normal": o.normal.tolist(), "projection_std": float(np.std(latents[ok] @ o.normal))}
        results["latent_dim"] = int(latents.shape[1])
        results["run"] = _run_identity(inputs[0], model)
        results["control"] = self._control(control_ds, len(inputs) == 2, model, fit, out_dir=out_dir)
        self._figures(drawn["images"][ok], values, orderings, out_dir, flux_unit=model.layout.flux_unit)
        results["table"] = table(results)
        results["figures"] = [f for f in CAPTIONS if (out_dir / f).exists()]
        results["captions"] = {f: CAPTIONS[f] for f in results["figures"]}
        return results

    def _walks(self, model, latents: np.ndarray, orderings: dict, fit, *, seed: int,
               out_dir: Path) -> dict[str, dict[str, Any]]:
        """Move ``walk_latents`` latents along each w*, refit, and ask whether the parameter follows."""
        cfg = self.config
        k = min(cfg.walk_latents, len(latents))
        if k == 0:
            return {}
        starts = latents[np.random.default_rng(seed).choice(len(latents), size=k, replace=False)]
        t = np.linspace(-cfg.walk_range, cfg.walk_range, cfg.walk_steps)
        out, curves, strips = {}, {}, []
        for i, name in enumerate(PARAM_NAMES):
            o = orderings[name]
            if isinstance(o, Exception):
                continue
            step = t[None, :, None] * np.std(o.projection) * o.normal[None, None, :]
            moved = (starts[:, None, :] + step).reshape(k * len(t), -1)
            images = decode(model, moved, space=cfg.space, noise_seed=seed)
            f = fit(images)
            v = np.where(f.success, f.params[:, i], np.nan).reshape(k, len(t))
            rhos, monotonic = [], 0
            for row in v:
                good = np.isfinite(row)
                if good.sum() >= 3:
                    rho = rank_correlation(t[good], row[good])
                    rhos.append(0.0 if rho is None else rho)  # a parameter that does not move: no order
                    monotonic += bool(good.all() and np.all(np.diff(row) > 0))
            out[name] = {"walk_spearman_mean": float(np.mean(rhos)) if rhos else None,
                         "walk_monotonic_fraction": monotonic / k, "walk_fit_failures": int(np.count_nonzero(~f.success))}
            curves[name] = v
            strips.append(images[: len(t)])
        self._walk_figures(t, curves, strips, model, out_dir)
        return out

    def _control(self, ds, given: bool, model, fit, *, out_dir: Path) -> dict[str, Any]:
        """The fit's own error: source images (``ds``, given or the training data) against their true parameters."""
        cfg = self.config
        if cfg.control == 0:
            return {"skipped": "control = 0"}
        if ds is None:
            return {"skipped": "the run's training data is not available; give a control dataset"}
        if tuple(ds.param_names) != PARAM_NAMES:
            if given:
                raise GalaugError(f"{ds.path}: control data needs the sersic parameters "
                                  f"{', '.join(PARAM_NAMES)} (has: {', '.join(ds.param_names) or 'none'})")
            return {"skipped": f"{ds.path} has no sersic parameters"}
        if ds.image_shape[1:] != (model.layout.image_size,) * 2:
            raise GalaugError(f"{ds.path}: control images are {ds.image_shape[1]} pixels, the generator's "
                              f"{model.layout.image_size}")
        block = ds.read(0, cfg.control, fields=["images", "params"])
        geometry = sersic_geometry(ds)
        noise = cfg.noise_std if cfg.noise_std is not None else (geometry.get("noise_std") or None)
        f = fit(block["images"], noise_std=noise)
        ok, truth = f.success, block["params"].astype(np.float64)
        per = {}
        for i, name in enumerate(PARAM_NAMES):
            err = f.params[ok, i] - truth[ok, i]
            if name == "beta":  # an axis: the error wraps at pi
                err = (err + np.pi / 2) % np.pi - np.pi / 2
            per[name] = {"spearman_rho_fit_vs_true": rank_correlation(f.params[ok, i], truth[ok, i]),
                         "median_abs_error": float(np.median(np.abs(err)))}
        self._control_figure(f.params[ok], truth[ok], out_dir / "control.png", flux_unit=model.layout.flux_unit)
        return {"data": str(ds.path), "n": len(ok), "n_failed": f.n_failed,
                "chi2_reduced_median": float(np.nanmedian(f.chi2_reduced[ok])), "parameters": per}

    # ---------------------------------------------------------------- figures

    def _figures(self, images: np.ndarray, values: np.ndarray, orderings: dict, out_dir: Path, *,
                 flux_unit: str | None) -> None:
        plt = pyplot()
        fig, axes = plt.subplots(2, 4, figsize=(13, 6))
        for ax, (i, name) in zip(axes.flat, enumerate(PARAM_NAMES)):
            o = orderings[name]
            if isinstance(o, Exception):
                ax.set_title(f"{name}: {o}", fontsize=7)
                continue
            ax.scatter(o.projection, values[:, i], s=3, alpha=0.5, color=role_colour("generated"))
            ax.set_xlabel(axis_label(f"projection on w*({name})", f"{self.config.space} units"))
            ax.set_ylabel(axis_label(f"fitted {name}", sersic_unit(name, flux_unit)))
            ax.set_title(f"{name}: acc {o.accuracy:.2f}, rho {_fmt(o.spearman_rho)}", fontsize=9)
        axes.flat[-1].set_axis_off()
        fig.suptitle(f"Fitted Sersic parameters against the latent projection ({self.config.space}-space)")
        fig.tight_layout()
        fig.savefig(out_dir / "projection.png", dpi=90)
        plt.close(fig)

        strip, tiles, labels = self.config.strip, [], []
        names = [n for n in PARAM_NAMES if not isinstance(orderings[n], Exception)]
        for name in names:
            i = PARAM_NAMES.index(name)
            order = np.argsort(orderings[name].projection)
            picks = order[np.linspace(0, len(order) - 1, strip).round().astype(int)]
            tiles.append(images[picks])
            labels += [f"{name} {values[j, i]:.2f}" for j in picks]
        if tiles:
            save_grid(np.concatenate(tiles), out_dir / "ordered.png", channels=[0], labels=labels, ncols=strip,
                      title="Generated images ordered by projection (one row per parameter, fitted value above)")

    def _walk_figures(self, t: np.ndarray, curves: dict, strips: list, model, out_dir: Path) -> None:
        if not curves:
            return
        plt = pyplot()
        fig, axes = plt.subplots(2, 4, figsize=(13, 6))
        for ax, name in zip(axes.flat, PARAM_NAMES):
            if name not in curves:
                ax.set_axis_off()
                continue
            for k, row in enumerate(curves[name]):  # the same colour for latent k in every panel
                ax.plot(t, row, marker=".", lw=1, color=f"C{k % 10}", label=f"latent {k + 1}")
            ax.set_xlabel(axis_label(f"step along w*({name})", "std of projection"))
            ax.set_ylabel(axis_label(f"fitted {name}", sersic_unit(name, model.layout.flux_unit)))
        spare = axes.flat[-1]
        spare.set_axis_off()
        handles, labels = next(ax for ax in axes.flat if ax.lines).get_legend_handles_labels()
        spare.legend(handles, labels, title="each line: one latent", loc="center", fontsize=8, title_fontsize=8)
        fig.suptitle("Latents moved along each w* and refitted")
        fig.tight_layout()
        fig.savefig(out_dir / "walk.png", dpi=90)
        plt.close(fig)
        labels = [f"{name} {s:+.1f}" for name in curves for s in t]
        save_grid(np.concatenate(strips), out_dir / "walk_images.png", channels=[0], labels=labels, ncols=len(t),
                  title="One latent moved along each w* (rows: parameters)")

    def _control_figure(self, fitted: np.ndarray, truth: np.ndarray, path: Path, *, flux_unit: str | None) -> None:
        plt = pyplot()
        fig, axes = plt.subplots(2, 4, figsize=(13, 6))
        for ax, (i, name) in zip(axes.flat, enumerate(PARAM_NAMES)):
            ax.scatter(truth[:, i], fitted[:, i], s=3, alpha=0.5, color=role_colour("control"))
            lo, hi = np.nanmin(truth[:, i]), np.nanmax(truth[:, i])
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            unit = sersic_unit(name, flux_unit)
            ax.set_xlabel(axis_label(f"true {name}", unit))
            ax.set_ylabel(axis_label(f"fitted {name}", unit))
        axes.flat[-1].set_axis_off()
        fig.suptitle("Control: the fit on source images against their true parameters")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _run_identity(run: Path, model) -> dict[str, Any]:
    """Which run (and checkpoint) the directions belong to; ``fingerprint`` identifies it wherever it is copied."""
    from galaug.editing import fingerprint
    from galaug.runs import Run

    options = Run.open(run, kind="generator").options
    return {"path": str(Path(run).resolve()), "generator": options.get("generator"), "checkpoint_step": model.step,
            "data_id": options.get("data_id"), "fingerprint": fingerprint(model)}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(results: dict[str, Any]) -> str:
    """The per-parameter table as text (Markdown)."""
    control = results.get("control", {}).get("parameters", {})
    lines = ["| parameter | accuracy | Spearman rho | Kendall tau | walk rho | walk monotonic | control rho |",
             "|---|---|---|---|---|---|---|"]

    for name, r in results["parameters"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {name} | {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {_fmt(r['spearman_rho'])} | "
                     f"{_fmt(r['kendall_tau'])} | {_fmt(r.get('walk_spearman_mean'))} | "
                     f"{_fmt(r.get('walk_monotonic_fraction'))} | "
                     f"{_fmt(control.get(name, {}).get('spearman_rho_fit_vs_true'))} |")
    return "\n".join(lines)
