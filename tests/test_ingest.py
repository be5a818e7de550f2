"""galaug ingest: FITS, HDF5 and NumPy files into a dataset; shapes, bands, units and bad input."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import time
from pathlib import Path

import astropy.units as u
import click
import h5py
import numpy as np
import pytest
from astropy.io import fits
from conftest import galaxy_images
from test_cli import assert_user_error

from galaug import GalaugError, open_dataset
from galaug.cli.ingest import ingest_cmd
from galaug.kinds import Reader, Simulator
from galaug.sources import ingest
from galaug.sources import readers as readers_module
from galaug.sources.ingest import resample_flux

DOCS = Path(__file__).resolve().parents[1] / "docs"


class TinySimulator(Simulator):
    """A simulator, to check that ingest refuses it."""

    name = "tiny"


@pytest.fixture(autouse=True)
def _builtin_plugins_only(galaug_plugins):
    """Readers are looked up in a manager that holds the built-in plugins only."""
    return galaug_plugins


def wcs_cards(scale_arcsec: float, n: int = 16) -> dict:
    """A tangent-plane WCS with square pixels of ``scale_arcsec``."""
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
            "CRVAL1": 150.1, "CRVAL2": 2.2, "CRPIX1": n / 2, "CRPIX2": n / 2,
            "CD1_1": -scale_arcsec / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale_arcsec / 3600}


def write_fits(path: Path, data: np.ndarray, **cards) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = fits.Header()
    for k, v in cards.items():
        hdr[k] = v
    fits.PrimaryHDU(data=data, header=hdr).writeto(path)
    return path


def fits_folder(folder: Path, images: np.ndarray, **cards) -> Path:
    """One FITS file per image of ``images`` (N, H, W) or (N, C, H, W), named 00.fits, 01.fits..."""
    for i, im in enumerate(images):
        write_fits(folder / f"{i:02d}.fits", im, **cards)
    return folder


def nothing_written(tmp_path: Path, name: str = "out.zarr") -> bool:
    return not (tmp_path / name).exists() and not any(p.name.startswith(f".{name}.tmp") for p in tmp_path.iterdir())


# -- FITS ------------------------------------------------------------------------------

def test_fits_folder_headers_give_band_flux_unit_and_wcs_pixel_scale(tmp_path):
    images = galaxy_images(6, bands=1, size=20)[:, 0]
    src = fits_folder(tmp_path / "in", images, FILTER="r", BUNIT="nJy", **wcs_cards(0.2, 20))
    (src / "README.txt").write_text("not an image")
    report = ingest(src, tmp_path / "out.zarr")
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("r",) and ds.flux_unit == "nJy"
    assert ds.pixel_scale.unit == u.arcsec and ds.pixel_scale.value == pytest.approx(0.2, rel=1e-9)
    block = ds.read()
    assert np.array_equal(block["images"][:, 0], images)
    assert block["index"].tolist() == list(range(6)) and (block["origin"] == 0).all()
    assert report.n_written == 6 and report.n_files == 6 and report.skipped == []
    entry = ds.provenance[-1]
    assert entry["step"] == "ingest" and entry["plugin"] == "source:fits" and entry["source"] == str(src)
    assert entry["config"] == {"band_axis": "auto", "hdu": "", "sci": "SCI", "err": "ERR", "dq": "DQ"}
    assert entry["n_written"] == 6


def test_cube_with_the_band_axis_last(tmp_path):
    cubes = galaxy_images(3, bands=4, size=24)  # (N, C, H, W)
    src = fits_folder(tmp_path / "in", cubes.transpose(0, 2, 3, 1))  # (H, W, C) in numpy order
    ingest(src, tmp_path / "out.zarr", bands="u,g,r,i")
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.image_shape == (4, 24, 24) and ds.bands == ("u", "g", "r", "i")
    assert np.array_equal(ds.read()["images"], cubes)


def test_ambiguous_cube_asks_for_band_axis(tmp_path):
    src = fits_folder(tmp_path / "in", np.ones((1, 8, 12, 8), np.float32))
    with pytest.raises(GalaugError, match="cannot tell the band axis.*set band_axis=first or band_axis=last"):
        ingest(src, tmp_path / "out.zarr")
    assert nothing_written(tmp_path)
    report = ingest(src, tmp_path / "out.zarr", config={"band_axis": "first"})
    assert report.image_shape == (8, 12, 8)


def test_multi_extension_files_give_one_band_per_image_hdu(tmp_path):
    images = galaxy_images(3, bands=3, size=16)
    for i, im in enumerate(images):
        table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.arange(3.0))])
        hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(plane, name=f"SCI{b}") for b, plane in enumerate(im)] + [table]
        for hdu, band in zip(hdus[1:], "gri"):
            hdu.header["FILTER"] = band
        fits.HDUList(hdus).writeto(tmp_path / f"m{i}.fits")
    ingest(tmp_path, tmp_path / "out.zarr")
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("g", "r", "i")
    assert np.array_equal(ds.read()["images"], images)


def test_extension_names_serve_as_bands_and_gzip_is_read(tmp_path):
    plane = galaxy_images(1, bands=2, size=16)[0]
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane[0], name="Y"), fits.ImageHDU(plane[1], name="J")]
                 ).writeto(tmp_path / "a.fits")
    with open(tmp_path / "a.fits", "rb") as f, gzip.open(tmp_path / "b.fits.gz", "wb") as g:
        g.write(f.read())
    report = ingest(tmp_path / "b.fits.gz", tmp_path / "out.zarr")
    assert report.bands == ("Y", "J")
    assert np.array_equal(open_dataset(tmp_path / "out.zarr").read()["images"][0], plane)


def test_scaled_big_endian_integers_are_read(tmp_path):
    """int16 with BSCALE/BZERO: astropy cannot memory-map it; the values come back scaled."""
    values = galaxy_images(2, bands=1, size=16)[:, 0].astype(np.float64)
    for i, v in enumerate(values):
        hdu = fits.PrimaryHDU(v.copy())  # scale() changes the array it was given
        hdu.header["FILTER"] = "F606W"
        hdu.scale("int16", bscale=0.01, bzero=100.0)
        hdu.writeto(tmp_path / f"s{i}.fits")
    with fits.open(tmp_path / "s0.fits") as f:
        assert f[0].header["BITPIX"] == 16 and f[0].header["BSCALE"] == 0.01
    report = ingest(tmp_path, tmp_path / "out.zarr")
    assert report.bands == ("F606W",)
    np.testing.assert_allclose(open_dataset(tmp_path / "out.zarr").read()["images"][:, 0], values, atol=0.006)


def hst_file(path: Path, sci: np.ndarray, *, chips: int = 1, **primary_cards) -> Path:
    """An HST-like file: an empty primary HDU with the filter, then SCI, ERR and DQ per chip."""
    hdus = [fits.PrimaryHDU()]
    for k, v in primary_cards.items():
        hdus[0].header[k] = v
    for chip in range(1, chips + 1):
        hdus += [fits.ImageHDU(sci * chip, name="SCI", ver=chip),
                 fits.ImageHDU(np.full_like(sci, 0.5), name="ERR", ver=chip),
                 fits.ImageHDU(np.zeros(sci.shape, np.int16), name="DQ", ver=chip)]
    fits.HDUList(hdus).writeto(path)
    return path


def test_hst_science_error_and_quality_extensions_give_one_band(galaug_plugins, tmp_path):
    sci = galaxy_images(1, bands=1, size=16)[0, 0]
    src = tmp_path / "hst"
    src.mkdir()
    for i in range(3):
        hst_file(src / f"j{i}_flt.fits", sci + i, INSTRUME="ACS", FILTER1="CLEAR1L", FILTER2="F814W")
    report = ingest(src, tmp_path / "out.zarr")
    assert report.bands == ("F814W",) and report.image_shape == (1, 16, 16)  # not SCI, ERR and DQ as 3 bands
    np.testing.assert_array_equal(open_dataset(tmp_path / "out.zarr").read()["images"][:, 0],
                                  [sci, sci + 1, sci + 2])
    res = galaug_plugins.invoke("ingest", src, tmp_path / "named.zarr", "--bands", "F814W")
    assert res.exit_code == 0, res.output
    res = galaug_plugins.invoke("ingest", src, tmp_path / "err.zarr", "--hdu", "ERR")  # any extension on request
    assert res.exit_code == 0, res.output
    assert (open_dataset(tmp_path / "err.zarr").read()["images"] == 0.5).all()
    report = ingest(src / "j0_flt.fits", tmp_path / "index.zarr", config={"hdu": "1"})
    assert np.array_equal(open_dataset(tmp_path / "index.zarr").read()["images"][0, 0], sci)
    assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "x.zarr", "--hdu", "WHT"),
                      "no image HDU 'WHT' (image HDUs: SCI,1, ERR,1, DQ,1)")
    assert not (tmp_path / "x.zarr").exists()


def test_two_chips_of_one_extension_name_are_not_bands(tmp_path):
    sci = galaxy_images(1, bands=1, size=16)[0, 0]
    hst_file(tmp_path / "wfc.fits", sci, chips=2, FILTER1="F475W", FILTER2="CLEAR2L")
    with pytest.raises(GalaugError, match=r"2 SCI extensions \(SCI,1, SCI,2\) name no distinct bands: "
                                          r"choose one with hdu=SCI,1"):
        ingest(tmp_path / "wfc.fits", tmp_path / "out.zarr")
    report = ingest(tmp_path / "wfc.fits", tmp_path / "out.zarr", config={"hdu": "SCI,2"})
    assert report.bands == ("F475W",)
    assert np.array_equal(open_dataset(tmp_path / "out.zarr").read()["images"][0, 0], sci * 2)


def test_band_names_from_wfpc2_and_bands_keywords(tmp_path):
    write_fits(tmp_path / "w" / "u2.fits", np.ones((8, 8), np.float32), FILTNAM1="F555W")
    assert ingest(tmp_path / "w", tmp_path / "w.zarr").bands == ("F555W",)
    write_fits(tmp_path / "c" / "cube.fits", np.ones((3, 8, 8), np.float32), BANDS="g,r,i")
    assert ingest(tmp_path / "c", tmp_path / "c.zarr").bands == ("g", "r", "i")


def test_mixed_pixel_scales_are_an_error_naming_both(galaug_plugins, tmp_path):
    images = galaxy_images(2, bands=1, size=16)[:, 0]
    write_fits(tmp_path / "in" / "a.fits", images[0], **wcs_cards(0.2))
    write_fits(tmp_path / "in" / "b.fits", images[1], **wcs_cards(0.263))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "out.zarr"),
                      "mixed pixel scales: a.fits says 0.2 arcsec, b.fits says 0.263 arcsec")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    report = ingest(tmp_path / "in", tmp_path / "out.zarr", pixel_scale="0.2 arcsec")  # the user says so
    assert report.pixel_scale == 0.2 * u.arcsec


def test_resample_brings_mixed_scales_to_one_conserving_flux(galaug_plugins, tmp_path):
    images = galaxy_images(2, bands=1, size=32)[:, 0]
    write_fits(tmp_path / "in" / "a.fits", images[0], **wcs_cards(0.2, 32))
    write_fits(tmp_path / "in" / "b.fits", images[1], **wcs_cards(0.1, 32))
    res = galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "out.zarr", "--pixel-scale", "0.2 arcsec",
                                "--resample", "--size", "16", "--fit", "crop")
    assert res.exit_code == 0, res.output
    assert "note: resampled to 0.2 arcsec: 1 from 0.2 arcsec, 1 from 0.1 arcsec" in res.output
    ds = open_dataset(tmp_path / "out.zarr")
    out = ds.read()["images"][:, 0]
    assert ds.pixel_scale == 0.2 * u.arcsec and ds.provenance[-1]["options"]["resample"] is True
    assert ds.provenance[-1]["resampled_from"] == {"0.2 arcsec": 1, "0.1 arcsec": 1}
    np.testing.assert_array_equal(out[0], images[0][8:24, 8:24])  # already at 0.2": only cropped
    np.testing.assert_allclose(out[1].sum(), images[1].sum(), rtol=1e-5)  # 32 px at 0.1" = 16 px at 0.2"
    np.testing.assert_allclose(out[1], images[1].reshape(16, 2, 16, 2).sum((1, 3)), rtol=1e-5, atol=1e-4)
    write_fits(tmp_path / "in" / "c.fits", images[1])  # declares no scale
    with pytest.raises(GalaugError, match="c.fits: declares no pixel scale; resample needs the scale of every file"):
        ingest(tmp_path / "in", tmp_path / "o2.zarr", pixel_scale="0.2 arcsec", resample=True, size=16, fit="crop")
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "o3.zarr", "--resample"),
                      "--resample needs --pixel-scale")


def test_an_image_of_another_size_is_never_cropped_silently(galaug_plugins, tmp_path):
    write_fits(tmp_path / "in" / "frame.fits", np.ones((40, 36), np.float32))
    res = galaug_plugins.invoke("ingest", tmp_path / "in", tmp_path / "out.zarr", "--size", "32")
    assert_user_error(res, "frame.fits: 40x36 pixels, not 32x32",
                      '--fit="crop" keeps the centre 32x32 pixels, --fit="resize" resamples')
    with pytest.raises(GalaugError, match='fit="crop" keeps the centre 32x32'):
        ingest(tmp_path / "in", tmp_path / "out.zarr", size=32)
    assert nothing_written(tmp_path)
    assert ingest(tmp_path / "in", tmp_path / "out.zarr", size=32, fit="crop").image_shape == (1, 32, 32)


def test_per_band_files_are_grouped_into_one_image_per_object(galaug_plugins, tmp_path):
    cubes = galaxy_images(7, bands=4, size=16)  # 7 objects in g, r, i, z
    src = tmp_path / "bands"
    for k, cube in enumerate(cubes):
        for band, plane in zip("griz", cube):
            if (k, band) != (5, "i"):  # object 5 lacks its i file
                write_fits(src / f"gal_{k:03d}_{band}.fits", plane, FILTER=band, **wcs_cards(0.2, 16))
    before = sorted(p.name for p in tmp_path.iterdir())
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", "--group", "{id}_{band}.fits")
    assert_user_error(res, "1 of 7 objects cannot be read (first: gal_005: no file in band(s) i (has g, r, z))")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", "--group", "{id}_{band}.fits",
                                "--on-bad", "skip")
    assert res.exit_code == 0, res.output
    assert "gal_005: no file in band(s) i" in res.output
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("g", "r", "i", "z")  # by wavelength, not alphabetically
    assert ds.pixel_scale.value == pytest.approx(0.2)
    kept = [0, 1, 2, 3, 4, 6]
    np.testing.assert_array_equal(ds.read()["images"], cubes[kept])
    assert ds.provenance[-1]["options"]["group"] == "{id}_{band}.fits"
    report = ingest(src, tmp_path / "gr.zarr", group="{id}_{band}.fits", bands="r,g")  # a subset, in this order
    np.testing.assert_array_equal(open_dataset(tmp_path / "gr.zarr").read()["images"], cubes[:, [1, 0]])
    assert report.n_written == 7
    with pytest.raises(GalaugError, match=r"group '\{id\}-\{band\}.fit' names none of the 27 files"):
        ingest(src, tmp_path / "none.zarr", group="{id}-{band}.fit")
    with pytest.raises(GalaugError, match=r"must hold \{id\} and \{band\} once each"):
        ingest(src, tmp_path / "none.zarr", group="{band}.fits")


def frame_with_galaxies(n: int = 300, seed: int = 0) -> np.ndarray:
    """A frame of noise with a few bright blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    frame = rng.normal(0, 1, (n, n))
    for x, y in ((50, 60), (150, 140), (220, 250), (290, 150)):
        frame += 100 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18)
    return frame.astype(np.float32)


