"""Fits/s of galaug's batched Sersic fitter against astropy's Sersic2D with scipy BFGS, same images, same run.

    OMP_NUM_THREADS=1 python benchmarks/fit.py --n 500 --baseline-n 30 --repeats 3 --threads 1

Simulate ``--n`` noisy images with the ``sersic`` source (the source's
default parameter ranges; ``--size`` pixels on a 25.3 arcsec field, i.e.
0.792 arcsec/pixel at 32x32 as in ``benchmarks/alae_quality.py``; Gaussian
PSF FWHM 1 arcsec; Gaussian noise ``--noise-frac`` (1 %) of the median peak
of noiseless galaxies), then fit them:

- galaug: :func:`galaug.fitting.fit_sersic` on all ``--n`` images (per-image
  BFGS with autograd gradients, model evaluations batched in torch), once
  from a shared starting point and once from its own moment estimates.
- baseline, one image at a time, on the first ``--baseline-n`` images (30
  at least by default; it is slow): the model is ``astropy.modeling.models.Sersic2D`` evaluated at
  the centres of ``--oversample`` x ``--oversample`` sub-pixels per pixel
  on the stamp plus a margin of 4 PSF sigmas, convolved with the Gaussian
  PSF sampled on the same grid (``scipy.signal.fftconvolve``) and averaged
  to pixels; chi-square with the same noise;
  ``scipy.optimize.minimize(method="BFGS")`` without ``jac`` (forward
  finite differences, 8 model evaluations per gradient) on 0.5 chi-square
  over x, y, log r_half, log n, the shape vector -ln q (cos 2 beta,
  sin 2 beta) and log flux.

The shared start is the truth perturbed (seeded): x, y by N(0, 0.3")
each, r_half and n by a factor exp(N(0, 0.2)), q by N(0, 0.1) (clipped to
0.1-1), beta by N(0, 0.2 rad), flux by exp(N(0, 0.1)). Both fitters get the
same ``max_iter`` (200) and ``gtol`` (1e-3 on the largest gradient
component of 0.5 chi-square in its own variables).

Timing: ``--repeats`` rounds, each of galaug (shared start, then own start)
and then the baseline, so that a change of load hits both sides of a round;
the speed-up of each round is galaug's fits/s on the ``--n`` images over the
baseline's on its ``--baseline-n`` (galaug's batches need many images in
flight; the same first images are inside its sample). Printed: every
round, the min / median / max of the speed-up, and the spread of the
baseline's seconds per image. The fits themselves are the same in every
round (deterministic); the quality table is of the last one, with galaug
also on the baseline's images alone, so that speed is compared at equal
quality.

Errors are medians over the fitted images: relative for n, r_half and
flux, absolute for q. A baseline fit fails when BFGS did not converge (gradient
below gtol, or a precision-loss stop with a predicted further decrease
g^T H^-1 g / 2 below 1e-3: galaug's rule), or ended outside galaug's bounds
(n 0.3 to 6.2, q >= 0.05, r_half 0.05 pixels to 4 stamps) or with its
centre outside the stamp; galaug's failures are ``~FitResult.success``.
Also printed: how far each model is from GalSim's drawing of the true
parameters (the images' noise-free truth), as a fraction of the peak.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
import warnings

import astropy
import numpy as np
import scipy
import scipy.optimize
import scipy.signal
import scipy.special
import torch
from astropy.modeling.models import Sersic2D

from galaug.progress import progress
from galaug.fitting import fit_sersic, render_sersic
from galaug.fitting.fit import _converged as converged  # galaug's rule, applied to the baseline too
from galaug.sources.sersic import Sersic, SersicConfig, draw_sersic

PSF_FWHM = 1.0  # arcsec, the source's default
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
MAX_ITER, GTOL = 200, 1e-3


def sersic_config(size: int, *, noise_std: float) -> SersicConfig:
    """The source's defaults on a 25.3 arcsec field (as in benchmarks/alae_quality.py)."""
    return SersicConfig(image_size=size, pixel_scale=0.396 * 64 / size, psf_fwhm=PSF_FWHM, noise_std=noise_std)


def typical_peak(size: int, *, seed: int, n: int = 32) -> float:
    """Median peak pixel of ``n`` noiseless galaxies (rows of another seed than the data)."""
    images, _ = Sersic(sersic_config(size, noise_std=0.0)).draw(range(n), seed=seed + 9999)
    return float(np.median(images.max(axis=(1, 2, 3))))


