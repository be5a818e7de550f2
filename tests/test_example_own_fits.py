"""examples/own_fits.sh on fake cutouts from examples/make_fake_cutouts.py, start to finish, with tiny settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import galaug
from galaug.sources.cutouts import load_frames, read_catalogue
from galaug.sources.detect import detect
from galaug.sources.readers import FitsReader

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = EXAMPLES / "own_fits.sh"
MAKE_CUTOUTS = EXAMPLES / "make_fake_cutouts.py"
SECTIONS = ("Your cutouts", "Generated galaxies", "The training mix", "Denoiser on the validation set", "Realism",
            "Latent interpolation")
#: a few steps of everything; ALAE batches of 4 keep the 3 steps inside one epoch of the 30 training images
TINY = {"SIZE": "32", "STEPS": "3", "ALAE_SET": "batch_size=4", "GEN_FACTOR": "5", "REAL_SHARE": "0.1",
        "DENOISE_SET": "epochs=1 max_steps_per_epoch=2 width=8 blocks=1 batch_size=16", "REALISM_N": "4",
        "INTERP_K": "3", "SHOW_N": "4", "DEVICE": "cpu"}


def env(**extra: str) -> dict[str, str]:
    """The environment of a user whose PATH has galaug (this interpreter's folder), quiet and on one thread."""
    out = {k: v for k, v in os.environ.items()
           if k not in TINY and k not in ("BANDS", "DEGRADE", "PYTHON", "CATALOG", "DETECT", "INGEST_ONLY")}
    out.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", GALAUG_PROGRESS="0", **extra)
    return out


def run(*args: str | Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=env(**extra), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_own_fits_start_to_finish(tmp_path):
    cutouts, out = tmp_path / "cutouts", tmp_path / "out"
    made = run(sys.executable, MAKE_CUTOUTS, cutouts, "-n", "40", "--size", "40", "--bands", "g,r,i", "--nan", "2")
    assert made.returncode == 0, made.stderr
    files = sorted(cutouts.glob("*.fits"))
    assert len(files) == 40
    with fits.open(files[0]) as hdul:  # a survey-like multi-extension cutout: one HDU per band
        assert [h.header.get("FILTER") for h in hdul[1:]] == ["g", "r", "i"]
        assert hdul[1].header["BUNIT"] == "nJy" and hdul[1].header["CTYPE1"] == "RA---TAN"
        assert hdul[1].data.shape == (40, 40)

    done = run("bash", SCRIPT, cutouts, out, **TINY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    real = galaug.open_dataset(out / "real.zarr")  # 2 cutouts with NaN pixels left out (ON_BAD=skip)
    assert len(real) == 38 and real.bands == ("g", "r", "i") and real.image_shape == (3, 32, 32)
    assert real.flux_unit == "nJy" and abs(real.pixel_scale.to_value("arcsec") - 0.2) < 1e-9
    train, val = galaug.open_dataset(out / "real-train.zarr"), galaug.open_dataset(out / "real-val.zarr")
    assert (len(train), len(val)) == (30, 8)
    gen = galaug.open_dataset(out / "gen.zarr")
    assert len(gen) == 5 * len(train) and gen.origin_counts()["generated"] == len(gen)
    mix = galaug.open_dataset(out / "mix.zarr")
    assert mix.origin_counts() == {"real": 3, "generated": 150}
    assert galaug.open_dataset(out / "real-val-degraded.zarr").clean_shape == (3, 32, 32)

    # the default degradation follows the data's noise: 2 x the sky noise of each band (bulgedisk's 25, 30, 45 nJy)
    spec = re.search(r'DEGRADE="(.*)"', done.stdout).group(1)
    stds = [float(s) for s in re.search(r"std=\[(.*)\]", spec).group(1).split(",")]
    assert len(stds) == 3
    for std, sky in zip(stds, (25.0, 30.0, 45.0)):
        assert 0.85 < std / (2 * sky) < 1.2, (stds, spec)

    assert (out / "denoise-metrics.json").is_file() and "| nominal |" in (out / "denoise.md").read_text()
    assert (out / "realism" / "report.json").is_file() and (out / "interpolate" / "report.json").is_file()
    html = (out / "report.html").read_text()
    for title in SECTIONS:
        assert title in html, title
    assert html.count("data:image/png;base64,") >= 6
    assert f"report:    {out}/report.html" in done.stdout


def test_own_fits_refuses_a_folder_without_fits(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a cutout")
    done = run("bash", SCRIPT, empty, tmp_path / "out", **TINY)
    assert done.returncode != 0
    assert f"Error: no FITS files (*.fits, *.fit, *.fts, or .gz) in {empty}" in done.stderr
    assert not (tmp_path / "out").exists()
    usage = run("bash", SCRIPT, empty)
    assert usage.returncode != 0 and "usage: bash" in usage.stderr
    (empty / "a.fits").write_bytes(b"")
    size = run("bash", SCRIPT, empty, tmp_path / "out", **{**TINY, "SIZE": "48"})
    assert size.returncode != 0 and "SIZE must be 16, 32, 64, 128 or 256" in size.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_own_fits_cuts_stamps_from_frames_at_a_catalogue_or_at_detected_sources(tmp_path):
    frames = tmp_path / "frames"
    made = run(sys.executable, MAKE_CUTOUTS, frames, "-n", "10", "--frame", "224", "--size", "32", "--bands", "g,r")
    assert made.returncode == 0, made.stderr
    near = int(re.search(r"\((\d+) within 16 pixels of an edge\)", made.stdout).group(1))
    assert sorted(p.name for p in frames.iterdir()) == ["catalog.csv", "frame_g.fits", "frame_r.fits"]
    assert len((frames / "catalog.csv").read_text().splitlines()) == 11

    def centred(images: np.ndarray) -> bool:
        """Whether the mean of the stamps (all bands) peaks at one of the four centre pixels."""
        y, x = np.unravel_index(np.argmax(images.sum(axis=(0, 1))), images.shape[2:])
        return y in (15, 16) and x in (15, 16)

    settings = {**TINY, "INGEST_ONLY": "1"}
    done = run("bash", SCRIPT, frames, tmp_path / "catalogue", CATALOG=str(frames / "catalog.csv"), **settings)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "done (INGEST_ONLY=1)" in done.stdout and not (tmp_path / "catalogue" / "runs").exists()
    real = galaug.open_dataset(tmp_path / "catalogue" / "real.zarr")  # one stamp per galaxy not by an edge
    assert len(real) == 10 - near and real.bands == ("g", "r") and real.image_shape == (2, 32, 32)
    assert real.flux_unit == "nJy" and abs(real.pixel_scale.to_value("arcsec") - 0.2) < 1e-9
    assert centred(real.read()["images"])

    done = run("bash", SCRIPT, frames, tmp_path / "detect", DETECT="1", **settings)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    detected, kept = map(int, re.search(r"detected (\d+) sources .*; kept (\d+)", done.stdout).groups())
    real = galaug.open_dataset(tmp_path / "detect" / "real.zarr")
    assert detected >= 10 and len(real) == kept >= 10 - near
    assert real.provenance[-1]["detection"]["n_detected"] == detected
    assert centred(real.read()["images"])
    found = detect(load_frames(FitsReader(), sorted(frames.glob("*.fits"))))  # what the ingest detected
    catalogue = read_catalogue(frames / "catalog.csv")
    x, y = found.frames[0].wcs.world_to_pixel_values(catalogue.a, catalogue.b)
    nearest = np.hypot(found.x[:, None] - x, found.y[:, None] - y).min(axis=0)  # to each galaxy
    assert found.n_detected == detected and np.sum(nearest < 3.5) >= 10 - near  # galaxies 32+ pixels apart

    both = run("bash", SCRIPT, frames, tmp_path / "both", CATALOG=str(frames / "catalog.csv"), DETECT="1", **settings)
    assert both.returncode != 0 and "give CATALOG" in both.stderr and not (tmp_path / "both").exists()


def test_fake_cutouts_as_gzipped_cubes_ingest_with_their_headers(tmp_path):
    made = run(sys.executable, MAKE_CUTOUTS, tmp_path / "cubes", "-n", "3", "--size", "24", "--bands", "r,z",
               "--layout", "cube", "--gzip", "--pixel-scale", "0.262")
    assert made.returncode == 0, made.stderr
    files = sorted((tmp_path / "cubes").glob("*.fits.gz"))
    assert len(files) == 3
    with fits.open(files[0]) as hdul:
        assert hdul[0].data.shape == (2, 24, 24) and (hdul[0].header["BAND1"], hdul[0].header["BAND2"]) == ("r", "z")
    from galaug.sources import ingest

    ingest(tmp_path / "cubes", tmp_path / "cubes.zarr")
    ds = galaug.open_dataset(tmp_path / "cubes.zarr")
    assert len(ds) == 3 and ds.bands == ("r", "z") and ds.image_shape == (2, 24, 24) and ds.flux_unit == "nJy"
    assert abs(ds.pixel_scale.to_value("arcsec") - 0.262) < 1e-9