def test_stamps_cut_from_frames_at_catalogue_positions(galaug_plugins, tmp_path):
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    g, r = frame_with_galaxies(seed=0), frame_with_galaxies(seed=1)
    cards = wcs_cards(0.2, 300)
    write_fits(tmp_path / "frames" / "f_g.fits", g, FILTER="g", BUNIT="nJy", **cards)
    # the r frame is offset by (7, -4) pixels on the sky grid: its WCS says so, and the stamps follow it
    r_cards = {**cards, "CRPIX1": cards["CRPIX1"] + 7, "CRPIX2": cards["CRPIX2"] - 4}
    r_shifted = np.roll(r, (-4, 7), axis=(0, 1))
    write_fits(tmp_path / "frames" / "f_r.fits", r_shifted, FILTER="r", BUNIT="nJy", **r_cards)
    wcs = WCS(fits.Header(cards))
    xy = [(50, 60), (150, 140), (220, 250), (290, 150)]  # the last is 10 pixels from the edge
    ra, dec = wcs.pixel_to_world_values(np.array([p[0] for p in xy], float), np.array([p[1] for p in xy], float))
    (tmp_path / "cat.csv").write_text("id,ra,dec\n" + "".join(f"gal{k},{float(a)!r},{float(d)!r}\n"
                                                              for k, (a, d) in enumerate(zip(ra, dec))))
    res = galaug_plugins.invoke("ingest", tmp_path / "frames", tmp_path / "out.zarr", "--cutouts",
                                tmp_path / "cat.csv", "--size", "32")
    assert res.exit_code == 0, res.output
    assert "note: skipped 1 objects too close to a frame's edge for a 32x32 stamp" in res.output
    assert "gal3: within 16 pixels of the edge of f_g.fits" in res.output
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("g", "r") and ds.flux_unit == "nJy" and ds.pixel_scale.value == pytest.approx(0.2)
    stamps = ds.read()["images"]
    assert stamps.shape == (3, 2, 32, 32)
    for k, (x, y) in enumerate(xy[:3]):  # catalogue order; each band cut where the object is on that frame
        np.testing.assert_array_equal(stamps[k, 0], Cutout2D(g, (x, y), 32, mode="strict").data)
        np.testing.assert_array_equal(stamps[k, 1], Cutout2D(r, (x, y), 32, mode="strict").data)
    (tmp_path / "xy.csv").write_text("x,y\n150,140\n50,60\n")  # pixels: one frame's grid
    report = ingest(tmp_path / "frames" / "f_g.fits", tmp_path / "xy.zarr", cutouts=tmp_path / "xy.csv", size=16)
    np.testing.assert_array_equal(open_dataset(tmp_path / "xy.zarr").read()["images"][:, 0],
                                  [Cutout2D(g, (150, 140), 16).data, Cutout2D(g, (50, 60), 16).data])
    assert report.n_written == 2


