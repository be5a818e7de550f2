"""Images/s of galaug's batched degradations against GalSim, per image and per band, in the same run.

    python benchmarks/degrade.py --n 1024 --n-galsim 32 --size 64 --bands 4

Both apply the same Gaussian PSF (``--sigma`` pixels) and Gaussian noise
(``--std``) to the same images.

- galaug: ``Pipeline.apply`` on batches of ``--batch`` images (B, C, H, W):
  the PSF for the whole batch at once (for a Gaussian on images up to about
  128 pixels, as two banded matrix products per band; else by FFT), then
  per-sample seeded noise.
  Timed with torch's default number of threads and with one thread.
- GalSim, the way GalSim users convolve an image they already have: for
  each image and each band, ``galsim.InterpolatedImage`` of the band,
  ``galsim.Convolve`` with ``galsim.Gaussian``, ``drawImage(method="no_pixel")``
  (the image is already pixelated) and ``addNoise(galsim.GaussianNoise)``.
  Timed with the same numbers of (OpenMP) threads as galaug.

Also prints the largest difference between the two noise-free results as a
fraction of the peak, to show they compute the same thing.

With ``--whole N`` it then times whole commands on a dataset of N images
(Moffat PSF of FWHM 2 px and beta ``--beta``, Gaussian noise), each a fresh
process, interleaved over ``--repeats`` rounds, best of each:

- ``galaug degrade`` as a user runs it (start-up, reading, PSF, noise,
  writing, fsync), clean images by reference (the default) and with
  ``--copy-clean``;
- the floor: a minimal script that reads the same Zarr array, applies the
  same FFT convolution (the same FFT size) and Gaussian noise in batches, and
  writes an uncompressed, presized array, with no clean copy, no seeds per
  sample, no checks and no fsync;
- beside another job (``--busy``): the same command while a second process
  keeps both cores busy with matrix products, with the default thread policy
  (passive waits), with OpenMP's spinning waits (``OMP_WAIT_POLICY=ACTIVE``,
  galaug's behaviour before) and with one thread (``OMP_NUM_THREADS=1``,
  what ``--threads 1`` sets).

Run it with ``PYTHONPATH`` naming another galaug checkout to time that
version's command the same way (options it lacks are skipped).

Per-sample noise streams: torch generators (what galaug uses) against a
counter-based stream (numpy's Philox keyed by each sample's seed), per image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import galsim
import numpy as np
import torch

from galaug.degrade import Pipeline
from galaug.degrade.noise import GaussianNoise, GaussianNoiseConfig
from galaug.degrade.psf import GaussianPSF, GaussianPSFConfig


def make_images(n: int, bands: int, size: int, seed: int = 0) -> np.ndarray:
    """Elliptical exponential galaxies of random size and orientation, brighter in redder bands."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, bands, size, size), dtype=np.float32)
    for i in range(n):
        q, theta, r = rng.uniform(0.4, 1), rng.uniform(0, np.pi), rng.uniform(1.5, size / 10)
        xr = x * np.cos(theta) + y * np.sin(theta)
        yr = (-x * np.sin(theta) + y * np.cos(theta)) / q
        profile = np.exp(-np.hypot(xr, yr) / r)
        for b in range(bands):
            out[i, b] = (1 + b) * 100 * profile
    return out


def galsim_degrade(image: np.ndarray, sigma: float, std: float | None, rng: galsim.BaseDeviate) -> np.ndarray:
    """One (C, H, W) image, band by band, as a GalSim user writes it."""
    psf = galsim.Gaussian(sigma=sigma)
    out = np.empty_like(image)
    ny, nx = image.shape[-2:]
    for band in range(image.shape[0]):
        source = galsim.InterpolatedImage(galsim.Image(image[band].astype(np.float64), scale=1.0))
        drawn = galsim.Convolve(source, psf).drawImage(nx=nx, ny=ny, scale=1.0, method="no_pixel")
        if std is not None:
            drawn.addNoise(galsim.GaussianNoise(rng, sigma=std))
        out[band] = drawn.array
    return out


def seconds_galaug(pipeline, images: torch.Tensor, batch: int) -> float:
    t = time.perf_counter()
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pipeline.apply(chunk, torch.arange(start, start + len(chunk)))
    return time.perf_counter() - t