def perturbed(truth: np.ndarray, *, seed: int) -> np.ndarray:
    """The shared starting point: the true parameters (N, 7) perturbed (see the module docstring)."""
    rng = np.random.default_rng([seed, 7])
    n = len(truth)
    x, y, r_half, sersic_n, q, beta, flux = truth.astype(np.float64).T
    return np.stack([x + rng.normal(0, 0.3, n), y + rng.normal(0, 0.3, n),
                     r_half * np.exp(rng.normal(0, 0.2, n)),
                     np.clip(sersic_n * np.exp(rng.normal(0, 0.2, n)), 0.4, 6.0),
                     np.clip(q + rng.normal(0, 0.1, n), 0.1, 1.0), np.mod(beta + rng.normal(0, 0.2, n), np.pi),
                     flux * np.exp(rng.normal(0, 0.1, n))], axis=1)


class AstropySersic:
    """Images (H, W) of the source's seven parameters with astropy's Sersic2D: sub-pixel samples, FFT PSF, binned.

    Sersic2D takes the half-light radius along the major axis, r_eff = a =
    r_half / sqrt(q) (r_half = sqrt(ab)), ellip = 1 - q, theta = beta, and
    the surface brightness at r_eff, amplitude = flux b^(2n) e^(-b) /
    (2 pi n r_half^2 Gamma(2n)) with b = gammaincinv(2n, 1/2), so that the
    profile integrates to ``flux``. Lengths are in pixels: the model is flux
    per pixel area, and the mean over a pixel's sub-pixels is its flux.
    """

    def __init__(self, size: int, *, pixel_scale: float, psf_fwhm: float, oversample: int) -> None:
        self.size, self.scale, self.oversample = size, pixel_scale, oversample
        sigma = psf_fwhm * FWHM_TO_SIGMA / pixel_scale  # pixels
        self.margin = math.ceil(4 * sigma + 0.5)
        self.grid = size + 2 * self.margin
        # sub-pixel centres, pixel i of the stamp centred at i - (size - 1) / 2 (GalSim's drawImage convention)
        u = (np.arange(self.grid * oversample) + 0.5) / oversample - self.margin - size / 2
        self.x, self.y = np.meshgrid(u, u)  # x along columns, y along rows
        s = sigma * oversample
        k = np.exp(-0.5 * (np.arange(-math.ceil(4 * s), math.ceil(4 * s) + 1) / s) ** 2)
        self.psf = np.outer(k, k) / k.sum() ** 2
        self.model = Sersic2D()

    def __call__(self, x, y, r_half, n, q, beta, flux) -> np.ndarray:
        """x, y, r_half in arcsec, as the source's parameters."""
        r_half = r_half / self.scale
        b = scipy.special.gammaincinv(2 * n, 0.5)
        log_norm = 2 * n * np.log(b) - b - np.log(2 * np.pi * n * r_half**2) - scipy.special.gammaln(2 * n)
        amplitude = flux * np.exp(log_norm)
        self.model.parameters = [amplitude, r_half / np.sqrt(q), n, x / self.scale, y / self.scale, 1 - q, beta]
        blurred = scipy.signal.fftconvolve(self.model(self.x, self.y), self.psf, mode="same")
        g, o, m = self.grid, self.oversample, self.margin
        return blurred.reshape(g, o, g, o).mean(axis=(1, 3))[m:m + self.size, m:m + self.size]  # (G*o, G*o) -> (G, G)


def to_physical(p: np.ndarray, scale: float) -> np.ndarray:
    """The baseline's variables (x, y [pixels], log r_half [pixels], log n, v1, v2, log flux) -> source's units."""
    eta = math.hypot(p[4], p[5])
    return np.array([p[0] * scale, p[1] * scale, math.exp(p[2]) * scale, math.exp(p[3]), math.exp(-eta),
                     math.fmod(0.5 * math.atan2(p[5], p[4]) + math.pi, math.pi), math.exp(p[6])])


def to_variables(params: np.ndarray, scale: float) -> np.ndarray:
    x, y, r_half, n, q, beta, flux = params
    eta = -math.log(q)
    return np.array([x / scale, y / scale, math.log(r_half / scale), math.log(n), eta * math.cos(2 * beta),
                     eta * math.sin(2 * beta), math.log(flux)])


