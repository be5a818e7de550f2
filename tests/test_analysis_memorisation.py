"""The ``memorisation`` analysis: copies of training images are found, an independent set is at chance.

Tiny 16 x 16 galaxies (``conftest.galaxy_images``: exponential blobs of random
size, axis ratio and angle, plus noise), a few hundred per set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

import galaug
import galaug_analyses
from galaug import ConfigError
from galaug.data.provenance import make_entry
from galaug_analyses.memorisation import (TRANSFORMS, TrainingSet, binomial_interval, chance_p_value, nearest,
                                          normalise, threshold)

from conftest import galaxy_images
from test_cli import assert_user_error

BANDS = ("g", "r", "i")


def write(path, images, bands=BANDS):
    with galaug.create_dataset(path, bands=bands, image_size=images.shape[2:], provenance=make_entry("test")) as w:
        w.append(images)
    return path


@pytest.fixture(scope="module")
def images():
    """Training, held-out and an independent third set from one distribution."""
    return {"train": galaxy_images(300, seed=1), "heldout": galaxy_images(300, seed=2),
            "independent": galaxy_images(400, seed=3)}


@pytest.fixture(scope="module")
def data(images, tmp_path_factory):
    root = tmp_path_factory.mktemp("memorisation")
    train = images["train"]
    noisy = train[:200] + np.random.default_rng(4).normal(0, 0.3, train[:200].shape).astype(np.float32)
    rotated = np.rot90(train[:100], 1, axes=(2, 3))
    return {
        "train": write(root / "train.zarr", train),
        "heldout": write(root / "heldout.zarr", images["heldout"]),
        "independent": write(root / "independent.zarr", images["independent"]),
        "copies": write(root / "copies.zarr", train[::-1][:200]),
        "noisy": write(root / "noisy.zarr", noisy),
        "rotated": write(root / "rotated.zarr", np.ascontiguousarray(rotated)),
        "leaky": write(root / "leaky.zarr", np.concatenate([train[:10], images["heldout"][:90]])),
        "one_leak": write(root / "one_leak.zarr", np.concatenate([train[:1], images["heldout"][1:]])),
        "big": write(root / "big.zarr", galaxy_images(20, size=20, seed=5)),
        "two_bands": write(root / "two.zarr", train[:20, :2], bands=("g", "r")),
    }


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.register(galaug_analyses)
    return galaug_plugins


def analyze(cli, out, *inputs, sets=()):
    result = cli.invoke("analyze", "memorisation", *inputs, out, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())["results"]


def test_exact_copies_are_all_memorised(cli, data, tmp_path):
    out = tmp_path / "out"
    r = analyze(cli, out, data["copies"], data["train"], data["heldout"])
    g, t = r["generated"], r["threshold"]
    assert r["n"] == {"generated": {"total": 200, "used": 200}, "train": {"total": 300, "used": 300},
                      "heldout": {"total": 300, "used": 300}}
    assert g["memorised"] == 200 and g["memorised_fraction"] == 1.0 and g["copies"] == 200
    assert g["distinct_train_images"] == 200 and g["above_chance"] and g["p_value"] < 1e-9
    assert g["interval"][0] > 0.98 and g["distance_quantiles"]["median"] == 0
    assert t["rank"] == 3 and t["chance"] == pytest.approx(3 / 301) and t["distance"] > 0
    assert t["chance_interval"][0] < t["chance"] < t["chance_interval"][1]
    # rows: copies.zarr row i is training row 299 - i
    assert all(p["train_row"] == 299 - p["row"] and p["distance"] == 0 and p["below_threshold"]
               for p in r["closest"])
    assert len(r["closest"]) == 12 and len(r["heldout_closest"]) == 12
    assert r["warnings"] == [] and "more than chance" in r["summary"]
    assert r["table"].startswith("| quantity | value |")
    assert r["figures"] == ["pairs.png", "heldout_pairs.png", "distances.png"]
    assert set(r["captions"]) == set(r["figures"])
    for name in r["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with np.load(out / "nearest.npz") as saved:
        np.testing.assert_array_equal(saved["generated_train_row"], 299 - np.arange(200))
        assert set(saved) == {f"{role}_{k}" for role in ("generated", "heldout")
                              for k in ("rows", "distance", "train_row", "transform")}
    assert sorted(p.name for p in out.iterdir()) == ["distances.png", "heldout_pairs.png", "nearest.npz",
                                                     "pairs.png", "report.json"]  # no scratch file left


def test_copies_with_a_little_noise_are_all_memorised(cli, data, tmp_path):
    r = analyze(cli, tmp_path / "out", data["noisy"], data["train"], data["heldout"])
    assert r["generated"]["memorised_fraction"] == 1.0 and r["generated"]["copies"] == 0
    assert r["generated"]["distance_quantiles"]["median"] < r["threshold"]["distance"] / 2


def test_rotated_copies_are_found_under_the_symmetries(cli, data, tmp_path):
    r = analyze(cli, tmp_path / "out", data["rotated"], data["train"], data["heldout"])
    assert r["generated"]["memorised_fraction"] == 1.0
    assert {p["transform"] for p in r["closest"]} == {"rot90"}
    assert r["symmetries"] == list(TRANSFORMS)
    plain = analyze(cli, tmp_path / "plain", data["rotated"], data["train"], data["heldout"],
                    sets=["symmetries=none"])
    assert plain["generated"]["memorised_fraction"] < 0.5 and plain["symmetries"] == ["none"]


def test_an_independent_set_is_memorised_at_chance(cli, data, tmp_path):
    r = analyze(cli, tmp_path / "out", data["independent"], data["train"], data["heldout"])
    g, n = r["generated"], r["n"]["generated"]["used"]
    low, high = binomtest(g["memorised"], n).proportion_ci(confidence_level=0.999)
    assert low <= r["threshold"]["chance"] <= high, g
    assert g["p_value"] > 0.001 and not g["above_chance"] and g["copies"] == 0
    assert "consistent with chance" in r["summary"]
    assert r["heldout"]["below_threshold"] == r["threshold"]["rank"] - 1


def test_caps_draw_a_seeded_subsample(cli, data, tmp_path):
    sets = ["max_generated=50", "max_train=100", "max_heldout=120", "pairs=8", "symmetries=none"]
    one = analyze(cli, tmp_path / "one", data["copies"], data["train"], data["heldout"], sets=sets)
    two = analyze(cli, tmp_path / "two", data["copies"], data["train"], data["heldout"], sets=sets)
    assert one["n"]["generated"]["used"] == 50 and one["n"]["train"]["used"] == 100
    assert one["n"]["heldout"]["used"] == 120 and one["threshold"]["rank"] == 1
    assert one["closest"] == two["closest"] and len(one["closest"]) == 8
    # about a third of the copies have their original among the 100 training images kept
    assert 5 <= one["generated"]["copies"] <= 30
    assert one["generated"]["memorised"] >= one["generated"]["copies"]


def test_a_heldout_set_that_overlaps_the_training_set_is_an_error(cli, data, tmp_path):
    result = cli.invoke("analyze", "memorisation", data["copies"], data["train"], data["leaky"], tmp_path / "out")
    assert_user_error(result, "threshold is 0", "10 of 100 held-out images are copies", "overlaps")
    assert not (tmp_path / "out").exists()
    result = cli.invoke("analyze", "memorisation", data["copies"], data["train"], data["train"], tmp_path / "out")
    assert_user_error(result, "is the training set")


def test_fewer_heldout_copies_than_the_rank_are_a_warning(cli, data, tmp_path):
    r = analyze(cli, tmp_path / "out", data["independent"], data["train"], data["one_leak"],
                sets=["symmetries=none", "max_generated=50"])
    assert r["heldout"]["copies"] == 1 and r["threshold"]["distance"] > 0
    assert r["warnings"] == ["1 of 300 held-out images are copies of training images: the held-out set overlaps "
                             "the training set, which lowers the threshold"]
    assert "warning: 1 of 300" in r["table"]


def test_different_shapes_or_bands_are_an_error(cli, data, tmp_path):
    result = cli.invoke("analyze", "memorisation", data["big"], data["train"], data["heldout"], tmp_path / "out")
    assert_user_error(result, "20x20 pixels differ from 16x16")
    result = cli.invoke("analyze", "memorisation", data["copies"], data["train"], data["two_bands"],
                        tmp_path / "out")
    assert_user_error(result, "bands g,r differ from g,r,i")
    result = cli.invoke("analyze", "memorisation", data["copies"], data["train"], tmp_path / "out")
    assert_user_error(result, "GENERATED TRAIN HELDOUT")
    assert not (tmp_path / "out").exists()


def test_the_blocked_search_is_exact(images):
    rng = np.random.default_rng(0)
    train, query = images["train"][:70], images["independent"][:45]
    query[:5] = np.flip(train[10:15], axis=3)  # left-right flipped copies
    q, t = normalise(query), normalise(train)
    reference = np.sqrt(((q[:, None] - t[None]) ** 2).sum(-1))  # (45, 70) every distance, no symmetries
    rows = np.sort(rng.choice(70, 50, replace=False))
    plain = nearest(query, train, symmetries="none")
    np.testing.assert_allclose(plain.distance, reference.min(1), atol=1e-6)
    np.testing.assert_array_equal(plain.train_row, reference.argmin(1))
    # blocks of 8 images, a training subsample (read in windows): the same neighbours
    with TrainingSet(train, rows=rows, block=8) as subset:
        small = nearest(query, subset, symmetries="none", block=8)
    np.testing.assert_allclose(small.distance, reference[:, rows].min(1), atol=1e-6)
    np.testing.assert_array_equal(small.train_row, rows[reference[:, rows].argmin(1)])
    dihedral = nearest(query, train, block=64)  # 8 queries (x 8 transforms) a block
    assert np.all(dihedral.distance <= plain.distance + 1e-12)
    np.testing.assert_array_equal(dihedral.distance[:5], 0)
    np.testing.assert_array_equal(dihedral.train_row[:5], np.arange(10, 15))
    assert [TRANSFORMS[i] for i in dihedral.transform[:5]] == ["flip"] * 5


def test_dihedral_symmetries_need_square_images():
    wide = galaxy_images(4, size=16)[..., :12]
    with pytest.raises(ConfigError, match="needs square images, these are 16 x 12"):
        nearest(wide, wide)
    assert nearest(wide, wide, symmetries="none").distance.max() == 0


def test_normalise_ignores_sky_and_brightness():
    image = galaxy_images(1, seed=7)
    a, b = normalise(np.concatenate([image, 3 * image.astype(np.float64) + 50]))
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert np.linalg.norm(a) == pytest.approx(1)
    assert not normalise(np.full((1, 3, 16, 16), 7.0)).any()  # nothing but sky: all zero


def test_threshold_and_chance():
    d = np.arange(1, 201, dtype=float)[::-1]
    assert threshold(d, 0.01) == (2.0, 2, 2 / 201)
    assert threshold(d[:50], 0.01) == (151.0, 1, 1 / 51)  # too few: the smallest, chance 1/51
    assert threshold(np.arange(1, 100, dtype=float), 0.29) == (29.0, 29, 0.29)
    low, high = binomial_interval(14, 1000, 0.95)
    assert low < 0.01 < high  # 1.4% of 1,000 is not told from 1%
    low, high = binomial_interval(140, 10000, 0.95)
    assert low > 0.01  # 1.4% of 10,000 is
    assert chance_p_value(0, 1000, 2, 200) == 1.0
    assert chance_p_value(1000, 1000, 2, 200) < 1e-100
    # the held-out sample that sets the threshold widens the null: less significant than a plain binomial
    assert chance_p_value(20, 1000, 2, 200) > binomtest(20, 1000, 2 / 201, alternative="greater").pvalue
