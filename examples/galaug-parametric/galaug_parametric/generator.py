"""The ``parametric`` generator: a distribution of fitted single-Sersic parameters, rendered per band.

Training fits one Sersic profile to each of (a subset of) the training
images in a reference band (:func:`galaug.fitting.fit_sersic`), measures
the flux in every other band with that profile as a matched filter, and
fits a Gaussian mixture (one component by default) to the parameter
vectors w of the successful fits:

    w = (x, y, ln r_half, logit n, v1, v2, ln flux, ln(flux_b / flux_ref) for b != ref)

with x, y in arcsec, ``logit n`` the position of ln n within the fitter's
bounds (0.3 to 6.2), and v = -ln q (cos 2 beta, sin 2 beta) the shear
vector, so that the position angle needs no wrap-around and a round galaxy
sits at the origin. The background noise of each band is measured on the
image borders. The checkpoint holds a handful of numbers.

Sampling draws z ~ N(0, I), maps it through the mixture (``map``),
renders every band with :func:`galaug.fitting.render_sersic` times its flux
ratio, and adds Gaussian noise of the measured level (``decode``);
``encode`` is the fit itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import scipy.special
import torch

from galaug.checkpoints import CheckpointStore
from galaug.config import config_to_dict, resolve_config
from galaug.data import open_dataset
from galaug.degrade.seeds import derive_seeds
from galaug.errors import ConfigError, GalaugError
from galaug.fitting import N_BOUNDS, Q_MIN, fit_sersic, render_sersic
from galaug.kinds import Generator, GeneratorModel, Layout

__all__ = ["ParametricConfig", "Parametric", "ParametricModel", "psf_from_provenance", "params_to_w", "w_to_params",
           "w_names", "fit_mixture", "border_noise", "band_fluxes", "FORMAT"]

FORMAT = "galaug-parametric/1"
_LOG_N = (math.log(N_BOUNDS[0]), math.log(N_BOUNDS[1]))
_ETA_MAX = math.log(1.0 / Q_MIN)
#: colours are ln(flux ratio), the ratio floored here (a band with no measurable flux)
_RATIO_MIN = 1e-3


@dataclasses.dataclass
class ParametricConfig:
    """Options of the parametric generator (``galaug config generator parametric``)."""

    #: Gaussian PSF FWHM in arcsec, one value for every band or one per band;
    #: empty: the PSF the training data were simulated with (sersic or bulgedisk source)
    psf_fwhm: tuple[float, ...] = ()
    #: band the Sersic profile is fitted in; empty: r if present, else the middle band
    reference_band: str = ""
    #: training images fitted at most (whole chunks chosen with the seed); --steps overrides it
    fit_images: int = 2000
    #: Gaussian components of the parameter distribution (1: a single Gaussian)
    components: int = 1
    #: fits whose model has a lower signal-to-noise ratio are not used
    min_snr: float = 5.0
    #: BFGS iterations per fit at most
    max_iter: int = 200
    #: add the measured background noise of each band to sampled images
    noise: bool = True

    def __post_init__(self) -> None:
        if any(not (v > 0 and math.isfinite(v)) for v in self.psf_fwhm):
            raise ValueError(f"psf_fwhm must be positive (arcsec), got {list(self.psf_fwhm)}")
        for name in ("fit_images", "components", "max_iter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.min_snr < 0:
            raise ValueError("min_snr must be >= 0")


# -- the parameter vector w ------------------------------------------------------------------

def w_names(bands: Sequence[str], reference: str) -> list[str]:
    """Names of the components of w."""
    return (["x", "y", "ln_r_half", "logit_n", "v1", "v2", "ln_flux"]
            + [f"colour_{b}" for b in bands if b != reference])


def params_to_w(params: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """w (N, 7 + C - 1) from Sersic parameters (N, 7) and flux ratios to the reference band (N, C - 1)."""
    x, y, r_half, n, q, beta, flux = params.T
    frac = np.clip((np.log(n) - _LOG_N[0]) / (_LOG_N[1] - _LOG_N[0]), 1e-6, 1 - 1e-6)
    eta = -np.log(np.clip(q, Q_MIN, 1.0))
    return np.column_stack([x, y, np.log(r_half), scipy.special.logit(frac), eta * np.cos(2 * beta),
                            eta * np.sin(2 * beta), np.log(flux), np.log(np.maximum(ratios, _RATIO_MIN))])


def w_to_params(w: np.ndarray, *, r_half_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Sersic parameters (N, 7) in the ``sersic`` source's units and flux ratios (N, C - 1) of w.

    n and q stay inside the fitter's bounds by construction; r_half is
    clipped to ``r_half_range`` (arcsec), the range the fitter explores.
    """
    w = np.asarray(w, dtype=np.float64)
    x, y, ln_r, logit_n, v1, v2, ln_flux = w[:, :7].T
    n = np.exp(_LOG_N[0] + (_LOG_N[1] - _LOG_N[0]) * scipy.special.expit(logit_n))
    q = np.exp(-np.minimum(np.hypot(v1, v2), _ETA_MAX))
    beta = np.mod(0.5 * np.arctan2(v2, v1), np.pi)
    r_half = np.clip(np.exp(ln_r), *r_half_range)
    return np.column_stack([x, y, r_half, n, q, beta, np.exp(ln_flux)]), np.exp(w[:, 7:])


