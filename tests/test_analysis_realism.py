"""The ``realism`` analysis: zero for a set against itself, far for a shifted set, every section and figure there.

statmorph takes about a third of a second per 32 x 32 image, so the
datasets are tiny (6 images) and a set given twice is measured once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import galaug_analyses
from galaug.sources.bulgedisk import BulgeDisk, BulgeDiskConfig
from galaug.sources.sersic import Sersic, SersicConfig
from galaug.sources.simulate import simulate
from galaug_analyses.realism import STATISTICS, bulge_statistic, power_spectrum, scaled_distance

from test_cli import assert_user_error

N = 6
SECTIONS = ("band", "degrade", "noise_std", "sets", "n", "morphology", "power_spectrum", "colours", "pixels",
            "summary", "table", "figures")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One-band Sersic galaxies: held-out, training (another seed) and shifted; bulge + disk galaxies in g, r, i, z."""
    root = tmp_path_factory.mktemp("realism")
    small = {"image_size": 32, "r_half_range": (0.5, 1.0), "n_range": (1.0, 1.5), "q_range": (0.3, 0.6)}
    big_round = {"image_size": 32, "r_half_range": (1.6, 2.2), "n_range": (3.0, 4.0), "q_range": (0.85, 1.0)}
    return {
        "heldout": simulate(Sersic(SersicConfig(**small)), root / "heldout.zarr", N, seed=1).path,
        "train": simulate(Sersic(SersicConfig(**small)), root / "train.zarr", N, seed=2).path,
        "shifted": simulate(Sersic(SersicConfig(**big_round)), root / "shifted.zarr", N, seed=3).path,
        "bulgedisk": simulate(BulgeDisk(BulgeDiskConfig(image_size=32, pixel_scale=0.4)), root / "bulgedisk.zarr", N,
                              seed=4).path,
    }


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.register(galaug_analyses)
    return galaug_plugins


