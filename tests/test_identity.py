"""Error and quality maps (ivar, mask) and object identity (the objects table), from ingest to export."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
from conftest import galaxy_images
from test_cli import assert_user_error

import galaug
from galaug import DatasetError, GalaugError, open_dataset
from galaug.data import make_entry, objects
from galaug.data.ops import export_fits, split_dataset
from galaug.degrade import Pipeline
from galaug.degrade.dataset import degrade_dataset
from galaug.degrade.noise import GaussianNoise, GaussianNoiseConfig
from galaug.degrade.psf import GaussianPSF, GaussianPSFConfig, crop_to_flux
from galaug.kinds import Degradation
from galaug.mix import mix_datasets
from galaug.sources import ingest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _builtin_plugins_only(galaug_plugins):
    return galaug_plugins


def tan_header(n: int, scale_arcsec: float = 0.05, crval=(150.1, 2.2)) -> fits.Header:
    """A tangent-plane celestial WCS on an n x n grid, rotated a little so that CD is not diagonal."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    d = scale_arcsec / 3600
    return fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
                        "CRVAL1": crval[0], "CRVAL2": crval[1], "CRPIX1": n / 2 + 0.5, "CRPIX2": n / 2 - 3.25,
                        "CD1_1": -d * c, "CD1_2": d * s, "CD2_1": d * s, "CD2_2": d * c})


def hst_file(path, sci, err, dq, *, objid=None, err_name="ERR", dq_name="DQ", filt="F814W"):
    """An HST-like file: an empty primary with the filter, then SCI, ERR and DQ extensions."""
    primary = fits.PrimaryHDU()
    primary.header["FILTER1"], primary.header["FILTER2"] = "CLEAR1L", filt
    if objid is not None:
        primary.header["OBJID"] = objid
    hdus = [primary, fits.ImageHDU(sci, header=tan_header(sci.shape[-1]), name="SCI")]
    if err is not None:
        hdus.append(fits.ImageHDU(err, name=err_name))
    if dq is not None:
        hdus.append(fits.ImageHDU(dq, name=dq_name))
    fits.HDUList(hdus).writeto(path)
    return path


def same_rows(a: np.ndarray, b: np.ndarray) -> None:
    """Objects rows equal column by column (NaN equal to NaN)."""
    assert a.dtype == b.dtype == objects.ROW and a.shape == b.shape
    for name in objects.ROW.names:
        np.testing.assert_array_equal(a[name], b[name])


def nothing_written(folder, name="out.zarr") -> bool:
    return not (folder / name).exists() and not any(p.name.startswith(f".{name}.tmp") for p in folder.iterdir())


# -- FITS error and quality maps ------------------------------------------------------------------------------

def test_hst_err_becomes_ivar_and_dq_the_mask(galaug_plugins, tmp_path):
    src = tmp_path / "hst"
    src.mkdir()
    sci = galaxy_images(2, bands=1, size=20)[:, 0]
    err = np.full((20, 20), 0.5, np.float32)
    err[2, 3], err[4, 5], err[6, 7], err[8, 9] = 0.0, -1.0, np.nan, np.inf  # no usable error: ivar 0
    err[10, 11] = 2.0
    dq = np.zeros((20, 20), np.int16)
    dq[2, 2], dq[5, 5] = 4, -32768  # HST's int16 DQ: bit 2, and bit 15 read as two's complement
    for i in range(2):
        hst_file(src / f"j{i}_flt.fits", sci[i], err, dq, objid=f"gal{i}")
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr")
    assert res.exit_code == 0, res.output
    assert "stored ivar (inverse variance) and mask (bit flags) with every image" in res.output
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.bands == ("F814W",) and ds.has_ivar and ds.has_mask
    block = ds.read()
    expected = np.full((20, 20), 4.0, np.float32)
    expected[2, 3] = expected[4, 5] = expected[6, 7] = expected[8, 9] = 0
    expected[10, 11] = 0.25
    np.testing.assert_array_equal(block["ivar"][:, 0], [expected, expected])
    flags = np.zeros((20, 20), np.uint16)
    flags[2, 2], flags[5, 5] = 4, 32768
    np.testing.assert_array_equal(block["mask"][:, 0], [flags, flags])
    assert block["ivar"].dtype == np.float32 and block["mask"].dtype == np.uint16
    ids = block["objects"]["id"].tolist()
    assert ids == [b"gal0", b"gal1"]
    assert ds.object_tables.sources == [str(src / "j0_flt.fits"), str(src / "j1_flt.fits")]
    assert [ds.object_tables.hdus[h] for h in block["objects"]["hdu"]] == ["SCI,1", "SCI,1"]
    # --err "" and --dq "" leave the maps out
    res = galaug_plugins.invoke("ingest", src, tmp_path / "plain.zarr", "--err", "", "--dq", "")
    assert res.exit_code == 0, res.output
    plain = open_dataset(tmp_path / "plain.zarr")
    assert not plain.has_ivar and not plain.has_mask and "ivar" not in plain.fields


