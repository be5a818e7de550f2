"""Units: degradation lengths in arcsec, noise units, flux-unit conversion at ingest, the simulators' flux keys."""

from __future__ import annotations

import re
from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import galaxy_images
from test_cli import assert_user_error

from galaug import GalaugError, open_dataset
from galaug.degrade import Pipeline, parse_pipeline
from galaug.degrade.psf import GaussianPSF, GaussianPSFConfig, MoffatPSFConfig
from galaug.errors import ConfigError
from galaug.kinds import Task
from galaug.sources import ingest
from galaug.sources.sersic import Sersic, SersicConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    from galaug.pluginmanager import PluginManager

    return PluginManager(autoload=False, blocked=()).registry


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- lengths of degradations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given, pixels", [
    ("psf:gaussian(fwhm=0.8arcsec)|noise:gaussian(std=0.01)", "psf:gaussian(fwhm=4)|noise:gaussian(std=0.01)"),
    ('psf:moffat(beta=3.5, fwhm=[0.6arcsec, "800 mas", 5px])', "psf:moffat(beta=3.5, fwhm=[3, 4, 5])"),
    ("resample(scale=0.4arcsec, keep_size=false)|psf:gaussian(sigma=0.4arcsec)",
     "resample(scale=2, keep_size=false)|psf:gaussian(sigma=1)"),  # after the resample, pixels of 0.4 arcsec
])
def test_arcsec_lengths_degrade_as_the_pixels_they_convert_to(galaug_plugins, make_dataset, tmp_path, given, pixels):
    ds = make_dataset(6, pixel_scale=0.2 * u.arcsec)
    for spec, name in ((given, "a.zarr"), (pixels, "p.zarr")):
        res = galaug_plugins.invoke("degrade", ds.path, tmp_path / name, "--degrade", spec, "--seed", "3")
        assert res.exit_code == 0, res.output
    a, p = open_dataset(tmp_path / "a.zarr"), open_dataset(tmp_path / "p.zarr")
    assert np.array_equal(a.read()["images"], p.read()["images"])  # bit for bit
    entry = a.provenance[-1]["config"]
    assert entry["pipeline"] == p.provenance[-1]["config"]["pipeline"]  # recorded in pixels, reproducible
    assert entry["given"] == parse_pipeline(given).spec and "0.2" in str(entry["lengths"][0]["pixel_scale"])
    assert "given" not in p.provenance[-1]["config"] and a.pixel_scale == p.pixel_scale


def test_the_provenance_records_each_length_as_given_and_in_pixels(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(2, pixel_scale=0.25 * u.arcsec, flux_unit="nJy")
    res = galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade",
                                "psf:moffat(beta=3, fwhm=[0.5arcsec, 1arcsec, 2px])|noise:ccd(gain=2)")
    assert res.exit_code == 0, res.output
    config = open_dataset(tmp_path / "o.zarr").provenance[-1]["config"]
    assert config["lengths"] == [{"step": 1, "degradation": "psf-moffat", "key": "fwhm",
                                  "given": ["0.5arcsec", "1.0arcsec", 2.0], "pixels": [2.0, 4.0, 2.0],
                                  "pixel_scale": {"value": 0.25, "unit": "arcsec"}}]
    assert config["flux_unit"] == "nJy"  # the unit of noise levels and of the gain's denominator
    assert config["pipeline"].startswith("psf:moffat(beta=3.0, fwhm=[2.0, 4.0, 2.0])")


def test_arcsec_on_a_dataset_of_unknown_scale_is_one_line_and_writes_nothing(galaug_plugins, make_dataset,
                                                                             tmp_path):
    ds = make_dataset(3)
    assert ds.pixel_scale is None
    before = files_under(tmp_path)
    res = galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade",
                                "psf:gaussian(fwhm=0.8arcsec)|noise:gaussian(std=0.01)")
    assert_user_error(res, "step 1 (psf:gaussian): fwhm=0.8arcsec needs the pixel scale of", ds.path.name,
                      "which is unknown", "--pixel-scale")
    assert files_under(tmp_path) == before
    assert galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade",
                                 "psf:gaussian(fwhm=4px)").exit_code == 0  # pixels need no scale