def test_cutouts_bad_input_is_one_line(galaug_plugins, tmp_path):
    write_fits(tmp_path / "nowcs" / "frame.fits", frame_with_galaxies())
    (tmp_path / "sky.csv").write_text("ra,dec\n150.1,2.2\n")
    (tmp_path / "bad.csv").write_text("name,mag\nx,20\n")
    for args, message in [
        ([tmp_path / "nowcs", "--cutouts", tmp_path / "sky.csv", "--size", "32"],
         "frame.fits: has no celestial WCS, so the RA/Dec of sky.csv cannot be placed on it"),
        ([tmp_path / "nowcs", "--cutouts", tmp_path / "bad.csv", "--size", "32"],
         "bad.csv: a catalogue needs the columns ra,dec (degrees) or x,y (pixels); it has name, mag"),
        ([tmp_path / "nowcs", "--cutouts", tmp_path / "sky.csv"], "--cutouts needs --size"),
    ]:
        assert_user_error(galaug_plugins.invoke("ingest", args[0], tmp_path / "out.zarr", *args[1:]), message)
    assert not (tmp_path / "out.zarr").exists()


def test_band_order_by_wavelength():
    from galaug.sources.ingest import band_order

    assert band_order(["z", "i", "g", "r", "F814W", "F435W", "J", "u", "other"]) == \
        ["u", "g", "r", "i", "z", "J", "F435W", "F814W", "other"]