def test_err_and_dq_extension_names_are_options(galaug_plugins, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sci = galaxy_images(1, bands=1, size=16)[0, 0]
    hst_file(src / "a.fits", sci, np.full((16, 16), 0.25, np.float32), np.ones((16, 16), np.uint8),
             err_name="SIGMA", dq_name="FLAGS")
    # SIGMA and FLAGS are not known auxiliary names: without the options they would be bands
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", "--err", "sigma", "--dq", "FLAGS")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds.image_shape == (1, 16, 16)
    assert (ds.read()["ivar"] == 16).all() and (ds.read()["mask"] == 1).all()
    assert ds.provenance[-1]["config"]["err"] == "SIGMA"
    assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "x.zarr", "--sci", ""),
                      "--sci '': sci must be an EXTNAME")
    assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "x.zarr", "--err", "ERR,2"),
                      "--err 'ERR,2': err must be an EXTNAME")
    assert nothing_written(tmp_path, "x.zarr")


def test_files_with_and_without_error_maps_are_one_error_line(galaug_plugins, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sci = galaxy_images(2, bands=1, size=16)[:, 0]
    hst_file(src / "a.fits", sci[0], np.ones((16, 16), np.float32), None)
    hst_file(src / "b.fits", sci[1], None, None)
    assert_user_error(galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr"),
                      "a.fits has an error map (ivar) but b.fits has none", '--err="" --dq=""')
    assert nothing_written(tmp_path)
    with pytest.raises(GalaugError, match=r'leave the maps out \(err="" dq="" for FITS\)'):  # Python: the keys
        ingest(src, tmp_path / "out.zarr")
    res = galaug_plugins.invoke("ingest", src, tmp_path / "out.zarr", "--err", "")
    assert res.exit_code == 0, res.output


def test_crop_cuts_the_maps_and_moves_the_wcs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sci = galaxy_images(1, bands=1, size=24)[0, 0]
    err = np.arange(1, 24 * 24 + 1, dtype=np.float32).reshape(24, 24)
    hst_file(src / "a.fits", sci, err, (err % 7 == 0).astype(np.int16))
    ingest(src, tmp_path / "out.zarr", size=16, fit="crop")
    ds = open_dataset(tmp_path / "out.zarr")
    block = ds.read()
    np.testing.assert_array_equal(block["ivar"][0, 0], (1 / err[4:20, 4:20].astype(np.float64) ** 2).astype(np.float32))
    np.testing.assert_array_equal(block["mask"][0, 0], err[4:20, 4:20] % 7 == 0)
    frame = WCS(tan_header(24))
    stamp = objects.row_wcs(block["objects"][0], ds.object_tables)
    # a pixel of the stamp is the same place on the sky as its pixel in the file
    np.testing.assert_allclose(stamp.pixel_to_world_values(3.0, 11.0), frame.pixel_to_world_values(7.0, 15.0),
                               rtol=0, atol=1e-12)
    # RA/Dec: the centre of the stamp, where the file gives none
    np.testing.assert_allclose((block["objects"]["ra"][0], block["objects"]["dec"][0]),
                               frame.pixel_to_world_values(11.5, 11.5), rtol=0, atol=1e-12)


def test_resize_sums_the_variance_ors_the_flags_and_scales_the_wcs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sci = galaxy_images(1, bands=1, size=32)[0, 0]
    err = np.random.default_rng(4).uniform(0.5, 2.0, (32, 32)).astype(np.float32)
    dq = np.zeros((32, 32), np.int16)
    dq[5, 6], dq[4, 7] = 1, 16
    hst_file(src / "a.fits", sci, err, dq)
    ingest(src, tmp_path / "out.zarr", size=16, fit="resize")
    ds = open_dataset(tmp_path / "out.zarr")
    block = ds.read()
    variance = (err.astype(np.float64) ** 2).reshape(16, 2, 16, 2).sum(axis=(1, 3))  # 2 x 2 blocks summed
    np.testing.assert_allclose(block["ivar"][0, 0], 1 / variance, rtol=1e-6)
    assert block["mask"][0, 0, 2, 3] == 17 and np.count_nonzero(block["mask"]) == 1
    frame, stamp = WCS(tan_header(32)), objects.row_wcs(block["objects"][0], ds.object_tables)
    np.testing.assert_allclose(stamp.pixel_to_world_values(3.0, 9.0), frame.pixel_to_world_values(6.5, 18.5),
                               rtol=0, atol=1e-12)


def test_a_unit_conversion_scales_ivar_by_the_factor_squared(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    primary = fits.PrimaryHDU(np.ones((8, 8), np.float32))
    primary.header["BUNIT"] = "uJy"
    fits.HDUList([primary, fits.ImageHDU(np.full((8, 8), 0.5, np.float32), name="ERR")]).writeto(src / "a.fits")
    ingest(src, tmp_path / "out.zarr", to_unit="nJy")
    block = open_dataset(tmp_path / "out.zarr").read()
    assert (block["images"] == 1000).all() and (block["ivar"] == np.float32(1 / 500**2)).all()  # ERR 500 nJy


# -- the Multimodal Universe's HDF5 ---------------------------------------------------------------------------

def test_mmu_image_ivar_mask_ids_and_coordinates(galaug_plugins, tmp_path):
    images = galaxy_images(5, bands=3, size=16)
    ivar = np.random.default_rng(1).uniform(0.5, 2.0, images.shape).astype(np.float32)
    ivar[0, 1, 2, 3], ivar[1, 0, 0, 0] = -1.0, np.nan  # not a variance: unknown
    mask = np.zeros(images.shape, bool)
    mask[2, 2, 4, 4] = True
    with h5py.File(tmp_path / "mmu.hdf5", "w") as f:
        f["image_array"] = images
        f["image_band"] = np.array([[b"g", b"r", b"z"]] * 5)
        f["image_scale"] = np.full((5, 3), 0.262, np.float32)
        f["image_ivar"] = ivar
        f["image_mask"] = mask
        f["object_id"] = np.arange(39627700000001, 39627700000006)
        f["ra"] = np.linspace(10, 11, 5)
        f["dec"] = np.linspace(-5, -4, 5)
    res = galaug_plugins.invoke("ingest", tmp_path / "mmu.hdf5", tmp_path / "mmu.zarr", "--layout", "mmu")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "mmu.zarr")
    block = ds.read()
    expected = ivar.copy()
    expected[0, 1, 2, 3] = expected[1, 0, 0, 0] = 0
    np.testing.assert_array_equal(block["ivar"], expected)
    np.testing.assert_array_equal(block["mask"], mask.astype(np.uint16))
    rows = block["objects"]
    assert rows["id"].tolist() == [str(i).encode() for i in range(39627700000001, 39627700000006)]
    np.testing.assert_array_equal(rows["ra"], np.linspace(10, 11, 5))
    np.testing.assert_array_equal(rows["dec"], np.linspace(-5, -4, 5))
    assert (rows["frame"] == -1).all()  # no WCS in this layout
    summary = json.loads(galaug_plugins.invoke("info", tmp_path / "mmu.zarr", "--json").output)
    assert summary["ivar"] and summary["mask"]
    assert summary["objects"] == {"ids": 5, "coordinates": 5, "wcs": 0, "sources": 5}


# -- identity from frames to exported FITS --------------------------------------------------------------------

@pytest.fixture
def stamps(galaug_plugins, tmp_path):
    """64 x 64 stamps cut from a 300 x 300 frame with a celestial WCS at a catalogue's RA/Dec."""
    rng = np.random.default_rng(3)
    frame = rng.normal(0, 1, (300, 300)).astype(np.float32)
    header = tan_header(300, 0.2)
    err = np.full((300, 300), 2.0, np.float32)
    fits.HDUList([fits.PrimaryHDU(frame, header=header), fits.ImageHDU(err, name="ERR")]).writeto(
        tmp_path / "frame.fits")
    wcs = WCS(header)
    pixels = rng.uniform(40, 260, (8, 2))  # sub-pixel positions, at least 32 pixels inside
    ra, dec = wcs.pixel_to_world_values(pixels[:, 0], pixels[:, 1])
    (tmp_path / "cat.csv").write_text("id,ra,dec\n" + "".join(
        f"obj{k},{float(a)!r},{float(d)!r}\n" for k, (a, d) in enumerate(zip(ra, dec))))
    res = galaug_plugins.invoke("ingest", tmp_path / "frame.fits", tmp_path / "stamps.zarr", "--cutouts",
                                tmp_path / "cat.csv", "--size", "64")
    assert res.exit_code == 0, res.output
    return {"frame": frame, "wcs": wcs, "ra": np.asarray(ra), "dec": np.asarray(dec),
            "ds": open_dataset(tmp_path / "stamps.zarr")}


def test_stamps_carry_the_wcs_of_astropy_cutout2d(stamps):
    ds, wcs = stamps["ds"], stamps["wcs"]
    block = ds.read()
    assert (block["ivar"] == 0.25).all()  # the frame's ERR, cut with the stamps
    for k, row in enumerate(block["objects"]):
        assert row["id"] == f"obj{k}".encode() and (row["ra"], row["dec"]) == (stamps["ra"][k], stamps["dec"][k])
        x, y = wcs.world_to_pixel_values(stamps["ra"][k], stamps["dec"][k])
        cutout = Cutout2D(stamps["frame"], (round(float(x), 6), round(float(y), 6)), 64, wcs=wcs, mode="strict")
        np.testing.assert_array_equal(block["images"][k, 0], cutout.data)
        mine = objects.row_wcs(row, ds.object_tables)
        np.testing.assert_array_equal(mine.wcs.crpix, cutout.wcs.wcs.crpix)
        np.testing.assert_array_equal(mine.wcs.crval, cutout.wcs.wcs.crval)
        np.testing.assert_array_equal(mine.pixel_scale_matrix, cutout.wcs.pixel_scale_matrix)
        assert list(mine.wcs.ctype) == list(cutout.wcs.wcs.ctype)


def test_ids_and_wcs_survive_split_mix_and_export(galaug_plugins, stamps, tmp_path):
    ds = stamps["ds"]
    train, val = split_dataset(ds.path, tmp_path / "train.zarr", tmp_path / "val.zarr", val=0.25, seed=2)
    original = ds.read()["objects"]
    for part in (train, val):
        block = part.read()
        same_rows(block["objects"], original[block["index"]])
        assert part.object_tables.frames == ds.object_tables.frames and part.has_ivar
    generated = tmp_path / "gen.zarr"
    with galaug.create_dataset(generated, bands=ds.bands, image_size=64, pixel_scale=ds.pixel_scale,
                               flux_unit=ds.flux_unit, provenance=make_entry("generate", seed=0)) as w:
        w.append(galaxy_images(6, bands=1, size=64), origin=1)
    mix = mix_datasets(tmp_path / "mix.zarr", real_data=train.path, gen_data=generated, gen="6", seed=0,
                       allow_outliers=True)
    block, real = mix.read(), train.read()["objects"]
    is_real = block["origin"] == 0
    same_rows(block["objects"][is_real], real[block["index"][is_real]])
    assert (block["objects"]["id"][~is_real] == b"").all() and np.isnan(block["objects"]["ra"][~is_real]).all()
    assert (block["objects"]["frame"][~is_real] == -1).all()
    assert not mix.has_ivar and mix.provenance[-1]["notes"] == ["ivar not carried: only some of the samples have "
                                                                "them"]
    out = galaug_plugins.invoke("info", mix.path).output
    assert f"identity     6 of {len(mix)} images with coordinates (RA/Dec), 6 with an object id" in out
    # export: each FITS's WCS maps the object's position in the stamp back to its catalogue RA/Dec
    assert galaug_plugins.invoke("export", mix.path, tmp_path / "fits").exit_code == 0
    for row in np.flatnonzero(is_real):
        with fits.open(tmp_path / "fits" / f"{row:07d}.fits") as f:
            header = f[0].header
            k = int(header["OBJID"].removeprefix("obj"))
            assert header["RA_OBJ"] == stamps["ra"][k] and header["DEC_OBJ"] == stamps["dec"][k]
            exported = WCS(header).celestial
            x, y = stamps["wcs"].world_to_pixel_values(stamps["ra"][k], stamps["dec"][k])
            cutout = Cutout2D(stamps["frame"], (round(float(x), 6), round(float(y), 6)), 64, mode="strict")
            ra, dec = exported.pixel_to_world_values(*cutout.input_position_cutout)
            assert abs(ra - stamps["ra"][k]) * np.cos(np.radians(dec)) * 3600 < 1e-6  # arcsec: a micro-pixel
            assert abs(dec - stamps["dec"][k]) * 3600 < 1e-6
            assert header["GLSOURCE"].endswith("frame.fits") and np.array_equal(f[0].data, block["images"][row])
    for row in np.flatnonzero(~is_real):
        with fits.open(tmp_path / "fits" / f"{row:07d}.fits") as f:
            assert "OBJID" not in f[0].header and "CTYPE1" not in f[0].header


def test_export_writes_ivar_and_mask_extensions_that_ingest_reads_back(galaug_plugins, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sci = galaxy_images(3, bands=1, size=16)[:, 0]
    for i in range(3):
        dq = np.zeros((16, 16), np.int16)
        dq[i, i] = 8
        hst_file(src / f"f{i}.fits", sci[i], np.full((16, 16), 0.5 + i, np.float32), dq, objid=str(100 + i))
    ingest(src, tmp_path / "a.zarr")
    a = open_dataset(tmp_path / "a.zarr")
    export_fits(a.path, tmp_path / "fits")
    with fits.open(tmp_path / "fits" / "0000001.fits") as f:
        assert [h.name for h in f] == ["PRIMARY", "IVAR", "MASK"]
        np.testing.assert_array_equal(f["IVAR"].data[0], np.full((16, 16), 1 / 1.5**2, np.float32))
        assert f["MASK"].data[0, 1, 1] == 8 and f[0].header["OBJID"] == "101"
    ingest(tmp_path / "fits", tmp_path / "back.zarr")
    back = open_dataset(tmp_path / "back.zarr")
    for key in ("images", "ivar", "mask"):
        np.testing.assert_array_equal(back.read()[key], a.read()[key])
    rows, before = back.read()["objects"], a.read()["objects"]
    np.testing.assert_array_equal(rows["id"], before["id"])
    np.testing.assert_array_equal(rows["wcs"], before["wcs"])


# -- degrade ---------------------------------------------------------------------------------------------------

@pytest.fixture
def mapped(tmp_path):
    """A dataset with ivar, mask and a WCS per image, 2 images per chunk."""
    tables = objects.ObjectTables()
    images = galaxy_images(6, bands=2, size=16)
    ivar = np.random.default_rng(0).uniform(0.2, 4.0, images.shape).astype(np.float32)
    ivar[0, 0, 8, 8] = 0
    mask = np.zeros(images.shape, np.uint16)
    mask[1, 1, 5, 6] = 0b101
    wcs = WCS(tan_header(16))
    rows = np.concatenate([tables.row(objects.Identity(id=f"o{i}", source="f.fits", wcs=wcs))[0] for i in range(6)])
    with galaug.create_dataset(tmp_path / "mapped.zarr", bands=("g", "r"), image_size=16, ivar=True, mask=True,
                               objects=tables, pixel_scale="0.05 arcsec", provenance=make_entry("test"),
                               chunk_bytes=2 * 2 * 16 * 16 * 4) as w:
        w.append(images, ivar=ivar, mask=mask, objects=rows)
    return open_dataset(tmp_path / "mapped.zarr")


def test_noise_adds_its_variance_and_psf_convolves_it(mapped, tmp_path):
    out = degrade_dataset(mapped, tmp_path / "noisy.zarr", "noise:gaussian(std=[0.5, 2])", device="cpu")
    ivar, before = out.read()["ivar"], mapped.read()["ivar"]
    with np.errstate(divide="ignore"):
        expected = 1 / (1 / before.astype(np.float64) + np.array([0.25, 4.0])[:, None, None])
    np.testing.assert_allclose(ivar, expected.astype(np.float32), rtol=1e-6)
    assert ivar[0, 0, 8, 8] == 0  # unknown stays unknown
    np.testing.assert_array_equal(out.read()["mask"], mapped.read()["mask"])
    same_rows(out.read()["objects"], mapped.read()["objects"])  # the same grid
    assert out.provenance[-1]["carried"] == {"ivar": True, "mask": True, "wcs": True}
    psf = GaussianPSF(GaussianPSFConfig(sigma=1.0))
    blurred = degrade_dataset(mapped, tmp_path / "blurred.zarr", Pipeline([psf]), device="cpu")
    variance = np.where(before > 0, 1 / np.where(before > 0, before, 1).astype(np.float64), 0)
    kernel = crop_to_flux(psf.kernels(2, 16, 16))[0].numpy()  # (11, 11), the same for both bands
    half = kernel.shape[0] // 2
    padded = np.pad(variance[2, 1], half)
    direct = sum(kernel[i, j] ** 2 * padded[2 * half - i:2 * half - i + 16, 2 * half - j:2 * half - j + 16]
                 for i in range(kernel.shape[0]) for j in range(kernel.shape[1]))
    np.testing.assert_allclose(1 / blurred.read()["ivar"][2, 1], direct, rtol=1e-4)
    reach = blurred.read()["ivar"][0, 0]  # a pixel of unknown variance: unknown within the kernel's box
    assert (reach[8 - half:8 + half + 1, 8 - half:8 + half + 1] == 0).all()
    assert np.count_nonzero(reach == 0) == (2 * half + 1) ** 2


def test_resample_moves_the_wcs_and_ors_the_flags(mapped, tmp_path):
    out = degrade_dataset(mapped, tmp_path / "coarse.zarr", "resample(scale=2, keep_size=false)", device="cpu")
    assert out.image_shape == (2, 8, 8)
    block, before = out.read(), mapped.read()
    old = objects.row_wcs(before["objects"][0], mapped.object_tables)
    new = objects.row_wcs(block["objects"][0], out.object_tables)
    # new pixel (i, j) covers old pixels 2i..2i+1: its centre is old (2i + 0.5, 2j + 0.5)
    np.testing.assert_allclose(new.pixel_to_world_values(3.0, 5.0), old.pixel_to_world_values(6.5, 10.5),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(new.proj_plane_pixel_scales()[0].value, 2 * old.proj_plane_pixel_scales()[0].value)
    assert block["mask"][1, 1, 2, 3] == 0b101 and np.count_nonzero(block["mask"]) == 1
    variance = 1 / before["ivar"][3, 0].astype(np.float64)
    np.testing.assert_allclose(1 / block["ivar"][3, 0], variance.reshape(8, 2, 8, 2).sum(axis=(1, 3)), rtol=1e-5)
    assert block["ivar"][0, 0, 4, 4] == 0 and np.count_nonzero(block["ivar"][0, 0] == 0) == 1


@pytest.mark.slow
def test_two_processes_write_the_maps_and_objects_of_one(mapped, tmp_path):
    """--nproc 2: each rank writes its chunks of ivar, mask and the objects columns; rank 0 the tables."""
    spec = "resample(scale=2, keep_size=false)|noise:gaussian(std=1)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GALAUG_PROGRESS": "0"}
    for name, extra in (("one.zarr", []), ("two.zarr", ["--nproc", "2"])):
        run = subprocess.run([str(Path(sys.executable).with_name("galaug")), "degrade", str(mapped.path),
                              str(tmp_path / name), "--degrade", spec, "--device", "cpu", *extra],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
    one, two = open_dataset(tmp_path / "one.zarr"), open_dataset(tmp_path / "two.zarr")
    assert one.fields == two.fields and "objects" in two.fields and two.has_ivar and two.has_mask
    for field in ("images", "ivar", "mask", "index"):
        np.testing.assert_array_equal(one.read()[field], two.read()[field])
    same_rows(one.read()["objects"], two.read()["objects"])
    assert two.object_tables.sources == one.object_tables.sources == ["f.fits"]


class _Shift(Degradation):
    """A third-party degradation that moves pixels and says nothing about the maps or the grid."""

    name = "test-shift"

    @dataclasses.dataclass
    class Config:
        pass

    def apply(self, images, seeds):
        return torch.roll(images, 1, dims=-1)[..., 1:]


def test_steps_that_cannot_carry_the_maps_drop_them_with_a_note(mapped, tmp_path):
    pipeline = Pipeline([GaussianNoise(GaussianNoiseConfig(std=1.0)), _Shift()])
    out = degrade_dataset(mapped, tmp_path / "out.zarr", pipeline, device="cpu")
    assert not out.has_ivar and not out.has_mask
    assert out.provenance[-1]["notes"] == [
        "ivar dropped: step 2 (test:shift) does not say how it changes the variance",
        "mask dropped: step 2 (test:shift) does not say how it moves the flags",
        "WCS dropped: step 2 (test:shift) does not say where its pixels lie on its input's"]
    rows = out.read()["objects"]
    assert (rows["frame"] == -1).all() and rows["id"].tolist() == [f"o{i}".encode() for i in range(6)]


# -- the format ------------------------------------------------------------------------------------------------

def test_objects_rows_must_index_the_tables_and_attributes_are_checked(tmp_path):
    tables = objects.ObjectTables(sources=["a.fits"])
    rows = objects.empty_rows(2)
    rows["source"] = [0, 1]
    with pytest.raises(ValueError, match="objects source index 1 is not in the table of 1 sources"):
        with galaug.create_dataset(tmp_path / "x.zarr", bands=("g",), image_size=8, objects=tables,
                                   provenance=make_entry("test")) as w:
            w.append(np.zeros((2, 1, 8, 8)), objects=rows)
    with pytest.raises(ValueError, match="longer than 64 bytes"):
        tables.row(objects.Identity(id="x" * 65))
    rows["source"] = 0
    with galaug.create_dataset(tmp_path / "ok.zarr", bands=("g",), image_size=8, objects=tables,
                               provenance=make_entry("test")) as w:
        w.append(np.zeros((2, 1, 8, 8)), objects=rows)
    meta = json.loads((tmp_path / "ok.zarr" / "zarr.json").read_text())
    meta["attributes"]["galaug"]["objects"] = {"hdus": "SCI"}
    (tmp_path / "ok.zarr" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="attribute galaug.objects is"):
        open_dataset(tmp_path / "ok.zarr")


def test_datasets_without_maps_or_objects_say_so(galaug_plugins, make_dataset):
    ds = make_dataset(5)
    assert not (ds.has_ivar or ds.has_mask or ds.has_objects) and ds.object_tables is None
    out = galaug_plugins.invoke("info", ds.path).output
    assert "maps         -" in out and "identity     -" in out
    assert json.loads(galaug_plugins.invoke("info", ds.path, "--json").output)["objects"] is None
