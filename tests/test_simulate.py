"""The simulator sources and ``galaug simulate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
import pytest

from galaug import open_dataset
from galaug.sources.bulgedisk import BulgeDisk, BulgeDiskConfig
from galaug.sources.sersic import PARAM_NAMES, Sersic, SersicConfig
from galaug.sources.simulate import simulate

from test_cli import assert_user_error


def test_sersic_stored_parameters_reproduce_the_images():
    config = SersicConfig(image_size=48, psf="moffat", band_flux=(1.0, 2.0), bands=("g", "r"))
    images, params = Sersic(config).draw(range(4), seed=3)
    assert images.shape == (4, 2, 48, 48) and params.shape == (4, 7)
    for image, (x, y, r_half, n, q, beta, flux) in zip(images, params.astype(float)):
        # an independent redraw from the stored values and their documented units (arcsec, radians)
        gal = galsim.Sersic(n=n, half_light_radius=r_half, flux=flux).shear(q=q, beta=beta * galsim.radians)
        ref = galsim.Convolve(gal.shift(x, y), galsim.Moffat(beta=3.5, fwhm=1.0)).drawImage(
            nx=48, ny=48, scale=0.396).array
        np.testing.assert_allclose(image[0], ref, rtol=1e-4, atol=1e-4 * ref.max())
        np.testing.assert_allclose(image[1], 2 * image[0], rtol=1e-6)


def test_sersic_centroid_and_orientation_follow_the_parameters():
    config = SersicConfig(image_size=64, r_half_range=(1.0, 1.5), n_range=(1.0, 1.5), q_range=(0.4, 0.5))
    images, params = Sersic(config).draw(range(6), seed=0)
    yy, xx = (np.mgrid[:64, :64] - 31.5) * 0.396
    for image, (x, y, _, _, q, beta, _) in zip(images[:, 0], params):
        w = image / image.sum()
        cx, cy = (w * xx).sum(), (w * yy).sum()
        assert abs(cx - x) < 0.05 and abs(cy - y) < 0.05  # arcsec
        mxx, myy, mxy = (w * (xx - cx) ** 2).sum(), (w * (yy - cy) ** 2).sum(), (w * (xx - cx) * (yy - cy)).sum()
        angle = 0.5 * np.arctan2(2 * mxy, mxx - myy) % np.pi
        assert min(abs(angle - beta), np.pi - abs(angle - beta)) < 0.1  # radians


def test_sersic_defaults_follow_the_study():
    params = np.array([Sersic().sample_params(r, seed=0)[0] for r in range(300)])
    lo, hi = params.min(0), params.max(0)
    ranges = dict(zip(PARAM_NAMES, zip(lo, hi)))
    assert -1 <= ranges["x"][0] < -0.9 and 0.9 < ranges["x"][1] <= 1
    assert 1 <= ranges["r_half"][0] < 1.1 and 3.9 < ranges["r_half"][1] <= 4
    assert 1 <= ranges["n"][0] and ranges["n"][1] <= 4 and 0.4 <= ranges["q"][0] and ranges["beta"][1] <= np.pi
    assert ranges["flux"] == (1000.0, 1000.0)
    assert Sersic().layout().pixel_scale == 0.396 * u.arcsec


def test_bulgedisk_bulges_are_red_and_disks_blue():
    config = BulgeDiskConfig(sky_sigma=(0.0,), neighbours=0, colour_jitter=0.0)
    images, params = BulgeDisk(config).draw(range(40), seed=0)
    assert images.shape == (40, 4, 64, 64) and np.isfinite(images).all()
    g_minus_i = -2.5 * np.log10(images[:, 0].sum((1, 2)) / images[:, 2].sum((1, 2)))
    bt = params[:, 1]
    assert np.corrcoef(bt, g_minus_i)[0, 1] > 0.8  # more bulge, redder galaxy


def test_bulgedisk_zero_point_flux_scale_and_colours_are_config_keys():
    quiet = dict(sky_sigma=(0.0,), neighbours=0, colour_jitter=0.0, image_size=16)
    nJy, _ = BulgeDisk(BulgeDiskConfig(**quiet)).draw(range(3), seed=0)
    nmgy, _ = BulgeDisk(BulgeDiskConfig(**quiet, zero_point=22.5, flux_unit="nmgy", flux_scale=2.0)).draw(range(3),
                                                                                                         seed=0)
    np.testing.assert_allclose(nmgy, nJy * 2 * 10 ** ((22.5 - 31.4) / 2.5), rtol=1e-4, atol=1e-9)
    assert BulgeDisk(BulgeDiskConfig(flux_unit="nmgy")).layout().flux_unit == "nmgy"
    grey = dict(bulge_colour=(1, 1, 1, 1), disk_colour=(1, 1, 1, 1), knot_colour=(1, 1, 1, 1))
    flat, _ = BulgeDisk(BulgeDiskConfig(**quiet, **grey, psf_fwhm=(0.8,))).draw(range(2), seed=0)
    np.testing.assert_allclose(flat[:, 0].sum((1, 2)), flat[:, 3].sum((1, 2)), rtol=1e-3)  # same flux in g and z
    with pytest.raises(ValueError, match="bulge_colour needs 4 fluxes"):
        BulgeDiskConfig(bulge_colour=(1.0, 2.0))


def test_bulgedisk_has_noise_and_neighbours_when_asked():
    images, params = BulgeDisk(BulgeDiskConfig(neighbours=2.0)).draw(range(10), seed=1)
    corner = images[:, :, :8, :8]
    assert 20 < corner[:, 1].std() < 40  # r-band sky sigma 30 nJy
    assert params[:, -1].sum() > 5


@pytest.mark.parametrize("name", ["sersic", "bulgedisk"])
def test_same_seed_same_dataset_whatever_the_batching(tmp_path, name):
    cfg = SersicConfig(image_size=32) if name == "sersic" else BulgeDiskConfig(image_size=32)
    a = simulate(name, tmp_path / "a.zarr", 10, seed=5, config=cfg, batch_size=3)
    b = simulate(name, tmp_path / "b.zarr", 10, seed=5, config=cfg, batch_size=10, workers=2)
    c = simulate(name, tmp_path / "c.zarr", 10, seed=6, config=cfg)
    assert np.array_equal(a.read()["images"], b.read()["images"])
    assert np.array_equal(a.read()["params"], b.read()["params"])
    assert not np.array_equal(a.read()["images"], c.read()["images"])
    entry = a.provenance[-1]
    assert entry["seed"] == 5 and entry["plugin"] == f"source:{name}" and entry["config"]["image_size"] == 32


def test_simulate_cli(galaug_plugins, tmp_path):
    res = galaug_plugins.invoke("simulate", "sersic", tmp_path / "s.zarr", "-n", "5", "--size", "24",
                                "--set", "bands=g,r", "--set", "noise_std=1", "--seed", "2")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "s.zarr")
    assert ds.image_shape == (2, 24, 24) and ds.param_names == PARAM_NAMES
    assert ds.param_units[2] == "arcsec" and ds.pixel_scale == 0.396 * u.arcsec


@pytest.mark.parametrize("args, message", [
    (["simulate", "sersik", "{out}", "-n", "3"], "unknown source plugin 'sersik'"),
    (["simulate", "sersic", "{out}", "-n", "3", "--set", "n_range=5,1"], "n_range must satisfy"),
    (["simulate", "sersic", "{out}", "-n", "3", "--set", "radius=2"], "unknown config key 'radius'"),
    (["simulate", "bulgedisk", "{out}", "-n", "3", "--set", "bands=g,u"], "subset of g, r, i, z"),
])
def test_simulate_bad_input(galaug_plugins, tmp_path, args, message):
    out = tmp_path / "o.zarr"
    assert_user_error(galaug_plugins.invoke(*[a.format(out=out) for a in args]), message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["sersic", "bulgedisk"])
def test_simulators_without_galsim_say_how_to_install_it(galaug_plugins, tmp_path, monkeypatch, source):
    """A machine without GalSim (a GPU node, say): one line naming the package and how to install it."""
    monkeypatch.setitem(sys.modules, "galsim", None)  # import galsim raises ImportError
    res = galaug_plugins.invoke("simulate", source, tmp_path / "s.zarr", "-n", "4", "--size", "16")
    assert_user_error(res, f"the {source} source needs the package 'galsim'", "pip install 'galaug[astro]'")
    assert list(tmp_path.iterdir()) == []


def test_without_galsim_worker_processes_report_one_line(tmp_path):
    """The error raised in a --workers process reaches the user as the same one line."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "galsim.py").write_text("raise ImportError(\"No module named 'galsim'\")\n")
    env = {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "GALAUG_PROGRESS": "0"}
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([str(Path(sys.executable).with_name("galaug")), "simulate", "sersic", str(out / "s.zarr"),
                          "-n", "8", "--size", "16", "--workers", "2"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "the sersic source needs the package 'galsim'" in lines[0], res.stderr
    assert list(out.iterdir()) == []
