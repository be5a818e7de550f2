"""The dataset format: round trips, chunking, schema checks, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
import zarr

import galaug
from galaug import DatasetError, make_entry, open_dataset
from galaug.data.writer import like, write_rows

from conftest import galaxy_images


def test_round_trip_is_bit_identical(tmp_path):
    images = galaxy_images(50, bands=4, size=16)
    images[3, 1, 2, 2] = np.float32(1e30)  # large dynamic range survives
    images[4, 0, 0, 0] = np.float32(-1e-30)
    params = np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32)
    latents = np.random.default_rng(2).normal(size=(50, 5)).astype(np.float32)
    origin = (np.arange(50) % 2).astype(np.uint8)
    path = tmp_path / "rt.zarr"
    with galaug.create_dataset(path, bands="griz", image_size=16, pixel_scale=0.2 * u.arcsec, flux_unit="nJy",
                               param_names=[f"p{i}" for i in range(7)], param_units=["arcsec"] * 7, latent_dim=5,
                               provenance=make_entry("test", seed=3), chunk_bytes=4 * 16 * 16 * 4 * 8) as w:
        for s in range(0, 50, 9):
            w.append(images[s:s + 9], origin=origin[s:s + 9], params=params[s:s + 9], latents=latents[s:s + 9])
    ds = open_dataset(path)
    got = ds.read()
    assert np.array_equal(got["images"].view(np.uint32), images.view(np.uint32))
    assert np.array_equal(got["params"], params) and np.array_equal(got["latents"], latents)
    assert np.array_equal(got["origin"], origin) and np.array_equal(got["index"], np.arange(50))
    assert ds.bands == ("g", "r", "i", "z") and ds.pixel_scale == 0.2 * u.arcsec and ds.flux_unit == "nJy"
    assert ds.param_names[0] == "p0" and ds.latent_dim == 5
    assert ds.origin_counts() == {"real": 25, "generated": 25}
    assert ds.provenance[-1]["seed"] == 3 and ds.provenance[-1]["output"] == ds.id


def test_chunks_are_about_two_megabytes_along_the_sample_axis(tmp_path):
    with galaug.create_dataset(tmp_path / "c.zarr", bands="griz", image_size=64, provenance=make_entry("t")) as w:
        w.append(np.zeros((40, 4, 64, 64), np.float32))
    ds = open_dataset(tmp_path / "c.zarr")
    chunk = ds.array("images").chunks
    assert chunk[1:] == (4, 64, 64)
    assert 1 * 2**20 <= chunk[0] * 4 * 64 * 64 * 4 <= 4 * 2**20


def test_blocks_are_contiguous_and_cover_everything(make_dataset):
    ds = make_dataset(30)
    seen = []
    for start, block in ds.iter_blocks():
        assert np.array_equal(block["index"], np.arange(start, start + len(block["index"])))
        seen.extend(block["index"])
    assert seen == list(range(30))


def test_pixel_scale_needs_a_unit(tmp_path):
    with pytest.raises(ValueError, match="needs a unit"):
        galaug.create_dataset(tmp_path / "x.zarr", bands="g", image_size=8, pixel_scale=0.2,
                              provenance=make_entry("t"))
    with pytest.raises(ValueError, match="angle or a length"):
        galaug.create_dataset(tmp_path / "x.zarr", bands="g", image_size=8, pixel_scale=3 * u.s,
                              provenance=make_entry("t"))
    assert not (tmp_path / "x.zarr").exists()
    w = galaug.create_dataset(tmp_path / "k.zarr", bands="g", image_size=8, pixel_scale="0.5 kpc",
                              provenance=make_entry("t"))
    w.append(np.zeros((1, 1, 8, 8)))
    assert w.close().pixel_scale == 0.5 * u.kpc


def test_exception_inside_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with galaug.create_dataset(tmp_path / "x.zarr", bands="g", image_size=8, provenance=make_entry("t")) as w:
            w.append(np.zeros((3, 1, 8, 8)))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_wrong_batch_shape_is_refused(tmp_path):
    with galaug.create_dataset(tmp_path / "x.zarr", bands="gr", image_size=8, provenance=make_entry("t")) as w:
        with pytest.raises(ValueError, match=r"shape \(B, 2, 8, 8\)"):
            w.append(np.zeros((3, 1, 8, 8)))
        w.append(np.zeros((3, 2, 8, 8)))
    assert len(open_dataset(tmp_path / "x.zarr")) == 3


def test_existing_output_is_refused_and_overwrite_replaces_only_when_complete(make_dataset, tmp_path):
    first = make_dataset(10, name="d.zarr")
    with pytest.raises(DatasetError, match="output exists"):
        galaug.create_dataset(first.path, bands="g", image_size=8, provenance=make_entry("t"))
    w = galaug.create_dataset(first.path, bands="g", image_size=8, provenance=make_entry("t"), overwrite=True)
    w.append(np.ones((2, 1, 8, 8)))
    assert open_dataset(first.path).id == first.id  # old one still in place while writing
    w.close()
    assert len(open_dataset(first.path)) == 2
    assert sorted(os.listdir(tmp_path)) == ["d.zarr"]


def test_overwrite_never_deletes_a_folder_that_is_not_a_dataset(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(DatasetError, match="not a galaug dataset; refusing"):
        galaug.create_dataset(precious, bands="g", image_size=8, provenance=make_entry("t"), overwrite=True)
    assert (precious / "thesis.tex").exists()


def test_provenance_chain_follows_parents(make_dataset, tmp_path):
    src = make_dataset(12)
    with galaug.create_dataset(tmp_path / "sub.zarr", parents=[src], provenance=make_entry("subset", seed=7),
                               **like(src)) as w:
        write_rows(w, src, [1, 5, 11])
    sub = open_dataset(tmp_path / "sub.zarr")
    assert [e["step"] for e in sub.provenance] == ["test", "subset"]
    assert sub.provenance[-1]["parents"] == [src.id]
    assert list(sub.read()["index"]) == [1, 5, 11]
    assert np.array_equal(sub.read()["images"], src.read()["images"][[1, 5, 11]])


# -- schema validation: each problem named ----------------------------------------

def test_nonexistent_path(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory"):
        open_dataset(tmp_path / "missing.zarr")


def test_plain_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a galaug dataset"):
        open_dataset(tmp_path)


def test_foreign_zarr_group_is_not_a_dataset(tmp_path):
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3).create_array("x", shape=(3,), dtype="f4")
    with pytest.raises(DatasetError, match="no 'galaug' attributes"):
        open_dataset(tmp_path / "other.zarr")


def test_missing_member_is_named(make_dataset):
    ds = make_dataset(10)
    shutil.rmtree(ds.path / "origin")
    (ds.path / "zarr.json").write_text(json.dumps(_drop_consolidated(ds.path)))
    with pytest.raises(DatasetError, match="missing member 'origin'"):
        open_dataset(ds.path)


def test_wrongly_shaped_member_is_named(make_dataset):
    ds = make_dataset(10)
    g = zarr.open_group(str(ds.path), mode="r+", use_consolidated=False)
    g["index"].resize((9,))
    (ds.path / "zarr.json").write_text(json.dumps(_drop_consolidated(ds.path)))
    with pytest.raises(DatasetError, match=r"member 'index' has shape \(9,\), expected \(10,\)"):
        open_dataset(ds.path)


def test_wrong_dtype_is_named(make_dataset):
    ds = make_dataset(10)
    meta = json.loads((ds.path / "origin" / "zarr.json").read_text())
    meta["data_type"] = "int16"
    (ds.path / "origin" / "zarr.json").write_text(json.dumps(meta))
    (ds.path / "zarr.json").write_text(json.dumps(_drop_consolidated(ds.path)))
    with pytest.raises(DatasetError, match="member 'origin' has dtype int16, expected uint8"):
        open_dataset(ds.path)


def _drop_consolidated(path):
    meta = json.loads((path / "zarr.json").read_text())
    meta.pop("consolidated_metadata", None)
    return meta


# -- a writer killed half way ------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time, numpy as np, galaug
    w = galaug.create_dataset(sys.argv[1], bands="gri", image_size=32, provenance=galaug.make_entry("t"),
                              chunk_bytes=3 * 32 * 32 * 4 * 4)
    for i in range(1000):
        w.append(np.full((4, 3, 32, 32), i, np.float32))
        if i == 5:
            print("half way", flush=True)
        time.sleep(0.01)
    w.close()
""")