def test_an_angle_on_a_scale_in_kpc_is_refused(make_dataset, tmp_path):
    from galaug.degrade import degrade_dataset

    ds = make_dataset(2, pixel_scale=0.5 * u.kpc)
    with pytest.raises(GalaugError, match=r"fwhm=0.8arcsec: cannot convert arcsec \(angle\) to pixels of 0.5 kpc"):
        degrade_dataset(ds, tmp_path / "o.zarr", "psf:gaussian(fwhm=0.8arcsec)")
    out = degrade_dataset(ds, tmp_path / "o.zarr", "psf:gaussian(fwhm=1kpc)")  # a length on a length scale
    assert out.provenance[-1]["config"]["pipeline"] == "psf:gaussian(fwhm=2.0)"


def test_python_api_takes_quantities_and_strings_with_units():
    images = torch.from_numpy(galaxy_images(3, bands=2, size=24))
    by_quantity = Pipeline([GaussianPSF(GaussianPSFConfig(fwhm=[0.6, 0.8] * u.arcsec))])
    by_text = parse_pipeline('psf:gaussian(fwhm=["0.6 arcsec", 0.8arcsec])')
    assert by_quantity.spec == by_text.spec == "psf:gaussian(fwhm=[0.6arcsec, 0.8arcsec])"
    with pytest.raises(ConfigError, match=r"step 1 \(psf:gaussian\): fwhm=0.6arcsec is not in pixels"):
        by_quantity.apply(images, 0)
    pixels = by_quantity.in_pixels("0.2 arcsec")
    assert pixels.spec == "psf:gaussian(fwhm=[3.0, 4.0])" and pixels.conversions[0]["pixels"] == [3.0, 4.0]
    assert torch.equal(pixels.apply(images, 0), parse_pipeline("psf:gaussian(fwhm=[3, 4])").apply(images, 0))
    assert GaussianPSFConfig(sigma=2 * u.pix).sigma == 2.0 and MoffatPSFConfig(beta=3, fwhm="2px").fwhm == 2.0
    assert parse_pipeline("psf:gaussian(sigma=2)").in_pixels(None).spec == "psf:gaussian(sigma=2.0)"


class Recorder(Task):
    """A task that trains instantly and reports the spec it was handed."""

    name = "recorder"

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        (run_dir / "checkpoints").mkdir(exist_ok=True)

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        return {"spec": degrade.spec}


def test_tasks_take_arcsec_in_pixels_of_their_data(galaug_plugins, make_dataset, tmp_path):
    from galaug.runs import Run, evaluate_run, plan_training

    galaug_plugins.plugin(galaug_register=lambda register: register.task(Recorder))
    fine, coarse = make_dataset(2, pixel_scale=0.2 * u.arcsec), make_dataset(2, pixel_scale=0.4 * u.arcsec)
    plan = plan_training("task", "recorder", fine.path, manager=galaug_plugins.manager,
                         degrade="psf:gaussian(fwhm=0.8arcsec)")
    run = Run.open(plan.run(plan.start(root=tmp_path / "runs")).path)
    assert run.degrade == "psf:gaussian(fwhm=4.0)" and run.options["degrade_lengths"][0]["given"] == "0.8arcsec"
    assert evaluate_run(run, coarse.path, manager=galaug_plugins.manager)[0]["spec"] == "psf:gaussian(fwhm=4.0)"
    metrics, _ = evaluate_run(run, coarse.path, degrade="psf:gaussian(fwhm=0.8arcsec)", overwrite=True,
                              manager=galaug_plugins.manager)
    assert metrics["spec"] == "psf:gaussian(fwhm=2.0)"  # a spec given for evaluation: the evaluation data's pixels
    with pytest.raises(ConfigError, match="needs the pixel scale of .*which is unknown"):
        plan_training("task", "recorder", make_dataset(2).path, manager=galaug_plugins.manager,
                      degrade="psf:gaussian(fwhm=0.8arcsec)")


@pytest.mark.parametrize("spec, fragment", [
    ("psf:gaussian(fwhm=0.8nJy)", "fwhm '0.8nJy' must be in pixels or an angle (arcsec), not spectral flux density"),
    ("psf:gaussian(fwhm=0.8arcsex)", "'arcsex' is not a unit (use px, arcsec, mas, arcmin, deg)"),
    ("psf:gaussian(fwhm=-0.8arcsec)", "fwhm must be > 0, got -0.8 arcsec"),
    ("resample(scale=1e-3arcsec)", "scale=0.001arcsec at 0.2 arcsec per pixel: scale must be >= 0.0625, got 0.005"),
])
def test_bad_lengths_are_one_line_errors(spec, fragment):
    with pytest.raises(ConfigError) as info:
        parse_pipeline(spec).in_pixels(0.2 * u.arcsec)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# -- noise units ----------------------------------------------------------------------------------------------