def seconds_galsim(images: np.ndarray, sigma: float, std: float, rng: galsim.BaseDeviate) -> float:
    t = time.perf_counter()
    for image in images:
        galsim_degrade(image, sigma, std, rng)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=1024, help="images degraded by galaug")
    p.add_argument("--n-galsim", type=int, default=32, help="images degraded by GalSim (it is slower)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian PSF sigma in pixels")
    p.add_argument("--std", type=float, default=4.0, help="Gaussian noise standard deviation")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the best of each is kept")
    p.add_argument("--whole", type=int, default=0, help="also time whole commands on a dataset of this many images")
    p.add_argument("--beta", type=float, default=3.5, help="Moffat beta of the whole commands")
    p.add_argument("--busy", action="store_true", help="also time the command beside another job")
    a = p.parse_args()

    images = make_images(max(a.n, a.n_galsim), a.bands, a.size)
    psf = GaussianPSF(GaussianPSFConfig(sigma=a.sigma))
    pipeline = Pipeline([psf, GaussianNoise(GaussianNoiseConfig(std=a.std))])
    batch = torch.from_numpy(images[:a.n])
    threads = torch.get_num_threads()
    print(f"{a.n} galaug / {a.n_galsim} GalSim images of {a.bands} x {a.size} x {a.size}; "
          f"pipeline {pipeline.spec}; batch {a.batch}; galsim {galsim.__version__}, torch {torch.__version__}")

    rng = galsim.BaseDeviate(1)
    pipeline.apply(batch[:a.batch], 0)  # warm-up: kernel spectra are cached per image size
    galsim_degrade(images[0], a.sigma, a.std, rng)
    galsim_threads = galsim.utilities.get_omp_threads()
    # rounds alternate between all four, so a busy machine slows them alike; the best round of each counts
    best = {}
    for _ in range(a.repeats):
        for n_threads in sorted({1, threads}):
            torch.set_num_threads(n_threads)
            galsim.utilities.set_omp_threads(n_threads)
            for name, seconds in (("galaug", lambda: seconds_galaug(pipeline, batch, a.batch)),
                                  ("GalSim", lambda: seconds_galsim(images[:a.n_galsim], a.sigma, a.std, rng))):
                best[name, n_threads] = min(best.get((name, n_threads), float("inf")), seconds())
    torch.set_num_threads(threads)
    galsim.utilities.set_omp_threads(galsim_threads)
    rates = {key: (a.n if key[0] == "galaug" else a.n_galsim) / t for key, t in best.items()}

    blur = Pipeline([psf])
    ours = blur.apply(torch.from_numpy(images[:1]), 0)[0].numpy()
    theirs = galsim_degrade(images[0], a.sigma, None, rng)
    agreement = np.abs(ours - theirs).max() / theirs.max()

    for n_threads in sorted({1, threads}):
        ratio = rates["galaug", n_threads] / rates["GalSim", n_threads]
        print(f"{n_threads} thread{'s' if n_threads > 1 else ' '}: galaug {rates['galaug', n_threads]:8.1f} images/s, "
              f"GalSim {rates['GalSim', n_threads]:6.1f} images/s, ratio {ratio:5.1f}x")
    print(f"noise-free results differ by at most {agreement:.1e} of the peak")
    torch.set_num_threads(threads)
    noise_streams(256, a.bands, a.size, a.repeats)
    if a.whole:
        whole_commands(a.whole, a.size, a.bands, a.beta, a.std, a.repeats, a.busy)