def test_export_then_ingest_gives_identical_pixels_bands_and_units(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(9, pixel_scale=0.168 * u.arcsec, flux_unit="nJy")
    assert galaug_plugins.invoke("export", ds.path, tmp_path / "fits").exit_code == 0
    res = galaug_plugins.invoke("ingest", tmp_path / "fits", tmp_path / "back.zarr")
    assert res.exit_code == 0, res.output
    back = open_dataset(tmp_path / "back.zarr")
    assert np.array_equal(back.read()["images"], ds.read()["images"])
    assert back.bands == ds.bands and back.flux_unit == "nJy"
    assert back.pixel_scale == ds.pixel_scale


def test_hubble_deep_field_cutouts(tmp_path):
    """Real data: the HDF RGB image (skimage) cut into FITS stamps, then ingested with a centre crop."""
    from skimage.data import hubble_deep_field

    rgb = hubble_deep_field().astype(np.float32)  # (872, 1000, 3)
    corners = [(y, x) for y in range(0, 800, 160) for x in range(0, 900, 180)]
    for k, (y, x) in enumerate(corners):
        cube = np.moveaxis(rgb[y:y + 72, x:x + 72], -1, 0)  # (3, 72, 72)
        write_fits(tmp_path / "hdf" / f"hdf{k:02d}.fits", cube, BAND1="R", BAND2="G", BAND3="B",
                   BUNIT="adu", **wcs_cards(0.04, 72))
    report = ingest(tmp_path / "hdf", tmp_path / "out.zarr", size=64, fit="crop")
    ds = open_dataset(tmp_path / "out.zarr")
    assert report.n_written == len(corners) == len(ds) and ds.bands == ("R", "G", "B")
    assert ds.pixel_scale.value == pytest.approx(0.04) and ds.flux_unit == "adu"
    y, x = corners[7]
    assert np.array_equal(ds.read()["images"][7], np.moveaxis(rgb[y + 4:y + 68, x + 4:x + 68], -1, 0))
    assert ds.read()["images"].std() > 5  # real structure, not a constant


# -- NaN / Inf -------------------------------------------------------------------------

@pytest.fixture
def nan_folder(tmp_path):
    images = galaxy_images(6, bands=1, size=16)[:, 0]
    images[1, 3, 4] = np.nan
    images[4, :2, 0] = [np.inf, -np.inf]
    return fits_folder(tmp_path / "in", images), images


def test_nan_rejected_by_default_and_nothing_written(nan_folder, tmp_path):
    src, _ = nan_folder
    with pytest.raises(GalaugError) as err:
        ingest(src, tmp_path / "out.zarr")
    assert str(err.value) == ("2 of 6 images have NaN/Inf pixels (first: 01.fits, 04.fits); "
                              'use on_bad="fill" or on_bad="skip"')
    assert nothing_written(tmp_path)


def test_nan_filled_and_counted(nan_folder, tmp_path):
    src, images = nan_folder
    report = ingest(src, tmp_path / "out.zarr", on_bad="fill", fill_value=-1)
    assert report.n_filled_images == 2 and report.n_filled_pixels == 3 and report.n_written == 6
    out = open_dataset(tmp_path / "out.zarr").read()["images"][:, 0]
    assert out[1, 3, 4] == -1 and out[4, 0, 0] == -1 and out[4, 1, 0] == -1
    assert np.array_equal(out[np.isfinite(images)], images[np.isfinite(images)])
    assert any("filled 3 NaN/Inf pixels in 2 images" in line for line in report.lines())


def test_nan_skipped_and_listed(nan_folder, tmp_path):
    src, images = nan_folder
    report = ingest(src, tmp_path / "out.zarr", on_bad="skip")
    assert report.skipped == [("01.fits", "1 NaN/Inf pixels"), ("04.fits", "2 NaN/Inf pixels")]
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.read()["index"].tolist() == [0, 2, 3, 5]  # the image's number in the input
    assert np.array_equal(ds.read()["images"][:, 0], images[[0, 2, 3, 5]])
    assert ds.provenance[-1]["skipped"] == [["01.fits", "1 NaN/Inf pixels"], ["04.fits", "2 NaN/Inf pixels"]]


def test_nan_outside_the_crop_does_not_count(tmp_path):
    image = np.ones((20, 20), np.float32)
    image[0, 0] = np.nan
    write_fits(tmp_path / "a.fits", image)
    assert ingest(tmp_path / "a.fits", tmp_path / "out.zarr", size=16, fit="crop").n_written == 1


# -- broken files ----------------------------------------------------------------------

@pytest.fixture
def broken_folder(tmp_path):
    src = fits_folder(tmp_path / "in", galaxy_images(3, bands=1, size=16)[:, 0])
    whole = (src / "01.fits").read_bytes()
    (src / "01.fits").write_bytes(whole[:2880 + 500])  # header and part of the data
    (src / "03.fits").write_bytes(b"")
    return src


def test_truncated_and_empty_files_are_rejected_by_name(broken_folder, tmp_path):
    with pytest.raises(GalaugError) as err:
        ingest(broken_folder, tmp_path / "out.zarr")
    msg = str(err.value)
    assert msg.startswith("2 of 4 files cannot be read (first: 01.fits: truncated: the header claims 16 x 16 pixels")
    assert "03.fits: not a readable FITS file" in msg and msg.endswith('use on_bad="skip" to leave them out')
    assert nothing_written(tmp_path)
    with pytest.raises(GalaugError, match="2 of 4 files cannot be read"):  # fill does not apply to them
        ingest(broken_folder, tmp_path / "out.zarr", on_bad="fill")
    assert nothing_written(tmp_path)


def test_truncated_and_empty_files_are_skipped_with_reasons(broken_folder, tmp_path):
    report = ingest(broken_folder, tmp_path / "out.zarr", on_bad="skip")
    assert report.n_written == 2 and [s[0] for s in report.skipped] == ["01.fits", "03.fits"]
    assert "truncated" in report.skipped[0][1] and "Empty or corrupt FITS file" in report.skipped[1][1]
    assert open_dataset(tmp_path / "out.zarr").provenance[-1]["n_skipped"] == 2


def test_header_claiming_a_trillion_pixels_is_refused_without_reading(tmp_path):
    hdr = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 10**6), ("NAXIS2", 10**6)])
    (tmp_path / "huge.fits").write_bytes(hdr.tostring().encode() + bytes(2880))
    start = time.perf_counter()
    with pytest.raises(GalaugError, match=r"huge.fits: truncated: the header claims 1000000 x 1000000 pixels"):
        ingest(tmp_path / "huge.fits", tmp_path / "out.zarr")
    assert time.perf_counter() - start < 2
    with gzip.open(tmp_path / "huge.fits.gz", "wb") as g:
        g.write((tmp_path / "huge.fits").read_bytes())
    with pytest.raises(GalaugError, match="more than a gzip file of"):
        ingest(tmp_path / "huge.fits.gz", tmp_path / "out.zarr")


