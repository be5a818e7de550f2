"""galaug ingest --detect (stamps at the sources photutils finds on frames) and --group with a CSV manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import Cutout2D
from conftest import galaxy_images
from test_cli import assert_user_error
from test_ingest import frame_with_galaxies, nothing_written, wcs_cards, write_fits

from galaug import GalaugError, open_dataset
from galaug.sources import ingest
from galaug.sources.cutouts import load_frames
from galaug.sources.detect import detect
from galaug.sources.readers import FitsReader


@pytest.fixture(autouse=True)
def _builtin_plugins_only(galaug_plugins):
    """Readers are looked up in a manager that holds the built-in plugins only."""
    return galaug_plugins


def blobs(n: int, objects: list[tuple[float, float, float]], *, seed: int) -> np.ndarray:
    """An n x n frame of unit Gaussian noise plus a Gaussian (sigma 3 pixels) of peak ``a`` at each (x, y, a)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    frame = rng.normal(0, 1, (n, n))
    for x, y, a in objects:
        frame += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18)
    return frame.astype(np.float32)


#: (x, y, peak in g): the third is 12 pixels from the bottom edge, too close for a 32 x 32 stamp
OBJECTS = [(60.3, 70.6, 40.0), (150.0, 140.0, 25.0), (150.0, 12.0, 50.0), (230.4, 251.7, 60.0), (100.6, 210.2, 15.0)]


def test_detect_finds_the_sources_and_cuts_the_stamps_cutout2d_cuts(galaug_plugins, tmp_path):
    g = blobs(300, OBJECTS, seed=0)
    r = blobs(300, [(x, y, 0.8 * a) for x, y, a in OBJECTS], seed=1)
    cards = wcs_cards(0.2, 300)
    write_fits(tmp_path / "frames" / "f_g.fits", g, FILTER="g", BUNIT="nJy", **cards)
    # r on another grid: shifted by (7, -4) pixels, as its WCS says; detection resamples it onto g's grid
    r_cards = {**cards, "CRPIX1": cards["CRPIX1"] + 7, "CRPIX2": cards["CRPIX2"] - 4}
    write_fits(tmp_path / "frames" / "f_r.fits", np.roll(r, (-4, 7), axis=(0, 1)), FILTER="r", BUNIT="nJy",
               **r_cards)

    res = galaug_plugins.invoke("ingest", tmp_path / "frames", tmp_path / "out.zarr", "--detect", "--size", "32")
    assert res.exit_code == 0, res.output
    assert ("detected 5 sources (1.5 x the background RMS, at least 10 pixels) on the sum of g, r on the grid of "
            "f_g.fits (f_r.fits resampled through the WCS); kept 4") in res.output
    assert "src2: within 16 pixels of the edge of f_g.fits" in res.output  # the second brightest, at the edge

    found = detect(load_frames(FitsReader(), sorted((tmp_path / "frames").glob("*.fits"))))
    truth = sorted(OBJECTS, key=lambda o: -o[2])  # brightest first
    assert found.ids == ["src1", "src2", "src3", "src4", "src5"] and found.n_detected == 5
    for x, y, (tx, ty, _) in zip(found.x, found.y, truth):
        assert np.hypot(x - tx, y - ty) < 1, (x, y, tx, ty)
    ra, dec = found.frames[0].wcs.pixel_to_world_values(found.x, found.y)
    np.testing.assert_allclose(found.ra, ra, atol=1e-9)
    np.testing.assert_allclose(found.dec, dec, atol=1e-9)

    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("g", "r") and ds.flux_unit == "nJy" and ds.pixel_scale.value == pytest.approx(0.2)
    stamps = ds.read()["images"]
    assert stamps.shape == (4, 2, 32, 32)
    kept = [0, 2, 3, 4]  # src2 was at the edge
    for stamp, k in zip(stamps, kept):
        position = (found.x[k], found.y[k])
        np.testing.assert_array_equal(stamp[0], Cutout2D(g, position, 32, mode="strict").data)
        np.testing.assert_array_equal(stamp[1], Cutout2D(r, position, 32, mode="strict").data)
    entry = ds.provenance[-1]
    assert entry["options"]["detect"] == {"threshold": 1.5, "npixels": 10, "deblend": False}
    detection = entry["detection"]
    assert (detection["n_detected"], detection["n_kept"], detection["kernel_fwhm"], detection["box_size"]) == \
        (5, 4, 3.0, 64)