# -- measurements on images ------------------------------------------------------------------

def border_noise(images: np.ndarray, *, width: int = 2) -> np.ndarray:
    """Noise (N, C) of each image and band: 1.4826 MAD / sqrt(2) of neighbouring-pixel differences along the border.

    Differences cancel the smooth wings of a galaxy that reach the border;
    NaN where a band has no finite border pixels.
    """
    z = np.asarray(images, dtype=np.float64)
    strips = [z[..., :width, :], z[..., -width:, :], np.swapaxes(z[..., :width], -1, -2),
              np.swapaxes(z[..., -width:], -1, -2)]  # each (N, C, width, length), along the edge
    diffs = np.concatenate([np.diff(s, axis=-1).reshape(*z.shape[:2], -1) for s in strips], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands give NaN
        centre = np.nanmedian(diffs, axis=-1, keepdims=True)
        return 1.4826 * np.nanmedian(np.abs(diffs - centre), axis=-1) / math.sqrt(2)


def band_fluxes(images: np.ndarray, params: np.ndarray, *, pixel_scale: float,
                psf_fwhm: Sequence[float]) -> np.ndarray:
    """Flux (N, C) in every band: the least-squares amplitude of the fitted profile (unit flux, that band's PSF).

    Non-finite pixels are ignored; NaN for rows whose ``params`` are NaN.
    """
    n, c, size, _ = images.shape
    out = np.full((n, c), np.nan)
    ok = np.isfinite(params).all(axis=1)
    if not ok.any():
        return out
    unit = params[ok].copy()
    unit[:, 6] = 1.0
    models: dict[float, np.ndarray] = {}
    for b in range(c):
        fwhm = float(psf_fwhm[b])
        if fwhm not in models:
            models[fwhm] = render_sersic(unit, image_size=size, pixel_scale=pixel_scale, psf_fwhm=fwhm)
        m = models[fwhm]
        x = images[ok, b].astype(np.float64)
        valid = np.isfinite(x)
        num = np.where(valid, x * m, 0.0).sum(axis=(1, 2))
        den = np.where(valid, m * m, 0.0).sum(axis=(1, 2))
        out[ok, b] = num / np.maximum(den, 1e-300)
    return out


# -- the PSF of the training data ----------------------------------------------------------

def psf_from_provenance(provenance: Sequence[dict[str, Any]], bands: Sequence[str]) -> list[float] | None:
    """The Gaussian-equivalent PSF FWHM (arcsec) per band that the data were simulated with, or None.

    Known when every source step is the ``sersic`` or ``bulgedisk``
    simulator, they agree, and no step degraded the images afterwards.
    (Their Moffat PSFs are taken at their FWHM, an approximation.)
    """
    found: list[list[float]] = []
    for entry in provenance:
        if entry.get("step") == "degrade":
            return None
        plugin = str(entry.get("plugin") or "")
        if not plugin.startswith("source:"):
            continue
        per_band = _source_psf(plugin.removeprefix("source:"), entry.get("config") or {}, bands)
        if per_band is None:
            return None
        found.append(per_band)
    if not found or any(not np.allclose(f, found[0], rtol=1e-6) for f in found):
        return None
    return found[0]


def _source_psf(source: str, config: dict[str, Any], bands: Sequence[str]) -> list[float] | None:
    try:
        if source == "sersic":
            from galaug.sources.sersic import SersicConfig

            cfg = resolve_config(SersicConfig, overrides=config)
            return None if cfg.psf == "none" else [cfg.psf_fwhm] * len(bands)
        if source == "bulgedisk":
            from galaug.sources.bulgedisk import BulgeDiskConfig

            cfg = resolve_config(BulgeDiskConfig, overrides=config)
            by_band = dict(zip(cfg.bands, cfg.per_band("psf_fwhm")))
            return [by_band[b] for b in bands] if all(b in by_band for b in bands) else None
    except (ConfigError, ValueError, KeyError, TypeError):
        return None
    return None


# -- the generator ---------------------------------------------------------------------------

class Parametric(Generator):
    """Gaussian (mixture) of single-Sersic fits to the training images, rendered per band with their colours."""

    name = "parametric"
    Config = ParametricConfig

    def train(self, data: Path, run_dir: Path, *, steps: int | None = None, device: str = "cpu", seed: int = 0,
              resume: bool = False) -> None:
        """Fit ``steps`` (or ``fit_images``) training images and the distribution of their parameters.

        The fits run on the CPU whatever ``device``. A fit is one "step":
        the checkpoint's step is the number of images fitted. Training is
        deterministic in (data, config, seed), so ``resume`` either finds
        the finished checkpoint or starts again.
        """
        train_parametric(self.config, data=Path(data), run_dir=Path(run_dir),
                         fit_images=steps or self.config.fit_images, seed=seed, resume=resume)

    @classmethod
    def load(cls, run_dir: Path, *, device: str = "cpu", checkpoint: Path | None = None) -> ParametricModel:
        return ParametricModel.from_checkpoint(_store(Path(run_dir)).load(checkpoint=checkpoint), device=device)


def _store(run_dir: Path) -> CheckpointStore:
    return CheckpointStore(run_dir, format=FORMAT, what="a parametric-generator checkpoint")


def _arcsec_per_pixel(ds) -> float:
    if ds.pixel_scale is None:
        raise GalaugError(f"{ds.path}: has no pixel scale; the Sersic fit needs one in arcsec")
    try:
        return float(ds.pixel_scale.to_value(u.arcsec))
    except u.UnitConversionError:
        raise GalaugError(f"{ds.path}: pixel scale is in {ds.pixel_scale.unit}, the Sersic fit needs an angle "
                          f"(arcsec)") from None


def _resolve_psf(cfg: ParametricConfig, ds) -> list[float]:
    bands = ds.bands
    if cfg.psf_fwhm:
        if len(cfg.psf_fwhm) == 1:
            return [cfg.psf_fwhm[0]] * len(bands)
        if len(cfg.psf_fwhm) != len(bands):
            raise GalaugError(f"psf_fwhm has {len(cfg.psf_fwhm)} values for {len(bands)} bands "
                              f"({','.join(bands)}); give one, or one per band")
        return list(cfg.psf_fwhm)
    found = psf_from_provenance(ds.provenance, bands)
    if found is None:
        raise GalaugError(f"{ds.path}: its PSF is unknown (not simulated by the sersic or bulgedisk source, or "
                          f"degraded since); set the PSF FWHM in arcsec with --set psf_fwhm=VALUE")
    return found


def _reference_band(cfg: ParametricConfig, bands: Sequence[str]) -> str:
    if cfg.reference_band:
        if cfg.reference_band not in bands:
            raise GalaugError(f"reference_band {cfg.reference_band!r} is not one of the data's bands "
                              f"({', '.join(bands)})")
        return cfg.reference_band
    return "r" if "r" in bands else bands[len(bands) // 2]


def _read_subset(ds, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``n`` rows (all if fewer) and their row numbers: whole chunks chosen with ``seed``, then rows."""
    rng = np.random.default_rng(seed)
    rows_per_chunk = ds.chunk_rows
    chunks = rng.permutation(math.ceil(len(ds) / rows_per_chunk))
    chosen, count = [], 0
    for k in chunks:
        if count >= n:
            break
        chosen.append(int(k))
        count += min(rows_per_chunk, len(ds) - k * rows_per_chunk)
    images, rows = [], []
    for k in sorted(chosen):
        start = k * rows_per_chunk
        block = ds.read(start, start + rows_per_chunk, fields=["images"])["images"]
        images.append(block)
        rows.append(np.arange(start, start + len(block)))
    images, rows = np.concatenate(images), np.concatenate(rows)
    if len(rows) > n:
        keep = np.sort(rng.choice(len(rows), n, replace=False))
        images, rows = images[keep], rows[keep]
    return images, rows


def _fit(images: np.ndarray, *, band: int, pixel_scale: float, psf_fwhm: Sequence[float], min_snr: float,
         max_iter: int):
    """Single-Sersic fits in band ``band`` and w of each image (NaN rows where no fit was possible)."""
    fit = fit_sersic(images[:, band], pixel_scale=pixel_scale, psf_fwhm=psf_fwhm[band], min_snr=min_snr,
                     max_iter=max_iter)
    fluxes = band_fluxes(images, fit.params, pixel_scale=pixel_scale, psf_fwhm=psf_fwhm)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = fluxes / fluxes[:, band:band + 1]
    w = np.full((len(images), 6 + images.shape[1]), np.nan)
    ok = np.isfinite(fit.params).all(axis=1)
    w[ok] = params_to_w(fit.params[ok], np.delete(ratios[ok], band, axis=1))
    return fit, w


def fit_mixture(w: np.ndarray, components: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Weights (K,), means (K, D) and covariances (K, D, D) of a Gaussian mixture fitted to w; converged.

    Fitted in standardised units, with 1e-6 added to the diagonal there, so
    that a parameter that barely varies (a fixed flux) keeps a well-conditioned
    covariance. One component is the sample mean and covariance; more are
    fitted by scikit-learn's EM.
    """
    scale = w.std(axis=0)
    scale = np.maximum(scale, 1e-3 * scale.max() + 1e-12)
    x = w / scale
    if components == 1:
        weights, means = np.ones(1), x.mean(axis=0)[None]
        d = x.shape[1]
        covariances = (np.cov(x, rowvar=False, bias=True).reshape(d, d) + 1e-6 * np.eye(d))[None]
        converged = True
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(n_components=components, covariance_type="full", reg_covar=1e-6, n_init=3,
                             random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(x)
        converged = bool(gm.converged_) and not any(issubclass(c.category, ConvergenceWarning) for c in caught)
        weights, means, covariances = gm.weights_, gm.means_, gm.covariances_
    return weights, means * scale, covariances * scale[None, :, None] * scale[None, None, :], converged


def train_parametric(cfg: ParametricConfig, *, data: Path, run_dir: Path, fit_images: int, seed: int,
                     resume: bool) -> None:
    """Fit the images, the mixture of their parameters and the noise; write the checkpoint, metrics and samples."""
    ds = open_dataset(data)
    c, h, w_ = ds.image_shape
    if h != w_:
        raise GalaugError(f"{ds.path}: images are {h}x{w_}; the Sersic fit needs square images")
    scale = _arcsec_per_pixel(ds)
    psf = _resolve_psf(cfg, ds)
    ref = _reference_band(cfg, ds.bands)
    band = ds.bands.index(ref)
    store = _store(run_dir)
    if resume and store.list():
        state = store.load()
        if state["step"] == min(fit_images, len(ds)):
            return  # finished already
    t0 = time.perf_counter()
    images, _ = _read_subset(ds, fit_images, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a band without finite border pixels: no noise
        noise = np.nan_to_num(np.nanmedian(border_noise(images), axis=0), nan=0.0)
    fit, w = _fit(images, band=band, pixel_scale=scale, psf_fwhm=psf, min_snr=cfg.min_snr, max_iter=cfg.max_iter)
    good = fit.success & np.isfinite(w).all(axis=1)
    names = w_names(ds.bands, ref)
    needed = cfg.components * (len(names) + 2)
    if good.sum() < needed:
        raise GalaugError(f"{ds.path}: only {int(good.sum())} of {len(images)} Sersic fits succeeded, fewer than the "
                          f"{needed} needed for {cfg.components} component(s) of {len(names)} parameters "
                          f"(check psf_fwhm, fit more images with --steps, or lower min_snr)")
    weights, means, covariances, converged = fit_mixture(w[good], cfg.components, seed)
    fit_seconds = time.perf_counter() - t0
    state = {
        "step": len(images), "config": config_to_dict(cfg), "seed": seed,
        "layout": {"bands": list(ds.bands), "image_size": h, "pixel_scale_arcsec": scale,
                   "pixel_scale": {"value": float(ds.pixel_scale.value), "unit": ds.pixel_scale.unit.to_string()},
                   "flux_unit": ds.flux_unit},
        "psf_fwhm": [float(v) for v in psf], "reference_band": ref, "w_names": names,
        "weights": torch.as_tensor(weights), "means": torch.as_tensor(means),
        "cholesky": torch.as_tensor(np.linalg.cholesky(covariances)), "noise_std": torch.as_tensor(noise),
    }
    store.save(state, number=len(images), keep=1)
    params = fit.params[good]
    metrics = {
        "step": len(images), "fitted": len(images), "succeeded": int(good.sum()),
        "failed": int(len(images) - good.sum()), "fit_seconds": round(fit_seconds, 3),
        "fits_per_s": round(len(images) / fit_seconds, 2),
        "chi2_reduced_median": float(np.median(fit.chi2_reduced[good])),
        "reference_band": ref, "psf_fwhm": dict(zip(ds.bands, map(float, psf))),
        "noise_std": dict(zip(ds.bands, map(float, noise))), "components": cfg.components,
        "mixture_converged": converged,
        "w_median": dict(zip(names, map(float, np.median(w[good], axis=0)))),
        "w_std": dict(zip(names, map(float, w[good].std(axis=0)))),
        "params_median": dict(zip(("x", "y", "r_half", "n", "q", "beta", "flux"),
                                  map(float, np.median(params, axis=0)))),
    }
    (run_dir / "metrics.jsonl").write_text(json.dumps(metrics) + "\n")  # one fit per run: one line
    _save_samples(ParametricModel.from_checkpoint(state, device="cpu"), images[:8], w[:8],
                  run_dir / f"samples-{len(images):08d}.png")


def _save_samples(model: ParametricModel, real: np.ndarray, w: np.ndarray, path: Path) -> None:
    """A grid: training images, their fitted models (noiseless), then 16 samples."""
    from galaug.viz import pick_rgb_bands, save_grid

    recon = np.zeros_like(real)
    ok = np.isfinite(w).all(axis=1)
    if ok.any():
        recon[ok] = model.decode(w[ok]).numpy()
    samples = model.sample(16, seed=0)["images"].numpy()
    grid = np.concatenate([real, recon, samples])
    save_grid(grid, path, channels=pick_rgb_bands(model.layout.bands), ncols=8,
              title=f"{path.stem}: real, reconstructed, sampled")


# -- the trained model -----------------------------------------------------------------------

class ParametricModel(GeneratorModel):
    """A fitted parametric generator: sample, map, decode, encode, reconstruct.

    Attributes beyond :class:`galaug.kinds.GeneratorModel`: ``w_names`` (the
    components of w), ``psf_fwhm`` (arcsec per band), ``reference_band``,
    ``noise_std`` (per band, data units), and :meth:`params` (w to Sersic
    parameters and flux ratios).
    """

    #: rows rendered per call: every row is rendered in a batch of exactly this size (padded),
    #: so results are bit-identical whatever batch the caller uses
    micro_batch = 32

    def __init__(self, state: dict[str, Any], *, device) -> None:
        self.device = torch.device(device)
        self.config = ParametricConfig(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in state["config"].items()})
        lay = state["layout"]
        self.layout = Layout(bands=tuple(lay["bands"]), image_size=int(lay["image_size"]),
                             pixel_scale=lay["pixel_scale"]["value"] * u.Unit(lay["pixel_scale"]["unit"]),
                             flux_unit=lay["flux_unit"])
        self._scale = float(lay["pixel_scale_arcsec"])
        self.step = int(state["step"])
        self.psf_fwhm = tuple(state["psf_fwhm"])
        self.reference_band = state["reference_band"]
        self.w_names = tuple(state["w_names"])
        self.weights = state["weights"].double().numpy()
        self.means = state["means"].double().numpy()
        self.cholesky = state["cholesky"].double().numpy()
        self.noise_std = state["noise_std"].double().numpy()
        self.w_dim = len(self.w_names)
        # one extra prior coordinate picks the mixture component: Phi(z_0) against the cumulative weights
        self.z_dim = self.w_dim + (1 if len(self.weights) > 1 else 0)
        size = self.layout.image_size
        self._r_range = (0.05 * self._scale, 4.0 * size * self._scale)  # the fitter's bounds, arcsec

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], *, device) -> ParametricModel:
        return cls(state, device=device)

    def _numpy(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=np.float64)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32).to(self.device)

    def params(self, w) -> tuple[np.ndarray, np.ndarray]:
        """Sersic parameters (N, 7: x, y, r_half, n, q, beta, flux in the ``sersic`` source's units)
        and flux ratios to the reference band (N, C - 1) of latents w."""
        return w_to_params(self._numpy(w), r_half_range=self._r_range)

    def sample(self, n: int | None = None, *, seed: int = 0, rows: Sequence[int] | None = None,
               truncation: float | None = None, edit: dict[str, float] | None = None,
               directions=None) -> dict[str, torch.Tensor]:
        rows = list(range(n) if rows is None else rows)
        seeds = derive_seeds(seed, np.asarray(rows, dtype=np.int64)) if rows else np.zeros(0, dtype=np.int64)
        z = np.stack([torch.randn(self.z_dim, generator=torch.Generator().manual_seed(int(s)),
                                  dtype=torch.float64).numpy() for s in seeds]) if rows else np.zeros((0, self.z_dim))
        zt = z.copy()
        if truncation is not None and truncation < 1:  # towards the mean (of the sample's component)
            zt[:, self.z_dim - self.w_dim:] *= truncation
        w = self.edit_latents(self._map(zt), edit, directions=directions)  # along w* (galaug.editing)
        noise_seeds = derive_seeds(seeds, 1).tolist() if self.config.noise and rows else None
        return {"images": self.decode(w, seeds=noise_seeds), "z": self._tensor(z), "w": self._tensor(w)}

    def _map(self, z: np.ndarray) -> np.ndarray:
        if len(self.weights) > 1:
            u_ = scipy.special.ndtr(z[:, 0])
            k = np.minimum(np.searchsorted(np.cumsum(self.weights), u_, side="right"), len(self.weights) - 1)
            z = z[:, 1:]
        else:
            k = np.zeros(len(z), dtype=np.int64)
        # w = mu_k + L_k z, as an elementwise product and a sum over one axis: each row on its own
        return self.means[k] + (self.cholesky[k] * z[:, None, :]).sum(axis=-1)

    def map(self, z) -> torch.Tensor:
        """z (B, z_dim) ~ N(0, I) to w (B, w_dim): mu + L z of a Gaussian component (chosen by z_0 if several)."""
        z = self._numpy(z).reshape(-1, self.z_dim)
        return self._tensor(self._map(z))

    def decode(self, w, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Images (B, C, H, W) of latents w: each band's PSF-convolved profile times its flux ratio,
        plus Gaussian noise of the measured level drawn from ``seeds`` (noiseless when None)."""
        w = self._numpy(w).reshape(-1, self.w_dim)
        params, ratios = self.params(w)
        ref = self.layout.bands.index(self.reference_band)
        ratios = np.insert(ratios, ref, 1.0, axis=1)  # (B, C)
        size, c = self.layout.image_size, len(self.layout.bands)
        out = np.empty((len(w), c, size, size), dtype=np.float64)
        for start in range(0, len(w), self.micro_batch):
            rows = slice(start, start + self.micro_batch)
            chunk = params[rows]
            m = len(chunk)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.micro_batch - m, axis=0)])
            rendered: dict[float, np.ndarray] = {}  # bands sharing a PSF share a rendering
            for b, fwhm in enumerate(self.psf_fwhm):
                if fwhm not in rendered:
                    rendered[fwhm] = render_sersic(padded, image_size=size, pixel_scale=self._scale,
                                                   psf_fwhm=fwhm)[:m]
                out[rows, b] = rendered[fwhm] * ratios[rows, b, None, None]
        images = out.astype(np.float32)
        if seeds is not None:
            seeds = list(seeds)
            if len(seeds) != len(w):
                raise ValueError(f"decode got {len(seeds)} seeds for {len(w)} latents")
            sigma = torch.as_tensor(self.noise_std, dtype=torch.float32)[:, None, None]
            for i, s in enumerate(seeds):
                g = torch.Generator().manual_seed(int(s))
                images[i] += (torch.randn(c, size, size, generator=g) * sigma).numpy()
        return torch.as_tensor(images).to(self.device)

    def encode(self, images) -> torch.Tensor:
        """w of each image: a single-Sersic fit in the reference band, flux ratios in the others.

        Rows are NaN where no fit was possible (too few finite pixels); a
        fit that did not converge still gives its best parameters.
        """
        x = self._numpy(images)
        if x.ndim != 4 or x.shape[1:] != (len(self.layout.bands), self.layout.image_size, self.layout.image_size):
            raise ValueError(f"images must be (B, {len(self.layout.bands)}, {self.layout.image_size}, "
                             f"{self.layout.image_size}), got shape {x.shape}")
        if not len(x):
            return self._tensor(np.zeros((0, self.w_dim)))
        _, w = _fit(x, band=self.layout.bands.index(self.reference_band), pixel_scale=self._scale,
                    psf_fwhm=self.psf_fwhm, min_snr=self.config.min_snr, max_iter=self.config.max_iter)
        return self._tensor(w)
