"""The core commands, and how they fail on bad input: one line, exit status 2, nothing left behind."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from galaug import open_dataset
from galaug.kinds import Analysis


@dataclasses.dataclass
class CountConfig:
    scale: float = 1.0


class CountAnalysis(Analysis):
    """Counts samples."""

    name = "count"
    Config = CountConfig

    def run(self, inputs, out_dir, *, seed):
        (out_dir / "note.txt").write_text("figures go here")
        return {"n": [len(open_dataset(p)) * self.config.scale for p in inputs]}


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis(CountAnalysis))
    return galaug_plugins


def assert_user_error(result, *fragments):
    """Exit status 2, one line on stderr that says what is wrong, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for f in fragments:
        assert f in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_info_shows_counts_bands_and_provenance(cli, make_dataset):
    ds = make_dataset(12, params=True)
    out = cli.invoke("info", ds.path)
    assert out.exit_code == 0
    assert "12 (real 12, generated 0)" in out.output and "g, r, i" in out.output
    assert "flux [nJy], radius [arcsec]" in out.output and "1. test" in out.output
    data = json.loads(cli.invoke("info", ds.path, "--json").output)
    assert data["id"] == ds.id and data["image_shape"] == [3, 16, 16]


def test_split_is_disjoint_complete_seeded_and_recorded(cli, make_dataset, tmp_path):
    ds = make_dataset(50)
    res = cli.invoke("split", ds.path, "--val", "0.2", "--seed", "3",
                     "--train-out", tmp_path / "tr.zarr", "--val-out", tmp_path / "va.zarr")
    assert res.exit_code == 0, res.output
    tr, va = open_dataset(tmp_path / "tr.zarr"), open_dataset(tmp_path / "va.zarr")
    ti, vi = tr.read()["index"], va.read()["index"]
    assert len(vi) == 10 and len(ti) == 40
    assert set(ti).isdisjoint(vi) and sorted([*ti, *vi]) == list(range(50))
    assert np.array_equal(va.read()["images"], ds.read()["images"][vi])
    assert va.provenance[-1]["seed"] == 3 and va.provenance[-1]["parents"] == [ds.id]
    assert va.provenance[-1]["role"] == "val"
    # same seed, same split; another seed, another split
    cli.invoke("split", ds.path, "--val", "20%", "--seed", "3", "--train-out", tmp_path / "a.zarr",
               "--val-out", tmp_path / "b.zarr")
    assert np.array_equal(open_dataset(tmp_path / "b.zarr").read()["index"], vi)
    cli.invoke("split", ds.path, "--val", "10", "--seed", "4", "--train-out", tmp_path / "c.zarr",
               "--val-out", tmp_path / "d.zarr")
    assert not np.array_equal(open_dataset(tmp_path / "d.zarr").read()["index"], vi)


def test_split_default_names(cli, make_dataset):
    ds = make_dataset(20, name="real.zarr")
    assert cli.invoke("split", ds.path).exit_code == 0
    assert len(open_dataset(ds.path.with_name("real-train.zarr"))) == 16
    assert len(open_dataset(ds.path.with_name("real-val.zarr"))) == 4


def test_show_writes_a_colour_grid_and_a_grey_one(cli, make_dataset, tmp_path):
    ds = make_dataset(10)
    assert cli.invoke("show", ds.path, tmp_path / "rgb.png", "-n", "4").exit_code == 0
    rgb = np.asarray(Image.open(tmp_path / "rgb.png").convert("RGB")).astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 30).any()  # a colour composite, not grey
    assert cli.invoke("show", ds.path, tmp_path / "g.png", "--bands", "r", "--random").exit_code == 0
    grey = np.asarray(Image.open(tmp_path / "g.png").convert("RGB")).astype(int)
    assert (grey[..., 0] == grey[..., 2]).all()


def test_export_writes_one_fits_per_image_with_header(cli, make_dataset, tmp_path):
    ds = make_dataset(9, params=True)
    res = cli.invoke("export", ds.path, tmp_path / "fits", "--limit", "5")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "fits").iterdir())
    assert len(files) == 5
    with fits.open(files[3]) as hdul:
        assert np.array_equal(hdul[0].data, ds.read()["images"][3])
        h = hdul[0].header
        assert [h["BAND1"], h["BAND2"], h["BAND3"]] == ["g", "r", "i"]
        assert h["GLDSID"] == ds.id and h["GLROW"] == 3 and h["GLORIGIN"] == "real"
        assert h["HIERARCH GALAUG PARAM radius"] == 2.0
        history = "".join(str(card) for card in h["HISTORY"])  # long entries wrap over several cards
        assert '"step": "test"' in history


def test_analyze_writes_report_with_config_and_seed(cli, make_dataset, tmp_path):
    ds = make_dataset(6)
    res = cli.invoke("analyze", "count", ds.path, tmp_path / "out", "--set", "scale=2", "--seed", "5")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["results"] == {"n": [12.0]} and report["seed"] == 5 and report["config"] == {"scale": 2.0}
    assert (tmp_path / "out" / "note.txt").exists()