def test_ccd_noise_needs_a_gain_in_electrons_per_data_unit(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(2)
    res = galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade", "noise:ccd(sky_level=100)")
    assert_user_error(res, "noise:ccd: gain is required: electrons per unit of the images' data",
                      "e-/ADU for counts", "e-/nJy for images in nJy")
    assert not (tmp_path / "o.zarr").exists()
    guide = (DOCS / "degradations.md").read_text()
    ccd = re.search(r"^### noise:ccd .*?(?=^### )", guide, flags=re.M | re.S).group(0)
    assert "| `gain` | e- / data unit |" in ccd and "required" in ccd


def test_every_parameter_of_every_degradation_states_its_unit(registry):
    import dataclasses

    guide = (DOCS / "degradations.md").read_text()
    for entry in registry.entries("degradation"):
        section = re.search(rf"^### \S+ \(`{entry.name}`\)(.*?)(?=^##|\Z)", guide, flags=re.M | re.S).group(1)
        cls = registry.load(entry)
        for field in dataclasses.fields(cls.Config):
            row = re.search(rf"^\| `{field.name}` \| ([^|]*) \|", section, flags=re.M)
            assert row and row.group(1).strip() not in ("", "-"), f"{entry.name}.{field.name}: no unit"
            if field.name in cls.lengths:
                assert "pixels or arcsec" in row.group(1), f"{entry.name}.{field.name}: say it takes arcsec"


# -- flux units at ingest -------------------------------------------------------------------------------------

def write_fits(path: Path, data: np.ndarray, **cards) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data, header=fits.Header(list(cards.items()))).writeto(path)
    return path


def test_nanomaggies_and_nanojansky_convert_by_the_exact_factor(galaug_plugins, tmp_path):
    images = galaxy_images(3, bands=2, size=12)
    for i, im in enumerate(images):
        write_fits(tmp_path / "nmgy" / f"{i}.fits", im, BUNIT="nanomaggy")
    report = ingest(tmp_path / "nmgy", tmp_path / "njy.zarr", to_unit="nJy")
    njy = open_dataset(tmp_path / "njy.zarr")
    assert njy.flux_unit == "nJy" and report.flux_unit == "nJy"
    np.testing.assert_array_equal(njy.read()["images"], (images.astype(np.float64) * 3631).astype(np.float32))
    record = njy.provenance[-1]["flux_conversion"]
    assert record == {"to": "nJy", "zero_point": None,
                      "from": [{"from": "nanomaggy", "factor": [3631.0, 3631.0], "images": 3, "first": "0.fits"}]}
    # and back: the files now in nJy, converted to nanomaggies
    for i, im in enumerate(njy.read()["images"]):
        write_fits(tmp_path / "back" / f"{i}.fits", im, BUNIT="nJy")
    res = galaug_plugins.invoke("ingest", tmp_path / "back", tmp_path / "nmgy.zarr", "--to-unit", "nanomaggy")
    assert res.exit_code == 0, res.output
    assert "3 images read in nJy, converted to nmgy (x 0.000275406)" in res.output
    back = open_dataset(tmp_path / "nmgy.zarr")
    factor = back.provenance[-1]["flux_conversion"]["from"][0]["factor"]
    assert back.flux_unit == "nmgy" and factor == pytest.approx([1 / 3631] * 2, rel=1e-14)
    np.testing.assert_allclose(back.read()["images"], images, rtol=1e-6)


def test_counts_convert_with_a_zero_point_per_band(galaug_plugins, tmp_path):
    images = galaxy_images(2, bands=2, size=12)
    for i, im in enumerate(images):
        write_fits(tmp_path / "in" / f"{i}.fits", im)  # no BUNIT: given with --flux-unit
    res = galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "o.zarr", "--flux-unit", "adu",
                                "--to-unit", "nJy", "--zero-point", "27,22.5")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "o.zarr")
    factors = [10 ** ((31.4 - 27) / 2.5), 10 ** ((31.4 - 22.5) / 2.5)]
    np.testing.assert_allclose(ds.read()["images"], images * np.array(factors)[None, :, None, None], rtol=1e-6)
    record = ds.provenance[-1]["flux_conversion"]
    assert record["zero_point"] == [27.0, 22.5] and record["from"][0]["factor"] == pytest.approx(factors, rel=1e-14)
    assert ds.provenance[-1]["options"]["to_unit"] == "nJy" and ds.flux_unit == "nJy"