FLOOR = textwrap.dedent("""
    # the floor: read, convolve by FFT, add noise, write; nothing galaug does besides (self-contained)
    import math, sys
    import numpy as np, torch, zarr
    from zarr.codecs import Crc32cCodec
    src, dst, beta, std = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    images = zarr.open_group(src, mode="r")["images"]
    n, c, h, w = images.shape
    alpha = 2.0 / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r = np.arange(-(h - 1), h)
    kernel = (1 + (r[:, None] ** 2 + r[None, :] ** 2) / alpha**2) ** -beta
    total = kernel.sum()
    half = next(k for k in range(h) if kernel[h - 1 - k:h + k, h - 1 - k:h + k].sum() >= (1 - 1e-6) * total)
    kernel = kernel[h - 1 - half:h + half, h - 1 - half:h + half]
    size = min(p * f for p in (2 ** a for a in range(1, 16)) for f in (1, 3, 5) if p * f >= h + half)
    spectrum = torch.fft.rfft2(torch.from_numpy(kernel / kernel.sum()).float(), s=(size, size))
    rows = 64
    out = zarr.create_array(dst, shape=images.shape, chunks=(rows, c, h, w), dtype="float32",
                            compressors=Crc32cCodec())
    generator = torch.Generator().manual_seed(0)
    for lo in range(0, n, rows):
        x = torch.from_numpy(images[lo:lo + rows])
        y = torch.fft.irfft2(torch.fft.rfft2(x, s=(size, size)).mul_(spectrum), s=(size, size))
        y = y[..., half:half + h, half:half + w] + std * torch.randn((len(x), c, h, w), generator=generator)
        out[lo:lo + rows] = y.numpy()
""")


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def whole_commands(n: int, size: int, bands: int, beta: float, std: float, repeats: int, busy: bool) -> None:
    """Whole ``galaug degrade`` commands against the floor script, in fresh processes, interleaved."""
    import galaug
    from galaug.data import make_entry

    galaug_bin = str(Path(sys.executable).with_name("galaug"))
    spec = f"psf:moffat(fwhm=2, beta={beta})|noise:gaussian(std={std})"
    env = {**os.environ, "GALAUG_PROGRESS": "0"}
    env.pop("OMP_NUM_THREADS", None)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        src = Path(tmp) / "in.zarr"
        floor_py = Path(tmp) / "floor.py"
        floor_py.write_text(FLOOR)
        import inspect

        sized = {"n": n} if "n" in inspect.signature(galaug.DatasetWriter).parameters else {}  # galaug < 0.2: no n
        with galaug.create_dataset(src, bands=[f"b{i}" for i in range(bands)], image_size=size,
                                   provenance=make_entry("benchmark"), **sized) as w:
            for lo in range(0, n, 1024):
                w.append(make_images(min(1024, n - lo), bands, size, seed=lo))
        gb = n * bands * size * size * 4 / 1e9
        print(f"\nwhole commands on {n} images of {bands} x {size} x {size} ({gb:.2f} GB), {spec}, best of {repeats}:")

        def run(name: str, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> float:
            out = Path(tmp) / "out.zarr"
            shutil.rmtree(out, ignore_errors=True)
            if name == "floor":
                cmd = [sys.executable, str(floor_py), str(src), str(out), str(beta), str(std)]
            else:
                cmd = [galaug_bin, "degrade", str(src), str(out), "--degrade", spec, "--device", "cpu", *args]
            return _timed(cmd, {**env, **(extra_env or {})})

        helptext = subprocess.run([galaug_bin, "degrade", "--help"], capture_output=True, text=True, env=env).stdout
        cases = {"floor script": lambda: run("floor"), "galaug degrade": lambda: run("galaug")}
        if "--copy-clean" in helptext:  # galaug before 0.2 always copied
            cases["galaug degrade --copy-clean"] = lambda: run("galaug", args=("--copy-clean",))
        best: dict[str, float] = {}
        for _ in range(repeats):
            for name, case in cases.items():
                best[name] = min(best.get(name, float("inf")), case())
        for name, t in best.items():
            print(f"  {name:<36} {t:6.2f} s  {t / best['floor script']:5.2f}x the floor")
        if not busy:
            return
        burner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import torch
            a = torch.randn(512, 512)
            while True:
                a = (a @ a).tanh_()
        """)], env={**env, "OMP_NUM_THREADS": str(os.cpu_count() or 2)})
        try:
            time.sleep(2)
            cases = {"busy: galaug degrade (passive waits)": lambda: run("galaug"),
                     "busy: OMP_WAIT_POLICY=ACTIVE (before)": lambda: run("galaug", {"OMP_WAIT_POLICY": "ACTIVE"}),
                     "busy: galaug degrade, one thread": lambda: run("galaug", {"OMP_NUM_THREADS": "1"})}
            best = {}
            for _ in range(repeats):
                for name, case in cases.items():
                    best[name] = min(best.get(name, float("inf")), case())
        finally:
            burner.kill()
        one = best["busy: galaug degrade, one thread"]
        print("beside another job that keeps every core busy:")
        for name, t in best.items():
            print(f"  {name:<36} {t:6.2f} s  {t / one:5.2f}x one thread")


def noise_streams(n: int, bands: int, size: int, repeats: int) -> None:
    """Per-image cost of per-sample torch generators (galaug) against numpy's Philox keyed by the seed."""
    from galaug.degrade.noise import _generators, _standard_normal

    x = torch.zeros(n, bands, size, size)
    seeds = torch.arange(n)
    best = {}
    for _ in range(repeats):
        for threads in sorted({1, torch.get_num_threads()}):
            torch.set_num_threads(threads)
            t = time.perf_counter()
            _standard_normal(x, _generators(x, seeds))
            best["torch", threads] = min(best.get(("torch", threads), 1e9), time.perf_counter() - t)
        t = time.perf_counter()
        for s in range(n):
            np.random.Generator(np.random.Philox(key=s)).standard_normal((bands, size, size), dtype=np.float32)
        best["philox", 1] = min(best.get(("philox", 1), 1e9), time.perf_counter() - t)
    print(f"\nGaussian noise per image ({bands} x {size} x {size}), best of {repeats}:")
    for (name, threads), t in sorted(best.items()):
        label = "torch generator per sample" if name == "torch" else "numpy Philox keyed by the seed"
        print(f"  {label:<32} {threads} thread{'s' if threads > 1 else ' '} {t / n * 1e6:7.1f} us/image")


if __name__ == "__main__":
    main()