def test_config_prints_defaults_as_toml(cli):
    res = cli.invoke("config", "analysis", "count", "--set", "scale=3")
    assert res.output == "scale = 3.0\n"


# -- bad input -----------------------------------------------------------------------

def test_nonexistent_path(cli, tmp_path):
    assert_user_error(cli.invoke("info", tmp_path / "nope.zarr"), "nope.zarr", "no such file or directory")


def test_directory_that_is_not_a_dataset(cli, tmp_path):
    assert_user_error(cli.invoke("info", tmp_path), "not a galaug dataset")


def test_missing_member(cli, make_dataset):
    ds = make_dataset(5)
    shutil.rmtree(ds.path / "index")
    meta = json.loads((ds.path / "zarr.json").read_text())
    meta.pop("consolidated_metadata", None)
    (ds.path / "zarr.json").write_text(json.dumps(meta))
    assert_user_error(cli.invoke("show", ds.path, ds.path.parent / "x.png"), "missing member 'index'")
    assert not (ds.path.parent / "x.png").exists()


def test_unknown_plugin_name(cli, make_dataset, tmp_path):
    ds = make_dataset(5)
    assert_user_error(cli.invoke("analyze", "cuont", ds.path, tmp_path / "o"),
                      "unknown analysis plugin 'cuont'", "available: count")
    assert not (tmp_path / "o").exists()
    assert_user_error(cli.invoke("config", "sauce", "x"), "unknown kind 'sauce'")


def test_unknown_set_key(cli, make_dataset, tmp_path):
    ds = make_dataset(5)
    assert_user_error(cli.invoke("analyze", "count", ds.path, tmp_path / "o", "--set", "scael=2"),
                      "unknown config key 'scael'", "did you mean 'scale'")
    assert not (tmp_path / "o").exists()


def test_wrong_set_type(cli, make_dataset, tmp_path):
    ds = make_dataset(5)
    assert_user_error(cli.invoke("analyze", "count", ds.path, tmp_path / "o", "--set", "scale=big"),
                      "config key 'scale' expects a number")


@pytest.mark.parametrize("command", [
    ["split", "{ds}", "--train-out", "{exists}", "--val-out", "{tmp}/v.zarr"],
    ["show", "{ds}", "{exists}"],
    ["export", "{ds}", "{exists}"],
    ["analyze", "count", "{ds}", "{exists}"],
])
def test_existing_output_is_refused_and_untouched(cli, make_dataset, tmp_path, command):
    ds = make_dataset(5)
    exists = make_dataset(3, name="exists.zarr")
    before = sorted(os.listdir(tmp_path))
    args = [a.format(ds=ds.path, exists=exists.path, tmp=tmp_path) for a in command]
    assert_user_error(cli.invoke(*args), "output exists", "--overwrite")
    assert sorted(os.listdir(tmp_path)) == before
    assert open_dataset(exists.path).id == exists.id


def test_overwrite_replaces_the_output(cli, make_dataset, tmp_path):
    ds = make_dataset(10)
    target = make_dataset(3, name="t.zarr")
    res = cli.invoke("split", ds.path, "--train-out", target.path, "--val-out", tmp_path / "v.zarr", "--overwrite")
    assert res.exit_code == 0
    assert len(open_dataset(target.path)) == 8


def test_bad_val_fraction(cli, make_dataset, tmp_path):
    ds = make_dataset(10)
    assert_user_error(cli.invoke("split", ds.path, "--val", "1.5"), "between 0 and 1")
    assert_user_error(cli.invoke("split", ds.path, "--val", "lots"), "--val must be a fraction")
    assert_user_error(cli.invoke("split", ds.path, "--val", "0"), "empty split")
    assert sorted(p.name for p in tmp_path.iterdir()) == [ds.path.name]


def test_bad_band_for_show(cli, make_dataset, tmp_path):
    ds = make_dataset(4)
    assert_user_error(cli.invoke("show", ds.path, tmp_path / "x.png", "--bands", "u,g,r"), "band(s) u not in")


def test_show_to_a_fits_name_is_one_line_pointing_at_export(cli, make_dataset, tmp_path):
    ds = make_dataset(4)
    assert_user_error(cli.invoke("show", ds.path, tmp_path / "x.fits"), "cannot be saved as a .fits file",
                      "galaug export", "png")
    assert_user_error(cli.invoke("show", ds.path, tmp_path / "x"), "a file without an extension")
    old = cli.invoke("show", ds.path, "-o", tmp_path / "x.fits")  # the old spelling: its note, then the same line
    assert old.exit_code == 2 and "Traceback" not in old.output
    assert old.stderr.splitlines()[-1].startswith(f"Error: {tmp_path / 'x.fits'}: a figure cannot be saved as a .fits")
    assert sorted(p.name for p in tmp_path.iterdir()) == [ds.path.name]


def test_the_installed_command_prints_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "galaug", "info", str(tmp_path / "missing.zarr")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == f"Error: {tmp_path / 'missing.zarr'}: no such file or directory"