def test_sigkill_half_way_leaves_no_dataset_and_a_rerun_succeeds(tmp_path):
    final = tmp_path / "killed.zarr"
    with subprocess.Popen([sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "half way"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not final.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".killed.zarr.tmp-")  # data were being written
    with pytest.raises(DatasetError):
        open_dataset(tmp_path / leftovers[0])  # a partial write is never mistaken for a dataset
    with galaug.create_dataset(final, bands="g", image_size=8, provenance=make_entry("t")) as w:
        w.append(np.zeros((1, 1, 8, 8)))
    assert [p.name for p in tmp_path.iterdir()] == ["killed.zarr"]  # the dead writer's temporary is gone


def test_clean_member_pairs_degraded_and_clean_images_and_survives_a_split(tmp_path):
    from galaug.data import split_dataset

    clean = galaxy_images(20, bands=2, size=16)
    noisy = clean[:, :, ::2, ::2] + 1  # a degradation may change the size
    with galaug.create_dataset(tmp_path / "p.zarr", bands="gr", image_size=8, clean_size=16,
                               provenance=make_entry("degrade")) as w:
        w.append(noisy, clean=clean)
    ds = open_dataset(tmp_path / "p.zarr")
    assert ds.clean_shape == (2, 16, 16) and "clean" in ds.fields
    tr, va = split_dataset(ds.path, tmp_path / "t.zarr", tmp_path / "v.zarr", val=5, seed=0)
    rows = va.read()["index"]
    assert np.array_equal(va.read()["clean"], clean[rows]) and np.array_equal(va.read()["images"], noisy[rows])
    with pytest.raises(ValueError, match="needs clean"):
        with galaug.create_dataset(tmp_path / "q.zarr", bands="gr", image_size=8, clean_size=16,
                                   provenance=make_entry("degrade")) as w:
            w.append(noisy)