def fit_baseline(images: np.ndarray, init: np.ndarray, *, noise_std: float, render: AstropySersic) -> dict:
    """One ``scipy.optimize.minimize(method="BFGS")`` per image, numerical gradients."""
    size, scale = render.size, render.scale
    params = np.full((len(images), 7), np.nan)
    chi2_red, n_iter, ok = np.full(len(images), np.nan), np.zeros(len(images), int), np.zeros(len(images), bool)
    seconds = np.zeros(len(images))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # scipy warns when its line search gives up; that fit then reports no convergence and counts as a failure
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"scipy\.optimize")
        for i in progress(range(len(images)), desc="astropy + scipy"):
            def half_chi2(p, image=images[i]):
                value = 0.5 * np.sum((image - render(*to_physical(p, scale))) ** 2) / noise_std**2
                return value if np.isfinite(value) else 1e300

            t = time.perf_counter()
            res = scipy.optimize.minimize(half_chi2, to_variables(init[i], scale), method="BFGS",
                                          options={"maxiter": MAX_ITER, "gtol": GTOL})
            seconds[i] = time.perf_counter() - t
            params[i] = p = to_physical(res.x, scale)
            chi2_red[i] = 2 * res.fun / (size * size - 7)
            n_iter[i] = res.nit
            inside = abs(p[0]) < size * scale / 2 and abs(p[1]) < size * scale / 2
            in_bounds = 0.3 <= p[3] <= 6.2 and p[4] >= 0.05 and 0.05 * scale <= p[2] <= 4 * size * scale
            ok[i] = converged(res) and inside and in_bounds and np.isfinite(res.fun)
    return {"params": params, "chi2_reduced": chi2_red, "n_iter": n_iter, "success": ok, "seconds": seconds}


def row(name: str, images: int, wall: float | None, fit: dict, truth: np.ndarray) -> str:
    p, ok = fit["params"], np.isfinite(fit["params"]).all(axis=1)
    err_n = np.median(np.abs(p[ok, 3] / truth[ok, 3] - 1))
    err_r = np.median(np.abs(p[ok, 2] / truth[ok, 2] - 1))
    err_q = np.median(np.abs(p[ok, 4] - truth[ok, 4]))
    err_f = np.median(np.abs(p[ok, 6] / truth[ok, 6] - 1))
    timing = f"{wall:8.1f} {images / wall:8.2f}" if wall is not None else f"{'-':>8} {'-':>8}"
    return (f"{name:30s} {images:6d} {timing} {np.nanmedian(fit['chi2_reduced']):9.3f} {np.median(fit['n_iter']):6.0f} "
            f"{err_n:8.4f} {err_r:8.4f} {err_q:8.4f} {err_f:8.4f} {int(np.count_nonzero(~fit['success'])):5d}")