def test_band_count_mismatch(tmp_path):
    src = fits_folder(tmp_path / "in", galaxy_images(3, bands=3, size=16))
    write_fits(src / "99.fits", galaxy_images(1, bands=2, size=16)[0])
    with pytest.raises(GalaugError, match=r"1 of 4 images do not fit \(first: 99.fits: 2 bands, expected 3\)"):
        ingest(src, tmp_path / "out.zarr")
    assert nothing_written(tmp_path)
    assert ingest(src, tmp_path / "out.zarr", on_bad="skip").skipped == [("99.fits", "2 bands, expected 3")]


def test_bands_option_must_match_the_images(tmp_path):
    src = fits_folder(tmp_path / "in", galaxy_images(2, bands=3, size=16))
    with pytest.raises(GalaugError, match=r"2 of 2 images do not fit \(first: 00.fits: 3 bands, expected 2 "
                                          r"\(bands g,r given\)"):
        ingest(src, tmp_path / "out.zarr", bands="g,r")
    assert nothing_written(tmp_path)


def test_band_names_that_disagree(tmp_path):
    cubes = galaxy_images(2, bands=2, size=16)
    write_fits(tmp_path / "in" / "a.fits", cubes[0], BAND1="g", BAND2="r")
    write_fits(tmp_path / "in" / "b.fits", cubes[1], BAND1="r", BAND2="i")
    with pytest.raises(GalaugError, match="b.fits: bands r,i differ from g,r of a.fits"):
        ingest(tmp_path / "in", tmp_path / "out.zarr")
    assert ingest(tmp_path / "in", tmp_path / "out.zarr", bands=["x", "y"]).bands == ("x", "y")