def test_detect_on_a_frame_without_wcs_cuts_at_its_pixels(tmp_path):
    frame = frame_with_galaxies()  # blobs at (50, 60), (150, 140), (220, 250) and (290, 150), by the edge
    frame[:40, :40] = np.nan  # a blank corner, as frames have: masked
    write_fits(tmp_path / "frame.fits", frame)
    report = ingest(tmp_path / "frame.fits", tmp_path / "out.zarr", detect=True, size=16, detect_npixels=5)
    assert (report.detection["n_detected"], report.detection["npixels"], report.n_written) == (4, 5, 4)
    found = detect(load_frames(FitsReader(), [tmp_path / "frame.fits"]), npixels=5)
    assert found.ra is None and found.catalogue().kind == "pixel"
    stamps = open_dataset(tmp_path / "out.zarr").read()["images"][:, 0]
    for stamp, x, y in zip(stamps, found.x, found.y):
        np.testing.assert_array_equal(stamp, Cutout2D(frame, (x, y), 16, mode="strict").data)
    assert sorted((round(x), round(y)) for x, y in zip(found.x, found.y)) == \
        [(50, 60), (150, 140), (220, 250), (290, 150)]


def test_deblending_splits_two_touching_sources(tmp_path):
    write_fits(tmp_path / "pair.fits", blobs(120, [(55.0, 60.0, 40.0), (65.0, 60.0, 30.0)], seed=2))
    frames = load_frames(FitsReader(), [tmp_path / "pair.fits"])
    assert detect(frames).n_detected == 1
    split = detect(frames, deblend=True)
    assert split.n_detected == 2
    assert np.allclose(np.c_[split.x, split.y], [[55, 60], [65, 60]], atol=1)  # the brighter first


def test_detect_bad_input_is_one_line_and_writes_nothing(galaug_plugins, tmp_path, monkeypatch):
    write_fits(tmp_path / "noise" / "frame.fits", blobs(200, [], seed=3))
    write_fits(tmp_path / "two" / "a.fits", blobs(200, [], seed=3), FILTER="g")
    write_fits(tmp_path / "two" / "b.fits", blobs(150, [], seed=3), FILTER="r")
    (tmp_path / "cat.csv").write_text("x,y\n50,50\n")
    for args, message in [
        ([tmp_path / "noise", "--detect", "--size", "32"],
         "no sources detected on frame.fits at --detect-threshold 1.5 (x the background RMS) with at least 10 "
         "connected pixels; lower --detect-threshold or --detect-npixels"),
        ([tmp_path / "two", "--detect", "--size", "32"],
         "b.fits (150x150) is not on the pixel grid of a.fits (200x200) and a.fits has no celestial WCS"),
        ([tmp_path / "noise", "--detect"], "--detect needs --size"),
        ([tmp_path / "noise", "--detect", "--size", "32", "--cutouts", tmp_path / "cat.csv"],
         "--detect finds the objects, --cutouts reads them from a catalogue; give one"),
        ([tmp_path / "noise", "--size", "32", "--detect-npixels", "5"], "--detect-npixels is an option of --detect"),
    ]:
        assert_user_error(galaug_plugins.invoke("ingest", args[0], tmp_path / "out.zarr", *args[1:]), message)
        assert nothing_written(tmp_path)
    with pytest.raises(GalaugError, match="^detect_npixels must be a positive whole number of pixels, got 0$"):
        ingest(tmp_path / "noise", tmp_path / "out.zarr", detect=True, size=32, detect_npixels=0)
    monkeypatch.setitem(sys.modules, "photutils", None)  # as if it were not installed
    assert_user_error(galaug_plugins.invoke("ingest", tmp_path / "noise", tmp_path / "out.zarr", "--detect",
                                            "--size", "32"),
                      "source detection (--detect) needs the package 'photutils'", "pip install 'galaug[astro]'")
    assert nothing_written(tmp_path)


# -- --group with a CSV manifest ----------------------------------------------------------

