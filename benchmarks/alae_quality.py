"""How good is an ALAE trained on the ``sersic`` source, for a stated wall-time budget on this machine?

    python benchmarks/alae_quality.py --presets tiny,small --minutes 4.5
    python benchmarks/alae_quality.py --presets tiny --tiny-steps 600 --n 300

For each preset: simulate a ``sersic`` training set and an independent
held-out set with the same config (32x32 at 0.792 arcsec/pixel for
``tiny``, 64x64 at 0.396 arcsec/pixel for ``small``: the same 25 arcsec
field, SDSS pixels binned 2x2 for 32x32; the source's default parameter
ranges, Gaussian PSF FWHM 1 arcsec, Gaussian noise ``--noise-frac`` (1 %)
of the median peak of noiseless galaxies), train the preset for
``--minutes`` (or ``--<preset>-minutes``) of wall time (in chunks
resumed one after the other, each sized from the steps/s just measured)
or for ``--<preset>-steps``, generate ``--n`` images and report:

(a) the median reduced chi-square of single-Sersic fits
    (:func:`galaug.fitting.fit_sersic`, with the known noise) to the
    generated images, next to the same figure for held-out real images
    (target: generated within 2x of real);
(b) the 1-D Wasserstein distance between the fitted n, r_half and q of
    the generated images (successful fits) and the TRUE parameters of the
    held-out set; beside it, the fit's own floor (fitted held-out against
    true held-out) and the sampling floor (true parameters of the first
    ``--n`` training images against true held-out: what a perfect
    generator gets with this many samples);
(c) the encoder's reconstruction error on held-out images, mean
    |reconstruct(x) - x|^2 / mean |x|^2, and the same for a trivial
    baseline that reconstructs every image as the mean training image.

One table is printed; every number and the exact settings go to ``--out``
(JSON). Data and run directories go under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from galaug import load_generator
from galaug.config import config_to_dict
from galaug.fitting import FitResult, fit_sersic
from galaug.runs import new_run_dir, write_options
from galaug.sources.sersic import PARAM_NAMES, Sersic, SersicConfig
from galaug.sources.simulate import simulate
from galaug_alae.generator import PRESETS, Alae, AlaeConfig

GEOMETRY = {"tiny": 32, "small": 64}
PSF_FWHM = 1.0  # arcsec, the source's default
SHAPE_PARAMS = ("n", "r_half", "q")


def sersic_config(size: int, *, noise_std: float) -> SersicConfig:
    """The source's defaults on a 25.3 arcsec field: 0.396 arcsec/pixel at 64x64, 0.792 at 32x32."""
    return SersicConfig(image_size=size, pixel_scale=0.396 * 64 / size, psf_fwhm=PSF_FWHM, noise_std=noise_std)


def typical_peak(size: int, *, seed: int, n: int = 32) -> float:
    """Median peak pixel of ``n`` noiseless galaxies (rows of another seed than the data sets)."""
    images, _ = Sersic(sersic_config(size, noise_std=0.0)).draw(range(n), seed=seed + 9999)
    return float(np.median(images.max(axis=(1, 2, 3))))


def train(preset: str, data, run_root: Path, *, minutes: float, steps: int | None, seed: int,
          chunk_s: float = 45.0) -> dict[str, Any]:
    """Train ``preset`` on ``data`` for ``steps``, or for ``minutes`` of wall time; returns what was done.

    With a time budget the run is trained in chunks of at most ``chunk_s``
    seconds, each resuming the previous one (resuming is exact, so this is
    the same as one run of the final number of steps); each chunk's length
    comes from the steps/s of the one before (checkpoint and sample writing
    included), which follows the load of a shared machine.
    """
    config = AlaeConfig(**PRESETS[preset])
    run = new_run_dir(run_root, name="alae", data=data.path)
    write_options(run, {"generator": "alae", "preset": preset, "config": config_to_dict(config),
                        "data": str(Path(data.path).resolve()), "data_id": data.id, "seed": seed, "steps": steps,
                        "command": " ".join([Path(sys.executable).name, *sys.argv])})
    alae = Alae(config)
    t0 = time.perf_counter()
    chunks: list[tuple[int, float]] = []
    if steps is not None:
        alae.train(data.path, run, steps=steps, seed=seed)
        chunks.append((steps, time.perf_counter() - t0))
    else:
        done, target = 0, 4
        while target > 0:
            t = time.perf_counter()
            alae.train(data.path, run, steps=done + target, seed=seed, resume=done > 0)
            done += target
            chunks.append((target, time.perf_counter() - t))
            left = minutes * 60 - (time.perf_counter() - t0)
            target = int(min(left, chunk_s) * target / chunks[-1][1])
        steps = done
    wall = time.perf_counter() - t0
    return {"run": str(run), "steps": steps, "train_wall_s": wall, "steps_per_s": steps / wall,
            "chunks": [{"steps": n, "wall_s": w} for n, w in chunks], "config": config_to_dict(config)}