def test_units_that_disagree_are_unknown_with_a_note(tmp_path):
    images = galaxy_images(2, bands=1, size=16)[:, 0]
    write_fits(tmp_path / "in" / "a.fits", images[0], BUNIT="nJy", PIXSCALE=0.2)
    write_fits(tmp_path / "in" / "b.fits", images[1], BUNIT="adu")
    report = ingest(tmp_path / "in", tmp_path / "out.zarr")
    assert report.pixel_scale is None and report.flux_unit is None
    assert "pixel scale unknown: b.fits declares none" in report.notes[0]
    assert "flux unit unknown: a.fits says nJy, b.fits says adu" in report.notes[1]
    report = ingest(tmp_path / "in", tmp_path / "o2.zarr", pixel_scale="0.5 kpc", flux_unit="electron")
    ds = open_dataset(tmp_path / "o2.zarr")
    assert ds.pixel_scale == 0.5 * u.kpc and ds.flux_unit == "electron" and report.notes == []


# -- shapes ----------------------------------------------------------------------------

def test_centre_crop_and_too_small(tmp_path):
    images = galaxy_images(2, bands=1, size=21)[:, 0]
    src = fits_folder(tmp_path / "in", images)
    write_fits(src / "small.fits", np.ones((16, 30), np.float32))
    with pytest.raises(GalaugError, match=r"small.fits: smaller than 17x17 \(16x30\)"):
        ingest(src, tmp_path / "out.zarr", size=17, fit="crop")
    report = ingest(src, tmp_path / "out.zarr", size=17, fit="crop", on_bad="skip")
    assert report.n_written == 2 and report.image_shape == (1, 17, 17)
    assert np.array_equal(open_dataset(tmp_path / "out.zarr").read()["images"][:, 0], images[:, 2:19, 2:19])


def test_shapes_must_agree_without_size(tmp_path):
    src = fits_folder(tmp_path / "in", galaxy_images(2, bands=1, size=16)[:, 0])
    write_fits(src / "z.fits", np.ones((16, 20), np.float32))
    with pytest.raises(GalaugError, match=r"z.fits: 16x20 pixels, expected 16x16 \(crop them to one size\)"):
        ingest(src, tmp_path / "out.zarr")


def test_resize_keeps_the_total_flux_and_scales_the_pixel_scale(tmp_path):
    images = galaxy_images(3, bands=2, size=32)
    src = fits_folder(tmp_path / "in", images, BAND1="g", BAND2="r", PIXSCALE=0.2, PIXUNIT="arcsec")
    report = ingest(src, tmp_path / "out.zarr", size=16, fit="resize")
    ds = open_dataset(tmp_path / "out.zarr")
    out = ds.read()["images"]
    assert out.shape == (3, 2, 16, 16)
    np.testing.assert_allclose(out.sum((2, 3)), images.sum((2, 3)), rtol=1e-5)
    np.testing.assert_allclose(out, images.reshape(3, 2, 16, 2, 16, 2).sum((3, 5)), rtol=1e-5, atol=1e-3)
    assert ds.pixel_scale.value == pytest.approx(0.4) and report.pixel_scale.value == pytest.approx(0.4)
    assert ds.provenance[-1]["resample_factor"] == 2.0


def test_resample_flux_by_a_non_integer_factor_both_ways():
    image = galaxy_images(1, bands=2, size=30)[0]
    for size in (7, 45):
        out = resample_flux(image, size)
        assert out.shape == (2, size, size)
        np.testing.assert_allclose(out.sum((1, 2)), image.sum((1, 2)), rtol=1e-5)


def test_resize_needs_one_input_shape(tmp_path):
    src = fits_folder(tmp_path / "in", galaxy_images(2, bands=1, size=32)[:, 0])
    write_fits(src / "z.fits", np.ones((24, 24), np.float32))
    report = ingest(src, tmp_path / "out.zarr", size=16, fit="resize", on_bad="skip")
    assert report.skipped == [("z.fits", "24x24 pixels, expected 32x32 (resizing needs one input shape)")]
    write_fits(tmp_path / "wide.fits", np.ones((24, 32), np.float32))
    with pytest.raises(GalaugError, match='wide.fits: fit="resize" needs square images, got 24x32'):
        ingest(tmp_path / "wide.fits", tmp_path / "out2.zarr", size=16, fit="resize")
    assert nothing_written(tmp_path, "out2.zarr")


# -- HDF5 and NumPy --------------------------------------------------------------------

def test_hdf5_channels_last_read_in_slices_with_attributes(tmp_path, monkeypatch):
    images = galaxy_images(11, bands=3, size=16)
    with h5py.File(tmp_path / "cat.h5", "w") as f:
        ds = f.create_dataset("cutouts/img", data=images.transpose(0, 2, 3, 1), chunks=(4, 16, 16, 3))
        ds.attrs["bands"] = ["g", "r", "z"]
        ds.attrs["pixel_scale"] = "0.262 arcsec"
        f.attrs["flux_unit"] = "nanomaggy"
        f.create_dataset("labels", data=np.arange(11))
    monkeypatch.setattr(readers_module, "READ_BYTES", 16 * 16 * 3 * 4 * 4)  # four images a read
    with pytest.raises(GalaugError, match=r"no dataset 'images' \(datasets: cutouts/img, labels\)"):
        ingest(tmp_path / "cat.h5", tmp_path / "out.zarr")
    report = ingest(tmp_path / "cat.h5", tmp_path / "out.zarr", config={"dataset": "cutouts/img"})
    ds = open_dataset(tmp_path / "out.zarr")
    assert np.array_equal(ds.read()["images"], images) and ds.bands == ("g", "r", "z")
    assert ds.pixel_scale == 0.262 * u.arcsec and ds.flux_unit == "nmgy"
    assert report.reader == "hdf5" and report.n_files == 1 and report.n_written == 11