def band_files(folder: Path, cubes: np.ndarray, bands: str = "gri") -> None:
    for k, cube in enumerate(cubes):
        for band, plane in zip(bands, cube):
            write_fits(folder / f"gal_{k:03d}_{band}.fits", plane, FILTER=band, **wcs_cards(0.2, 16))


def test_a_manifest_groups_the_files_as_the_pattern_does(galaug_plugins, tmp_path):
    cubes = galaxy_images(5, bands=3, size=16)
    band_files(tmp_path / "bands", cubes)
    (tmp_path / "lists").mkdir()
    rows = [f"obj{k},{band},../bands/gal_{k:03d}_{band}.fits,x" for k in range(5) for band in "rig"]  # any order
    (tmp_path / "lists" / "manifest.csv").write_text("ID,band,path,notes\n" + "\n".join(rows) + "\n")
    res = galaug_plugins.invoke("ingest", tmp_path / "bands", tmp_path / "manifest.zarr", "--group",
                                tmp_path / "lists" / "manifest.csv")
    assert res.exit_code == 0, res.output
    pattern = ingest(tmp_path / "bands", tmp_path / "pattern.zarr", group="{id}_{band}.fits")
    assert pattern.n_written == 5
    a, b = open_dataset(tmp_path / "manifest.zarr"), open_dataset(tmp_path / "pattern.zarr")
    assert a.bands == b.bands == ("g", "r", "i") and a.pixel_scale == b.pixel_scale
    for field in ("images", "index", "origin"):
        np.testing.assert_array_equal(a.read()[field], b.read()[field])
    np.testing.assert_array_equal(a.read()["images"], cubes)
    assert a.provenance[-1]["options"]["group"] == str(tmp_path / "lists" / "manifest.csv")

    # an object that lacks a band is reported as in the pattern mode; --bands picks and orders
    (tmp_path / "lists" / "short.csv").write_text("id,band,path\n" + "\n".join(
        r.rsplit(",", 1)[0] for r in rows if r != "obj3,i,../bands/gal_003_i.fits,x") + "\n")
    res = galaug_plugins.invoke("ingest", tmp_path / "bands", tmp_path / "out.zarr", "--group",
                                tmp_path / "lists" / "short.csv", "--bands", "r,i", "--on-bad", "skip")
    assert res.exit_code == 0, res.output
    assert "obj3: no file in band(s) i (has g, r)" in res.output
    assert "gal_003_i.fits: not listed in the manifest short.csv" in res.output
    np.testing.assert_array_equal(open_dataset(tmp_path / "out.zarr").read()["images"], cubes[[0, 1, 2, 4]][:, [1, 2]])


def test_a_bad_manifest_is_one_line_and_writes_nothing(galaug_plugins, tmp_path):
    band_files(tmp_path / "bands", galaxy_images(2, bands=2, size=16), bands="gr")
    good = "id,band,path\na,g,bands/gal_000_g.fits\na,r,bands/gal_000_r.fits\nb,g,bands/gal_001_g.fits\n"
    cases = {
        "columns.csv": ("id,filter,file\na,g,bands/gal_000_g.fits\n",
                        "a manifest needs the columns id, band, path; it lacks band, path (has id, filter, file)"),
        "missing.csv": (good + "b,r,bands/gal_001_R.fits\nc,g,nowhere.fits\n",
                        "missing.csv: 2 of 5 files do not exist (first: row 5: bands/gal_001_R.fits; row 6: "
                        "nowhere.fits; paths are relative to the manifest's folder)"),
        "twice.csv": (good + "a,g,bands/gal_001_r.fits\n",
                      "twice.csv: rows 2 and 5: two files of object 'a' in band 'g'"),
        "empty.csv": ("id,band,path\na,,bands/gal_000_g.fits\n", "empty.csv: row 2: no band"),
        "unlisted.csv": (good, "do not fit (first: gal_001_r.fits: not listed in the manifest unlisted.csv)"),
        "absent.csv": (None, "absent.csv: not a readable CSV manifest"),
    }
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        res = galaug_plugins.invoke("ingest", tmp_path / "bands", tmp_path / "out.zarr", "--group", tmp_path / name)
        assert_user_error(res, message)
        assert nothing_written(tmp_path)