def take(fit: FitResult, rows: slice) -> FitResult:
    """The fits of ``rows``."""
    return FitResult(**{f.name: getattr(fit, f.name)[rows] for f in dataclasses.fields(fit)})


def fit_summary(fit: FitResult, truth: np.ndarray | None = None) -> dict[str, Any]:
    """Median reduced chi-square of every fitted image (failed fits included: a bad image is what they flag),
    and of the successful fits alone; failures; medians of the parameters and, with ``truth``, of the errors."""
    ok = fit.success
    out = {"n": int(len(ok)), "n_failed": fit.n_failed,
           "chi2_reduced_median": float(np.nanmedian(fit.chi2_reduced)),
           "chi2_reduced_median_successful": float(np.median(fit.chi2_reduced[ok])) if ok.any() else math.nan,
           "params_median_successful": {k: float(np.median(fit.params[ok, i])) if ok.any() else math.nan
                                        for i, k in enumerate(PARAM_NAMES)}}
    if truth is not None and ok.any():
        out["median_abs_error_successful"] = {k: float(np.median(np.abs(fit.params[ok, i] - truth[ok, i])))
                                              for i, k in enumerate(PARAM_NAMES) if k != "beta"}
    return out


def evaluate(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    size = GEOMETRY[preset]
    t0 = time.perf_counter()
    peak = typical_peak(size, seed=args.seed)
    noise = args.noise_frac * peak
    cfg = sersic_config(size, noise_std=noise)
    work = Path(args.work_dir) / preset
    work.mkdir(parents=True, exist_ok=True)
    train_ds = simulate("sersic", work / "train.zarr", args.train_size, seed=args.seed, config=cfg,
                        workers=args.workers, overwrite=True)
    held_ds = simulate("sersic", work / "heldout.zarr", args.n, seed=args.seed + 1, config=cfg,
                       workers=args.workers, overwrite=True)
    simulate_s = time.perf_counter() - t0
    minutes = getattr(args, f"{preset}_minutes") or args.minutes
    training = train(preset, train_ds, work / "runs", minutes=minutes, steps=getattr(args, f"{preset}_steps"),
                     seed=args.seed)

    t1 = time.perf_counter()
    model = load_generator(training["run"])
    generated = model.sample(args.n, seed=args.seed + 2)["images"].float().cpu().numpy()
    held = held_ds.read(fields=["images", "params"])
    held_images, held_true = held["images"], held["params"].astype(np.float64)
    train_all = train_ds.read(fields=["images", "params"])
    train_true = train_all["params"][: args.n].astype(np.float64)
    with torch.no_grad():
        recon = model.reconstruct(torch.as_tensor(held_images)).float().cpu().numpy()
    power = float(np.mean(held_images.astype(np.float64) ** 2))
    mean_image = train_all["images"].astype(np.float64).mean(axis=0, keepdims=True)
    rel_mse = float(np.mean((recon - held_images) ** 2) / power)
    baseline = float(np.mean((mean_image - held_images) ** 2) / power)
    generate_s = time.perf_counter() - t1

    t2 = time.perf_counter()
    kw = dict(pixel_scale=cfg.pixel_scale, psf_fwhm=PSF_FWHM, noise_std=noise, max_iter=args.fit_max_iter)
    both = fit_sersic(np.concatenate([held_images, generated]), **kw)  # one call: fuller batches
    fit_real, fit_gen = take(both, slice(0, len(held_images))), take(both, slice(len(held_images), None))
    fit_s = time.perf_counter() - t2

    idx = {k: PARAM_NAMES.index(k) for k in SHAPE_PARAMS}
    gen_ok, real_ok = fit_gen.success, fit_real.success
    w1 = {}
    for k, i in idx.items():
        w1[k] = {"generated_vs_true": float(wasserstein_distance(fit_gen.params[gen_ok, i], held_true[:, i]))
                 if gen_ok.any() else math.nan,
                 "fit_floor": float(wasserstein_distance(fit_real.params[real_ok, i], held_true[:, i])),
                 "sampling_floor": float(wasserstein_distance(train_true[:, i], held_true[:, i]))}
    chi2_real = fit_summary(fit_real, held_true)
    chi2_gen = fit_summary(fit_gen)
    return {
        "image_size": size, "pixel_scale_arcsec": cfg.pixel_scale, "psf_fwhm_arcsec": PSF_FWHM,
        "typical_peak": peak, "noise_std": noise, "sersic_config": config_to_dict(cfg),
        "train_size": args.train_size, "n": args.n, **training,
        "fits": {"heldout_real": chi2_real, "generated": chi2_gen},
        "chi2_ratio_generated_over_real": chi2_gen["chi2_reduced_median"] / chi2_real["chi2_reduced_median"],
        "wasserstein": w1,
        "reconstruction": {"relative_mse": rel_mse, "mean_image_baseline_relative_mse": baseline,
                           "ratio_to_baseline": rel_mse / baseline},
        "timings_s": {"simulate": simulate_s, "train": training["train_wall_s"], "generate_and_reconstruct": generate_s,
                      "fit": fit_s, "fits_per_s": (len(held_images) + len(generated)) / fit_s},
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    presets = list(results)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:
        rows.append((label, [fn(results[p]) for p in presets]))

    row("image size / pixel scale [arcsec]", lambda r: f"{r['image_size']} / {r['pixel_scale_arcsec']:.3f}")
    row("noise_std (1% of median peak)", lambda r: f"{r['noise_std']:.4g}")
    row("training images / steps", lambda r: f"{r['train_size']} / {r['steps']}")
    row("training wall time [min] / steps per s", lambda r: f"{r['train_wall_s'] / 60:.1f} / {r['steps_per_s']:.2f}")
    row("(a) median chi2_red, held-out real (all fits)",
        lambda r: f"{r['fits']['heldout_real']['chi2_reduced_median']:.3f}")
    row("    median chi2_red, generated", lambda r: f"{r['fits']['generated']['chi2_reduced_median']:.3f}")
    row("    ratio generated/real (target <= 2)", lambda r: f"{r['chi2_ratio_generated_over_real']:.2f}")
    row("    failed fits real / generated",
        lambda r: f"{r['fits']['heldout_real']['n_failed']}/{r['n']} / {r['fits']['generated']['n_failed']}/{r['n']}")
    for k in SHAPE_PARAMS:
        row(f"(b) W1({k}) gen | fit floor | sampling",
            lambda r, k=k: " | ".join(f"{r['wasserstein'][k][c]:.3f}"
                                      for c in ("generated_vs_true", "fit_floor", "sampling_floor")))
    row("(c) reconstruction relative MSE", lambda r: f"{r['reconstruction']['relative_mse']:.4f}")
    row("    mean-image baseline relative MSE",
        lambda r: f"{r['reconstruction']['mean_image_baseline_relative_mse']:.4f}")
    row("    ratio to baseline", lambda r: f"{r['reconstruction']['ratio_to_baseline']:.3f}")
    row("fits/s (32 or 64 px)", lambda r: f"{r['timings_s']['fits_per_s']:.1f}")
    width = max(len(label) for label, _ in rows)
    cols = [max(len(p), *(len(v[i]) for _, v in rows)) for i, p in enumerate(presets)]
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{p:>{c}}" for p, c in zip(presets, cols))]
    lines.append("-" * len(lines[0]))
    lines += [f"{label:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(values, cols)) for label, values in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--presets", default="tiny,small", help="comma-separated: tiny, small")
    p.add_argument("--minutes", type=float, default=5.0, help="training wall time per preset")
    p.add_argument("--tiny-minutes", type=float, default=None, help="training wall time of tiny (else --minutes)")
    p.add_argument("--small-minutes", type=float, default=None, help="training wall time of small (else --minutes)")
    p.add_argument("--tiny-steps", type=int, default=None, help="train tiny for this many steps instead")
    p.add_argument("--small-steps", type=int, default=None, help="train small for this many steps instead")
    p.add_argument("--n", type=int, default=300, help="generated images, and held-out images")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--noise-frac", type=float, default=0.01, help="noise_std over the median noiseless peak")
    p.add_argument("--workers", type=int, default=1, help="processes drawing the simulations")
    p.add_argument("--fit-max-iter", type=int, default=100, help="BFGS iterations per fit at most")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 is much faster when another job shares the cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="runs/alae-quality", help="data sets and run directories")
    p.add_argument("--out", default="benchmarks/results/alae_quality.json")
    args = p.parse_args()
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    unknown = sorted(set(presets) - set(GEOMETRY))
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}: choose from {', '.join(GEOMETRY)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = {}
    for preset in presets:
        results[preset] = evaluate(preset, args)
        print(f"[{preset} done after {(time.perf_counter() - t0) / 60:.1f} min]", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    print(table(results))
    print(f"total wall time {wall / 60:.1f} min; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items()}
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "settings": settings,
                               "total_wall_s": wall, "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "presets": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