def analyze(cli, out, *inputs, sets=()):
    result = cli.invoke("analyze", "realism", *inputs, out, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def distances(results):
    """Every (generated, floor) pair of the report, by name."""
    pairs = {f"morphology {k}": v for k, v in results["morphology"]["statistics"].items()}
    pairs.update({f"power {b['frequency_min']:.3f}": b for b in results["power_spectrum"]["bands"]})
    pairs.update({f"pixels {k}": v for k, v in results["pixels"]["bands"].items()})
    if "skipped" not in results["colours"]:
        pairs.update({f"colour {k}": results["colours"][k] for k in ("early", "late")})
    return pairs


def test_a_set_against_itself_is_at_distance_zero(cli, data, tmp_path):
    out = tmp_path / "out"
    report = analyze(cli, out, data["bulgedisk"], data["bulgedisk"], sets=[f"n={N}", "band=i"])
    results = report["results"]
    assert set(SECTIONS) <= set(results)
    assert report["config"]["n"] == N and results["band"] == "i"
    assert results["degrade"].startswith("psf:gaussian(fwhm=1.5)|noise:gaussian(std=[")
    assert list(results["noise_std"]) == ["g", "r", "i", "z"] and min(results["noise_std"].values()) > 0
    for role in ("generated", "heldout"):
        n = results["n"][role]
        assert n["read"] == N and n["used"] + n["failed"] == N and n["used"] >= N - 2
    pairs = distances(results)
    assert len(pairs) == len(STATISTICS) + 4 + 4 + 2
    for name, pair in pairs.items():
        assert pair["generated"] in (None, pytest.approx(0, abs=1e-9)), name  # None: too few early types
        assert pair["floor"] is None
    assert results["colours"]["late"]["generated"] == pytest.approx(0, abs=1e-9)
    for kind in ("early", "late"):
        assert set(results["colours"][kind]["n"]) == {"generated", "heldout"}
    assert any(line.startswith("| colour g-i: late |") for line in results["table"].splitlines())
    assert results["figures"] == ["morphology.png", "power_spectrum.png", "pixels.png", "colours.png"]
    for name in results["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert (out / "table.md").read_text() == results["table"]


def test_a_shifted_set_is_far_from_the_heldout_set_and_the_training_set_near(cli, data, tmp_path):
    out = tmp_path / "out"
    report = analyze(cli, out, data["shifted"], data["heldout"], data["train"], sets=[f"n={N}"])
    results = report["results"]
    assert set(SECTIONS) <= set(results) and results["band"] == "r"
    assert set(results["n"]) == {"generated", "heldout", "train"}
    # rounder, more concentrated galaxies: farther from the held-out set than a second real sample is
    summary = results["summary"]
    assert set(summary) == {"morphology", "power_spectrum", "pixels"}
    for section in ("morphology", "power_spectrum", "pixels"):
        assert summary[section]["generated"] > 2 * summary[section]["floor"], section
    stats = results["morphology"]["statistics"]
    for name in ("concentration", "gini", "sersic_n", "ellipticity"):
        assert stats[name]["generated"] > 1.5, name
        assert stats[name]["floor"] < stats[name]["generated"] / 2, name
    assert stats["concentration"]["median"]["generated"] > stats["concentration"]["median"]["heldout"]
    assert stats["ellipticity"]["median"]["generated"] < stats["ellipticity"]["median"]["heldout"]
    assert "no bands named g and i (bands: r)" in results["colours"]["skipped"]
    table = results["table"].splitlines()
    assert table[0] == "| quantity | generated vs held-out | train vs held-out (floor) |"
    assert any(line.startswith("| morphology: rhalf |") for line in table)
    assert "colours skipped" in results["table"]
    assert results["figures"] == ["morphology.png", "power_spectrum.png", "pixels.png"]
    assert all((out / name).stat().st_size > 0 for name in results["figures"])
    assert set(results["captions"]) == set(results["figures"])


def test_morphology_in_worker_processes_is_the_same(cli, data, tmp_path):
    one = analyze(cli, tmp_path / "one", data["shifted"], data["heldout"], sets=["n=4"])["results"]
    two = analyze(cli, tmp_path / "two", data["shifted"], data["heldout"], sets=["n=4", "workers=2"])["results"]
    assert two["morphology"] == one["morphology"] and two["n"] == one["n"]


def test_scaled_distance():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 2, 4000)
    assert scaled_distance(reference + 2, reference) == pytest.approx(1.0, rel=0.01)  # shifted by one std
    assert scaled_distance(reference, reference) == 0
    assert scaled_distance(np.array([1.0, np.nan]), reference) is None  # one finite value
    assert scaled_distance(reference, np.ones(5)) is None  # no spread to scale by


def test_power_spectrum_measures_shape_not_flux():
    y, x = np.mgrid[:32, :32] - 15.5
    narrow, broad = (np.exp(-(x**2 + y**2) / (2 * s**2)) for s in (1.5, 4.0))
    frequency, power = power_spectrum(np.stack([narrow, 50 * narrow, broad, -narrow]))
    assert frequency[0] == pytest.approx(1 / 32) and frequency[-1] == 0.5 and power.shape == (4, 16)
    np.testing.assert_allclose(power[1], power[0], rtol=1e-9)  # 50 times brighter, same shape
    assert np.all(power[2, 2:] < power[0, 2:])  # a broad galaxy has less power at high frequencies
    assert np.all(np.isnan(power[3]))  # no positive flux to normalise by


def test_bulge_statistic():
    assert bulge_statistic(0.6, -2.2) > 0  # concentrated: bulge-dominated
    assert bulge_statistic(0.45, -1.5) < 0


@pytest.mark.parametrize("case, fragments", [
    ("one input", ["2 or 3 datasets", "got 1"]),
    ("four inputs", ["2 or 3 datasets", "got 4"]),
    ("other bands", ["bands g,r,i,z differ from r"]),
    ("other size", ["images of 32x32 pixels differ from 16x16"]),
    ("not a dataset", ["not a galaug dataset"]),
    ("unknown band", ["band 'y' is not one of the datasets' bands (r)"]),
    ("bad n", ["n must be at least 2"]),
    ("too many power bands", ["power_bands is 99 but the images have only 16 frequencies"]),
    ("bad degrade", ["unknown degradation 'psf:gausian'"]),
])
def test_bad_input_is_one_line_and_exit_2(cli, data, make_dataset, tmp_path, case, fragments):
    heldout, out = data["heldout"], tmp_path / "out"
    args = {
        "one input": [heldout],
        "four inputs": [heldout] * 4,
        "other bands": [heldout, data["bulgedisk"]],
        "other size": [make_dataset(4, bands=("r",), size=16).path, heldout],
        "not a dataset": [tmp_path, heldout],
        "unknown band": [heldout, heldout, "--set", "band=y"],
        "bad n": [heldout, heldout, "--set", "n=1"],
        "too many power bands": [heldout, heldout, "--set", "power_bands=99"],
        "bad degrade": [heldout, heldout, "--set", "degrade=psf:gausian(fwhm=1)"],
    }[case]
    assert_user_error(cli.invoke("analyze", "realism", *args, out), *fragments)
    assert not out.exists()