def test_survey_hdf5_layouts_mmu_and_galaxiesml(galaug_plugins, tmp_path):
    images = galaxy_images(6, bands=3, size=16)
    with h5py.File(tmp_path / "mmu.hdf5", "w") as f:  # the Multimodal Universe's layout
        f["image_array"] = images
        f["image_band"] = np.array([[b"g", b"r", b"z"]] * 6)
        f["image_scale"] = np.full((6, 3), 0.262, np.float32)
        f["image_ivar"] = np.ones_like(images)
        f["image_psf_fwhm"] = np.full((6, 3), 1.3, np.float32)
        f["object_id"] = np.arange(1000, 1006)
    res = galaug_plugins.invoke("ingest", tmp_path / "mmu.hdf5", tmp_path / "mmu.zarr", "--layout", "mmu")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "mmu.zarr")
    assert ds.bands == ("g", "r", "z") and ds.pixel_scale.value == pytest.approx(0.262)
    np.testing.assert_array_equal(ds.read()["images"], images)
    five = galaxy_images(4, bands=5, size=16)
    with h5py.File(tmp_path / "gml.h5", "w") as f:  # GalaxiesML's layout
        f["image"] = five
        f["specz_redshift"] = np.linspace(0.1, 0.4, 4)
        f["object_id"] = np.arange(4)
    report = ingest(tmp_path / "gml.h5", tmp_path / "gml.zarr", config={"layout": "galaxiesml"},
                    pixel_scale="0.168 arcsec")
    assert report.bands == ("g", "r", "i", "z", "y") and report.pixel_scale.value == pytest.approx(0.168)
    np.testing.assert_array_equal(open_dataset(tmp_path / "gml.zarr").read()["images"], five)
    with h5py.File(tmp_path / "mixed.hdf5", "w") as f:
        f["image_array"] = images
        f["image_band"] = np.array([[b"g", b"r", b"z"]] * 6)
        f["image_scale"] = np.repeat([[0.262], [0.2]], 3, axis=0).repeat(3, axis=1)
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "mixed.hdf5", tmp_path / "x.zarr", "--layout", "mmu"),
                      "image_scale ranges from 0.2 to 0.262 arcsec")
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "gml.h5", tmp_path / "x.zarr", "--layout", "mmu"),
                      "no image_array or image_flux member, so not a mmu file")
    assert not (tmp_path / "x.zarr").exists()


def test_hdf5_single_band_stack(tmp_path):
    images = galaxy_images(4, bands=1, size=16)[:, 0].astype(np.float64)
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["images"] = images
    ingest(tmp_path / "a.hdf5", tmp_path / "out.zarr")
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("b0",) and np.array_equal(ds.read()["images"][:, 0], images.astype(np.float32))


def test_npy_memory_mapped_and_npz_by_key(tmp_path):
    images = galaxy_images(5, bands=2, size=16)
    np.save(tmp_path / "a.npy", images)
    ingest(tmp_path / "a.npy", tmp_path / "a.zarr")
    assert np.array_equal(open_dataset(tmp_path / "a.zarr").read()["images"], images)
    np.savez_compressed(tmp_path / "b.npz", stamps=images.transpose(0, 2, 3, 1), ids=np.arange(5))
    with pytest.raises(GalaugError, match=r"2 arrays \(stamps, ids\) and none called 'images'; set key=NAME"):
        ingest(tmp_path / "b.npz", tmp_path / "b.zarr")
    ingest(tmp_path / "b.npz", tmp_path / "b.zarr", config={"key": "stamps"}, bands="g,r")
    assert np.array_equal(open_dataset(tmp_path / "b.zarr").read()["images"], images)


def test_npz_streams_rows_and_refuses_a_truncated_member(tmp_path, monkeypatch):
    images = galaxy_images(7, bands=1, size=16)[:, 0]
    np.savez(tmp_path / "c.npz", images=images)
    monkeypatch.setattr(readers_module, "READ_BYTES", 16 * 16 * 4 * 3)
    ingest(tmp_path / "c.npz", tmp_path / "c.zarr")
    assert np.array_equal(open_dataset(tmp_path / "c.zarr").read()["images"][:, 0], images)
    np.save(tmp_path / "t.npy", images)
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:1000])
    with pytest.raises(GalaugError, match="1 of 1 files cannot be read"):
        ingest(tmp_path / "t.npy", tmp_path / "t.zarr")


def test_mixed_formats_in_a_folder_need_format(tmp_path):
    images = galaxy_images(2, bands=1, size=16)
    src = fits_folder(tmp_path / "in", images[:, 0])
    np.save(src / "more.npy", images)
    with pytest.raises(GalaugError, match=r"holds files of several formats \(fits: 2, npy: 1\)"):
        ingest(src, tmp_path / "out.zarr")
    assert ingest(src, tmp_path / "out.zarr", format="npy").n_written == 2
    assert ingest(str(src / "*.fits"), tmp_path / "glob.zarr").n_files == 2


class TextReader(Reader):
    """Reads whitespace-separated tables of pixel values, one 2-d image per file."""

    name = "text"
    patterns = ("*.txt",)

    def read(self, path):
        yield path.name, np.loadtxt(path, ndmin=2), None


def test_a_plugin_reader_is_found_by_file_name(galaug_plugins, tmp_path):
    galaug_plugins.plugin(galaug_register=lambda register: register.source(TextReader))
    image = galaxy_images(1, bands=1, size=16)[0, 0]
    np.savetxt(tmp_path / "a.txt", image)
    report = ingest(tmp_path, tmp_path / "out.zarr", pixel_scale=0.2 * u.arcsec)
    assert report.reader == "text" and report.bands == ("b0",) and report.flux_unit is None
    np.testing.assert_allclose(open_dataset(tmp_path / "out.zarr").read()["images"][0, 0], image, rtol=1e-6)


