"""Writing datasets: chunks of small members, sizing, codecs, durability, old datasets, clean by reference."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from zarr.codecs import ZstdCodec

import galaug
from galaug import DatasetError, make_entry, open_dataset
from galaug.cli import make_cli
from galaug.cli.options import CODEC_NAMES
from galaug.data import CODECS
from galaug.data import writer as writer_module
from galaug.data.ops import split_dataset
from galaug.degrade import degrade_dataset

from conftest import galaxy_images

PIPE = "psf:gaussian(sigma=1.5)|noise:gaussian(std=2)"


def _write(path, images, *, batch, **kw):
    params = np.stack([images.sum((1, 2, 3)), np.arange(len(images))], 1).astype(np.float32)
    with galaug.create_dataset(path, bands="gri", image_size=images.shape[-1], param_names=["flux", "i"],
                               provenance=make_entry("test"), **kw) as w:
        for s in range(0, len(images), batch):
            w.append(images[s:s + batch], params=params[s:s + batch], origin=np.arange(s, s + len(images[s:s + batch])) % 2)
    return open_dataset(path)


def _files(path, member):
    return sorted(p for p in (path / member).rglob("*") if p.is_file() and p.name != "zarr.json")


def test_small_members_are_few_files_and_images_stay_in_two_megabyte_chunks(tmp_path):
    images = galaxy_images(1000, bands=3, size=16)  # 3 KiB a row: 682 rows per image chunk
    ds = _write(tmp_path / "a.zarr", images, batch=100)
    rows = ds.chunk_rows
    assert len(_files(ds.path, "images")) == -(-1000 // rows) == 2
    for member in ("origin", "index", "params"):
        assert len(_files(ds.path, member)) == 1, member
        assert ds.array(member).chunks[0] % rows == 0
    got = ds.read(300, 900)
    assert np.array_equal(got["images"], images[300:900])
    assert np.array_equal(got["index"], np.arange(300, 900)) and np.array_equal(got["origin"], np.arange(300, 900) % 2)


@pytest.mark.parametrize("batch", [1, 7, 682, 1000])
def test_the_bytes_written_do_not_depend_on_the_batches(tmp_path, batch):
    images = galaxy_images(1000, bands=3, size=16)
    ds = _write(tmp_path / "a.zarr", images, batch=batch)
    reference = _write(tmp_path / "b.zarr", images, batch=333)
    for member in ("images", "origin", "index", "params"):
        mine, theirs = _files(ds.path, member), _files(reference.path, member)
        assert [p.relative_to(ds.path) for p in mine] == [p.relative_to(reference.path) for p in theirs]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(mine, theirs)), member


def test_a_writer_told_its_length_sizes_once_and_checks_the_count(tmp_path, monkeypatch):
    images = galaxy_images(40, bands=3, size=16)
    resizes = []
    monkeypatch.setattr(zarr.Array, "resize", lambda self, shape: resizes.append(shape))
    ds = _write(tmp_path / "a.zarr", images, batch=9, n=40)
    assert resizes == [] and len(ds) == 40 and np.array_equal(ds.read()["images"], images)
    with pytest.raises(ValueError, match="41 rows appended to a dataset of 40"):
        _write(tmp_path / "b.zarr", np.concatenate([images, images[:1]]), batch=41, n=40)
    with pytest.raises(ValueError, match="39 rows were written to a dataset of 40"):
        _write(tmp_path / "c.zarr", images[:39], batch=9, n=40)
    assert not (tmp_path / "b.zarr").exists() and not (tmp_path / "c.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_without_a_length_the_arrays_grow_by_doubling_not_at_every_chunk(tmp_path, monkeypatch):
    calls = []
    real = zarr.Array.resize
    monkeypatch.setattr(zarr.Array, "resize", lambda self, shape: (calls.append(shape), real(self, shape)))
    images = galaxy_images(2000, bands=1, size=8)  # 256 B a row: 8192 rows per chunk of images
    with galaug.create_dataset(tmp_path / "a.zarr", bands="g", image_size=8, provenance=make_entry("t"),
                               chunk_bytes=256 * 16) as w:  # 16 rows per chunk: 125 chunks
        for s in range(0, 2000, 16):
            w.append(images[s:s + 16, :1])
    per_member = len(calls) / 3
    assert per_member <= 10, calls  # log2(125) growths and the final trim, not 125 resizes
    assert np.array_equal(open_dataset(tmp_path / "a.zarr").read()["images"], images[:, :1])


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_codec_round_trips_and_a_damaged_chunk_is_an_error(tmp_path, codec):
    images = galaxy_images(50, bands=3, size=16)
    ds = _write(tmp_path / "a.zarr", images, batch=20, codec=codec)
    assert np.array_equal(ds.read()["images"].view(np.uint32), images.view(np.uint32))
    meta = json.loads((ds.path / "images" / "zarr.json").read_text())
    assert meta["codecs"][-1]["name"] == ("zstd" if codec == "zstd" else "crc32c")
    chunk = _files(ds.path, "images")[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="member 'images' is damaged: chunk file images/c/0/0/0/0 .* cannot be decoded"):
        open_dataset(ds.path).read()


def test_the_cli_codec_choices_are_the_codecs_and_an_unknown_one_is_refused(tmp_path):
    assert CODEC_NAMES == tuple(CODECS)
    with pytest.raises(ValueError, match="unknown codec 'lzma'"):
        _write(tmp_path / "a.zarr", galaxy_images(5), batch=5, codec="lzma")
    result = CliRunner().invoke(make_cli(), ["simulate", "sersic", str(tmp_path / "s.zarr"), "-n", "8",
                                             "--codec", "blosc-zstd", "--set", "image_size=16"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "s.zarr" / "images" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][1:] == ["blosc", "crc32c"]
    galaug.data.set_default_codec("raw")


def test_close_flushes_every_file_and_folder_to_disk_before_the_rename(tmp_path, monkeypatch):
    synced, renamed = [], []
    real_fsync, real_commit = os.fsync, writer_module.commit_path
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    monkeypatch.setattr(writer_module, "commit_path",
                        lambda tmp, final, **kw: (renamed.append(len(synced)), real_commit(tmp, final, **kw)))
    ds = _write(tmp_path / "a.zarr", galaxy_images(30), batch=30)
    before = synced[: renamed[0]]
    files = [p for p in ds.path.rglob("*") if p.is_file()]
    tmp_names = {p.split(".tmp-", 1)[1].partition("/")[2] for p in before if ".a.zarr.tmp-" in p}
    assert {str(p.relative_to(ds.path)) for p in files} <= tmp_names  # every file, before the rename
    assert str(tmp_path) in synced[renamed[0]:]  # and the folder that received the rename, after it


def _old_dataset(path, images):
    """A dataset as galaug 0.1 wrote it (format 1): zstd chunks, every member in the rows of images."""
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    n, rows = len(images), 8
    members = {"images": images, "origin": np.zeros(n, np.uint8), "index": np.arange(n, dtype=np.int64),
               "clean": images * 2}
    for name, data in members.items():
        arr = group.create_array(name, shape=data.shape, chunks=(rows, *data.shape[1:]), dtype=data.dtype,
                                 compressors=ZstdCodec(level=0, checksum=True), config={"write_empty_chunks": True})
        arr[:] = data
    group.update_attributes({"galaug": {
        "format_version": 1, "id": "0" * 32, "n": n, "bands": ["g", "r", "i"], "pixel_scale": None,
        "flux_unit": None, "origin_names": ["real", "generated"], "params": None, "latent_dim": None,
        "z_dim": None, "clean_shape": list(images.shape[1:]), "provenance": [{"step": "old"}],
        "every_chunk_stored": True}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def test_a_dataset_of_format_1_still_opens_reads_and_degrades(tmp_path):
    images = galaxy_images(20, bands=3, size=16)
    _old_dataset(tmp_path / "old.zarr", images)
    ds = open_dataset(tmp_path / "old.zarr")
    assert np.array_equal(ds.read()["images"], images) and np.array_equal(ds.read()["clean"], images * 2)
    out = degrade_dataset(ds, tmp_path / "d.zarr", PIPE, seed=1, device="cpu")
    assert out.clean_ref["member"] == "clean" and np.array_equal(out.read()["clean"], images * 2)


# -- clean by reference --------------------------------------------------------------------------------------


@pytest.fixture
def real(tmp_path):
    images = galaxy_images(60, bands=3, size=16)
    return _write(tmp_path / "real.zarr", images, batch=60, chunk_bytes=16 * 16 * 3 * 4 * 8), images


def test_degrade_refers_to_the_clean_images_instead_of_copying_them(real, tmp_path):
    ds, images = real
    out = degrade_dataset(ds, tmp_path / "d.zarr", PIPE, seed=1, device="cpu")
    copy = degrade_dataset(ds, tmp_path / "c.zarr", PIPE, seed=1, device="cpu", copy_clean=True)
    assert not (out.path / "clean").exists() and (copy.path / "clean").exists()
    assert out.clean_ref == {"path": str(ds.path.resolve()), "id": ds.id, "member": "images"}
    assert out.provenance[-1]["config"]["clean"] == "reference"
    assert copy.clean_ref is None and copy.provenance[-1]["config"]["clean"] == "copy"
    assert out.fields == copy.fields
    for a, b in zip(out.iter_blocks(rows=13), copy.iter_blocks(rows=13)):
        assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert np.array_equal(out.read()["clean"], images)
    size = sum(p.stat().st_size for p in out.path.rglob("*") if p.is_file())
    copied = sum(p.stat().st_size for p in copy.path.rglob("*") if p.is_file())
    assert size < 0.6 * copied


def test_a_reference_survives_split_mix_export_and_a_second_degrade(real, tmp_path):
    from astropy.io import fits

    from galaug.data.ops import export_fits
    from galaug.mix import mix_datasets

    ds, images = real
    out = degrade_dataset(ds, tmp_path / "d.zarr", PIPE, seed=1, device="cpu")
    train, val = split_dataset(out.path, tmp_path / "t.zarr", tmp_path / "v.zarr", val=0.25, seed=3)
    for part in (train, val):
        rows = part.read()["index"]
        assert part.clean_ref["path"] == str(ds.path.resolve()) and not (part.path / "clean").exists()
        assert np.array_equal(part.read()["clean"], images[rows])
        assert np.array_equal(part.read()["images"], out.read()["images"][rows])
    again = degrade_dataset(val, tmp_path / "dd.zarr", "noise:gaussian(std=1)", seed=2, device="cpu")
    assert again.clean_ref["path"] == str(ds.path.resolve())  # the dataset that holds the pixels
    assert np.array_equal(again.read()["clean"], images[val.read()["index"]])
    mixed = mix_datasets(tmp_path / "m.zarr", real_data=train.path, real="100%", gen_data=val.path, gen="100%", seed=0)
    assert len(mixed) == len(train) + len(val)
    assert export_fits(val.path, tmp_path / "fits") == len(val)
    first = fits.getdata(tmp_path / "fits" / "0000000.fits")
    assert np.array_equal(first, val.read(0, 1)["images"][0])


def test_a_moved_deleted_or_replaced_input_is_one_clear_error(real, tmp_path):
    ds, images = real
    out = degrade_dataset(ds, tmp_path / "d.zarr", PIPE, seed=1, device="cpu")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(ds.path, moved / "real.zarr")
    shutil.move(out.path, moved / "d.zarr")
    assert np.array_equal(open_dataset(moved / "d.zarr").read()["clean"], images)  # moved together: found
    shutil.move(moved / "real.zarr", tmp_path / "gone.zarr")
    with pytest.raises(DatasetError, match=r"d.zarr: its clean images are the images of .*real.zarr \(stored by "
                                           r"reference\), which is missing; put it back, or degrade again with "
                                           r"--copy-clean"):
        open_dataset(moved / "d.zarr")
    _write(moved / "real.zarr", images, batch=60)  # the same pixels, but another dataset
    with pytest.raises(DatasetError, match="which has changed since: dataset id"):
        open_dataset(moved / "d.zarr")
    result = CliRunner().invoke(make_cli(), ["info", str(moved / "d.zarr")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "has changed since" in result.output


def test_copy_clean_travels_alone_and_replacing_the_input_in_place_copies(real, tmp_path):
    ds, images = real
    result = CliRunner().invoke(make_cli(), ["degrade", str(ds.path), str(tmp_path / "c.zarr"), "--degrade", PIPE,
                                             "--copy-clean", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    same = degrade_dataset(ds, ds.path, PIPE, seed=1, device="cpu", overwrite=True)  # the input replaced
    assert same.clean_ref is None and np.array_equal(same.read()["clean"], images)
    shutil.rmtree(ds.path)
    assert np.array_equal(open_dataset(tmp_path / "c.zarr").read()["clean"], images)