@pytest.mark.parametrize("bunit, args, fragments", [
    ("nanomaggy", ["--to-unit", "parsec"], ["cannot convert nmgy to pc: astropy finds no conversion", "(0.fits)"]),
    ("furlongs", ["--to-unit", "nJy"], ["cannot convert 'furlongs' to 'nJy'", "'furlongs' is not a unit"]),
    ("nanomaggy", ["--to-unit", "mag(AB)"], ["--to-unit: 'mag(AB)' is a magnitude, not a flux"]),
    ("adu", ["--to-unit", "nJy"], ["cannot convert adu to nJy: counts need an AB zero point (--zero-point ZP"]),
    (None, ["--to-unit", "nJy"], ["--to-unit nJy needs the unit of the images: 0.fits declares no flux unit",
                                  "--flux-unit"]),
    ("nJy", ["--to-unit", "nJy", "--zero-point", "27"], ["--zero-point converts counts, but 0.fits is in nJy"]),
    ("adu", ["--zero-point", "27"], ["--zero-point converts counts to flux and goes with --to-unit"]),
    ("adu", ["--to-unit", "nJy", "--zero-point", "x"], ["--zero-point must be an AB magnitude"]),
])
def test_bad_units_are_one_line_and_write_nothing(galaug_plugins, tmp_path, bunit, args, fragments):
    for i, im in enumerate(galaxy_images(2, bands=1, size=8)):
        write_fits(tmp_path / "in" / f"{i}.fits", im, **({"BUNIT": bunit} if bunit else {}))
    before = files_under(tmp_path)
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "o.zarr", *args), *fragments)
    assert files_under(tmp_path) == before


# -- the simulators ---------------------------------------------------------------------------------------------

def test_sersic_defaults_draw_the_images_they_drew_before_the_flux_keys():
    config = SersicConfig(image_size=16, noise_std=2.0, flux_range=(500.0, 1500.0))
    images, params = Sersic(config).draw(range(2), seed=7)
    # parameters drawn before zero_point, mag_range and flux_scale existed (numpy's PCG64 streams are stable)
    assert params[:, 6].tolist() == pytest.approx([1125.0954666046669, 1270.1409510034741], rel=1e-7)
    assert params[0, 0] == pytest.approx(0.794427601939151, rel=1e-7)
    for row, image in enumerate(images):  # the drawing code as it was, step by step
        p, noise_seed = Sersic(config).sample_params(row, seed=7)
        x, y, r_half, n, q, beta, flux = p
        gsparams = galsim.GSParams(maximum_fft_size=16384)
        gal = galsim.Sersic(n=n, half_light_radius=r_half, flux=flux, gsparams=gsparams)
        gal = gal.shear(q=q, beta=beta * galsim.radians).shift(x, y)
        ref = galsim.Convolve(gal, galsim.Gaussian(fwhm=1.0), gsparams=gsparams).drawImage(
            nx=16, ny=16, scale=0.396, method="auto").array.astype(np.float32)[None] * np.float32(1.0)
        ref += np.random.default_rng(noise_seed).normal(0.0, 2.0, size=ref.shape).astype(np.float32)
        assert np.array_equal(image, ref)


def test_sersic_zero_point_magnitudes_and_flux_scale():
    quiet = dict(image_size=32, r_half_range=(0.5, 0.6), n_range=(1.0, 1.5))
    base = SersicConfig(**quiet, mag_range=(20.0, 21.0), zero_point=31.4, flux_unit="nJy")
    images, params = Sersic(base).draw(range(3), seed=0)
    mags = 31.4 - 2.5 * np.log10(params[:, 6])
    assert ((mags >= 20) & (mags <= 21)).all()
    np.testing.assert_allclose(images.sum((1, 2, 3)), params[:, 6], rtol=0.02)  # the stamp holds ~ all the flux
    scaled, sparams = Sersic(SersicConfig(**quiet, mag_range=(20.0, 21.0), zero_point=31.4, flux_unit="adu",
                                          flux_scale=0.5)).draw(range(3), seed=0)
    np.testing.assert_allclose(sparams[:, 6], 0.5 * params[:, 6], rtol=1e-6)  # flux in the images' unit
    np.testing.assert_allclose(scaled, 0.5 * images, rtol=1e-5, atol=1e-6 * images.max())
    with pytest.raises(ValueError, match="mag_range needs zero_point"):
        SersicConfig(mag_range=(20.0, 21.0))
    with pytest.raises(ValueError, match="not given with flux_range"):
        SersicConfig(mag_range=(20.0, 21.0), zero_point=22.5, flux_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="flux_scale must be positive"):
        SersicConfig(flux_scale=0.0)