# -- the command line ------------------------------------------------------------------

def test_cli_prints_the_report(galaug_plugins, nan_folder, tmp_path):
    src, _ = nan_folder
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", "--on-bad", "skip", "--size", "16",
                                "--bands", "i", "--pixel-scale", "0.2 arcsec", "--flux-unit", "nJy")
    assert res.exit_code == 0, res.output
    assert f"wrote {tmp_path / 'out.zarr'}: 4 images (1 x 16 x 16) from 6 files (fits)" in res.output
    assert "bands i; pixel scale 0.2 arcsec / pixel; flux unit nJy" in res.output
    assert "skipped 2:\n  01.fits: 1 NaN/Inf pixels\n  04.fits: 2 NaN/Inf pixels" in res.output


def test_cli_reader_options_from_set_and_config(galaug_plugins, tmp_path):
    src = fits_folder(tmp_path / "in", np.ones((2, 8, 12, 8), np.float32))
    res = galaug_plugins.invoke("ingest", src, tmp_path / "a.zarr", "--set", "band_axis=last")
    assert res.exit_code == 0, res.output
    assert open_dataset(tmp_path / "a.zarr").image_shape == (8, 8, 12)
    (tmp_path / "c.toml").write_text('band_axis = "first"\n')
    assert galaug_plugins.invoke("ingest", src, tmp_path / "b.zarr", "--config", tmp_path / "c.toml").exit_code == 0
    assert open_dataset(tmp_path / "b.zarr").image_shape == (8, 12, 8)
    assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "c.zarr", "--set", "band_axes=last"),
                      "unknown config key 'band_axes'", "did you mean 'band_axis'")


@pytest.mark.parametrize("case", ["no files", "unknown format", "simulator", "truncated", "band mismatch",
                                  "bands length", "output exists", "bad pixel scale"])
def test_cli_bad_input_is_one_line_and_writes_nothing(galaug_plugins, make_dataset, broken_folder, tmp_path, case):
    good = fits_folder(tmp_path / "good", galaxy_images(2, bands=3, size=16))
    out = tmp_path / "out.zarr"
    if case == "output exists":
        out = make_dataset(2, name="exists.zarr").path
    args, fragments = {
        "no files": ([tmp_path / "good" / "*.hdf5"], ["no files match"]),
        "unknown format": ([good, "--format", "tiff"], ["unknown source plugin 'tiff'", "fits, hdf5, npy"]),
        "simulator": ([good, "--format", "tiny"], ["'tiny' is a simulator, not a file reader"]),
        "truncated": ([broken_folder], ["01.fits: truncated", 'use --on-bad="skip"']),
        "band mismatch": ([good, "--on-bad", "fill"], []),
        "bands length": ([good, "--bands", "g,r"], ["3 bands, expected 2 (bands g,r given)"]),
        "output exists": ([good], ["output exists", "--overwrite"]),
        "bad pixel scale": ([good, "--pixel-scale", "0.2"], ["pixel scale 0.2 must be an angle or a length"]),
    }[case]
    if case == "band mismatch":
        write_fits(good / "x.fits", np.ones((16, 16), np.float32))
        fragments = ["x.fits: 1 bands, expected 3"]
    if case == "simulator":
        galaug_plugins.plugin(galaug_register=lambda register: register.source(TinySimulator))
    before = sorted(p.name for p in tmp_path.iterdir())
    res = galaug_plugins.invoke("ingest", args[0], out, *args[1:])
    assert_user_error(res, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "output exists":
        assert len(open_dataset(out)) == 2


def test_errors_name_parameters_in_python_and_options_on_the_command_line(galaug_plugins, tmp_path):
    good = fits_folder(tmp_path / "good", galaxy_images(2, bands=3, size=16))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("not an image")
    cases = [  # (src, Python keywords, CLI options, the message from Python, the message on the command line)
        (tmp_path / "text", {}, [], "choose one with format", "choose one with --format"),
        (good, {"bands": "g,g,r"}, ["--bands", "g,g,r"], "bands must be distinct", "--bands must be distinct"),
        (good, {"fit": "resize"}, ["--fit", "resize"], 'fit="resize" needs size', '--fit="resize" needs --size'),
        (good, {"fill_value": float("inf")}, ["--fill-value", "inf"], "fill_value must be a finite 32-bit float",
         "--fill-value must be a finite 32-bit float"),
        (good, {"size": 8}, ["--size", "8"], 'fit="crop" keeps the centre 8x8 pixels',
         '--fit="crop" keeps the centre 8x8 pixels'),
    ]
    for src, keywords, options, in_python, on_the_command_line in cases:
        with pytest.raises(GalaugError) as exc:
            ingest(src, tmp_path / "out.zarr", **keywords)
        assert in_python in str(exc.value) and "--" not in str(exc.value), str(exc.value)
        assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", *options), on_the_command_line)
    assert not (tmp_path / "out.zarr").exists()


def test_listing_plugins_imports_no_reader_module():
    code = ("import sys; from galaug.pluginmanager import PluginManager; "
            "m = PluginManager(autoload=False); "
            "print(m.registry.entry('source', 'fits').status, m.registry.entry('source', 'hdf5').status, "
            "'h5py' in sys.modules, 'galaug.sources.readers' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["lazy", "lazy", "False", "False"], res.stderr


def test_every_ingest_option_is_in_the_reference():
    text = (DOCS / "cli.md").read_text()
    match = re.search(r"^## galaug ingest\b(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, "docs/cli.md has no section for galaug ingest"
    for param in ingest_cmd.params:
        if isinstance(param, click.Option) and param.name != "threads":  # --threads: in the vocabulary
            assert f"`{max(param.opts, key=len)}" in match.group(1), max(param.opts, key=len)