def spread(values) -> str:
    """min / median / max."""
    return f"{np.min(values):.1f} / {np.median(values):.1f} / {np.max(values):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=500, help="images fitted by galaug")
    p.add_argument("--baseline-n", type=int, default=30,
                   help="of these, the first ones fitted by the baseline (fewer than 30: a quick check, not a figure)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of both fitters")
    p.add_argument("--size", type=int, default=32, help="stamp size in pixels (pixel scale 0.396 * 64 / size)")
    p.add_argument("--noise-frac", type=float, default=0.01, help="noise_std over the median noiseless peak")
    p.add_argument("--oversample", type=int, default=7,
                   help="baseline sub-pixels per pixel and axis (7: its model within about 1.5%% of GalSim's peak)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.n < 1 or not 1 <= a.baseline_n <= a.n or a.repeats < 1:
        p.error("need 1 <= --baseline-n <= --n and --repeats >= 1")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    print("command:", " ".join(filter(None, [env, "python", *map(shlex.quote, sys.argv)])))
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), scipy {scipy.__version__}, "
          f"astropy {astropy.__version__}, numpy {np.__version__}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")

    t0 = time.perf_counter()
    peak = typical_peak(a.size, seed=a.seed)
    cfg = sersic_config(a.size, noise_std=a.noise_frac * peak)
    images, truth = Sersic(cfg).draw(range(a.n), seed=a.seed)  # (N, 1, H, W), (N, 7)
    images, truth = images[:, 0].astype(np.float64), truth.astype(np.float64)
    init = perturbed(truth, seed=a.seed)
    k = a.baseline_n
    kw = dict(pixel_scale=cfg.pixel_scale, psf_fwhm=PSF_FWHM, noise_std=cfg.noise_std, max_iter=MAX_ITER, gtol=GTOL)
    print(f"{a.n} images {a.size}x{a.size} at {cfg.pixel_scale:.3f}\"/px, PSF FWHM {PSF_FWHM}\", noise_std "
          f"{cfg.noise_std:.4f} ({a.noise_frac:.0%} of the median peak {peak:.1f}); simulated in "
          f"{time.perf_counter() - t0:.0f} s; the baseline fits the first {k} of them "
          f"(oversample {a.oversample}), one at a time")

    fit_sersic(images[:2], **kw)  # warm-up (first torch calls)
    render = AstropySersic(a.size, pixel_scale=cfg.pixel_scale, psf_fwhm=PSF_FWHM, oversample=a.oversample)
    render(*truth[0])  # warm-up
    starts = {"galaug, shared start": init, "galaug, own moment start": None}
    walls: dict[str, list[float]] = {name: [] for name in [*starts, "baseline"]}
    cpus: dict[str, list[float]] = {name: [] for name in walls}  # process CPU seconds: less sensitive to others' load
    results, seconds = {}, []
    for r in range(a.repeats):
        for name, start in starts.items():
            t, c = time.perf_counter(), time.process_time()
            results[name] = vars(fit_sersic(images, init=start, **kw))
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        baseline = fit_baseline(images[:k], init[:k], noise_std=cfg.noise_std, render=render)
        walls["baseline"].append(time.perf_counter() - t)
        cpus["baseline"].append(time.process_time() - c)
        seconds.append(baseline["seconds"])
        print(f"round {r + 1}/{a.repeats}: load average {os.getloadavg()[0]:.2f}", flush=True)

    header = (f"{'method':30s} {'images':>6s} {'wall s':>8s} {'fits/s':>8s} {'chi2_red':>9s} {'iters':>6s} "
              f"{'|dn|/n':>8s} {'|dr|/r':>8s} {'|dq|':>8s} {'|df|/f':>8s} {'fails':>5s}")
    print(f"\nfit quality and the last round's times (median over the images; errors against the true parameters)")
    print(header)
    print("-" * len(header))
    for name in starts:
        print(row(name, a.n, walls[name][-1], results[name], truth))
    for name in starts:
        print(row(f"  {name.split(', ')[1]}, first {k}", k, None, {key: v[:k] for key, v in results[name].items()},
                  truth[:k]))
    print(row("astropy Sersic2D + scipy BFGS", k, walls["baseline"][-1], baseline, truth[:k]))

    shared, own = starts
    for clock, times in (("wall", walls), ("CPU", cpus)):
        base_rate = k / np.array(times["baseline"])
        ratio = {name: a.n / np.array(times[name]) / base_rate for name in starts}
        print(f"\n{'round':>5s} {f'galaug fits/{clock} s (shared, own start)':>38s} "
              f"{f'baseline fits/{clock} s':>20s} {'speed-up (shared, own start)':>29s}")
        for r in range(a.repeats):
            print(f"{r + 1:5d} {a.n / times[shared][r]:19.2f} {a.n / times[own][r]:18.2f} {base_rate[r]:20.3f} "
                  f"{ratio[shared][r]:14.1f}x {ratio[own][r]:13.1f}x")
        print(f"{clock}-time speed-up over {a.repeats} rounds, min / median / max: shared start "
              f"{spread(ratio[shared])}x, own start {spread(ratio[own])}x (target >= 20x)")
    per_image = np.concatenate(seconds)
    print(f"baseline seconds per image over {len(per_image)} fits, min / median / max: "
          f"{np.min(per_image):.2f} / {np.median(per_image):.2f} / {np.max(per_image):.2f}"
          + ("" if k >= 30 else f"; only {k} baseline images (under 30): a quick check, not a figure"))

    clean = np.stack([draw_sersic(q, sersic_config(a.size, noise_std=0.0))[0] for q in truth[:k]])
    ours = render_sersic(truth[:k], image_size=a.size, pixel_scale=cfg.pixel_scale, psf_fwhm=PSF_FWHM)
    theirs = np.stack([render(*q) for q in truth[:k]])
    peaks = clean.max(axis=(1, 2))
    print(f"largest |model - GalSim| / peak at the true parameters, first {k} images: galaug "
          f"{(np.abs(ours - clean).max(axis=(1, 2)) / peaks).max():.1e}, astropy "
          f"{(np.abs(theirs - clean).max(axis=(1, 2)) / peaks).max():.1e} (noise_std / peak "
          f"{cfg.noise_std / peaks.max():.1e} to {cfg.noise_std / peaks.min():.1e})")
    print(f"total wall time {(time.perf_counter() - t0) / 60:.1f} min, "
          f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
