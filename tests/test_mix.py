"""Mixing real and generated datasets: ratios, exact provenance of every sample."""

from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest

import galaug
from galaug import GalaugError, open_dataset
from galaug.mix import mix_datasets, parse_gen, plan_mix

from conftest import galaxy_images
from test_cli import assert_user_error


@pytest.fixture
def pair(make_dataset, tmp_path):
    """A real set of 40 and a 'generated' set of 120 (origin 1), same bands and size."""
    real = make_dataset(40, name="real.zarr", seed=0)
    images = galaxy_images(120, seed=9)
    with galaug.create_dataset(tmp_path / "gen.zarr", bands=real.bands, image_size=16, latent_dim=4,
                               provenance=galaug.make_entry("generate")) as w:
        w.append(images, origin=1, latents=np.random.default_rng(0).normal(size=(120, 4)))
    return real, open_dataset(tmp_path / "gen.zarr")


@pytest.mark.parametrize("text, expected", [("5x", 200), ("0.5x", 20), ("1x", 40), ("0.5", 150), ("50%", 150),
                                            ("100", 100), ("0", 0)])
def test_gen_forms(text, expected):
    assert parse_gen(text, n_real=40, n_gen=300) == expected


@pytest.mark.parametrize("text, message", [("5y", r"must be a multiple of the real set \(5x\)"), ("0x", "must be a positive number"),
                                           ("-0.1", "between 0 and 1"), ("4x", "asks for 160 generated images"),
                                           ("200", "more generated images than the 120"), ("abc", "got 'abc'")])
def test_bad_gen_forms(text, message):
    with pytest.raises(GalaugError, match=message):
        parse_gen(text, n_real=40, n_gen=120)


@pytest.mark.parametrize("real, expected", [("0.1", 4), ("10%", 4), ("7", 7), ("1.0", 40), (None, 40)])
def test_real_forms(real, expected):
    assert plan_mix(n_real=40, n_gen=120, real=real, gen="1x").n_real == expected


@pytest.mark.parametrize("real, message", [("1.5", "between 0 and 1"), ("-0.1", "between 0 and 1"),
                                           ("41", "asks for 41 of 40"), ("lots", "real must be")])
def test_bad_real_forms(real, message):
    with pytest.raises(GalaugError, match=message):
        plan_mix(n_real=40, n_gen=120, real=real, gen="1x")


def test_mix_counts_origins_and_indices_are_exact(pair, tmp_path):
    real, gen = pair
    mix = mix_datasets(tmp_path / "mix.zarr", real_data=real.path, real="0.25", gen_data=gen.path, gen="2x", seed=3,
                       window_bytes=3 * 16 * 16 * 4 * 16)  # small windows: several shuffle windows
    data = mix.read()
    assert mix.origin_counts() == {"real": 10, "generated": 80}
    for source, code in ((real, 0), (gen, 1)):
        rows = data["index"][data["origin"] == code]
        assert len(set(rows.tolist())) == len(rows)  # no duplicates
        assert np.array_equal(data["images"][data["origin"] == code], source.read()["images"][rows])
    assert not np.array_equal(np.sort(data["origin"]), data["origin"])  # interleaved, not blocked
    assert mix.provenance[-1]["parents"] == [real.id, gen.id] and mix.provenance[-1]["seed"] == 3
    again = mix_datasets(tmp_path / "again.zarr", real_data=real.path, real="0.25", gen_data=gen.path, gen="2x",
                         seed=3, window_bytes=3 * 16 * 16 * 4 * 16)
    assert np.array_equal(again.read()["index"], data["index"])


def test_alpha_mode_and_replacement(pair, tmp_path):
    real, gen = pair
    mix = mix_datasets(tmp_path / "a.zarr", real_data=real.path, gen_data=gen.path, alpha=0.8, size=100, seed=0)
    counts = mix.origin_counts()
    assert counts["real"] + counts["generated"] == 100 and 65 < counts["generated"] < 95
    with pytest.raises(GalaugError, match=r"alpha 0.2 with size 100 draws \d+ real images but real_data holds 40 "
                                          r"\(use replace, a smaller size, or a larger alpha\)"):
        mix_datasets(tmp_path / "b.zarr", real_data=real.path, gen_data=gen.path, alpha=0.2, size=100, seed=0)
    dup = mix_datasets(tmp_path / "c.zarr", real_data=real.path, gen_data=gen.path, alpha=0.2, size=100, seed=0,
                       replace=True)
    rows = dup.read()["index"][dup.read()["origin"] == 0]
    assert len(rows) > 40 and len(set(rows.tolist())) <= 40


def test_generated_only_mix_keeps_latents(pair, tmp_path):
    real, gen = pair
    mix = mix_datasets(tmp_path / "g.zarr", real_data=real.path, real="0", gen_data=gen.path, gen="1x", seed=0)
    data = mix.read()
    assert mix.latent_dim == 4 and np.array_equal(data["latents"], gen.read()["latents"][data["index"]])


def test_mix_with_a_generator_run(pair, tmp_path):
    from galaug_alae.generator import Alae, AlaeConfig

    real, _ = pair
    run = tmp_path / "run"
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"galaug_run": 1, "generator": "alae", "seed": 0}))
    cfg = AlaeConfig(image_size=16, latent_dim=8, mapping_layers=1, fmap_base=32, fmap_max=8, batch_size=8, steps=2,
                     transform_samples=16, log_every=1, sample_every=100)
    Alae(cfg).train(real.path, run, seed=0)
    mix = mix_datasets(tmp_path / "m.zarr", real_data=real.path, real="0.5", generator=run, gen="0.5x", seed=1)
    assert mix.origin_counts() == {"real": 20, "generated": 20}
    data = mix.read()
    expected = galaug.load_generator(run).sample(rows=sorted(data["index"][data["origin"] == 1]), seed=1)["images"]
    got = data["images"][data["origin"] == 1][np.argsort(data["index"][data["origin"] == 1])]
    np.testing.assert_array_equal(got, expected.numpy())


def test_mix_cli_and_bad_input(galaug_plugins, pair, make_dataset, tmp_path):
    real, gen = pair
    res = galaug_plugins.invoke("mix", tmp_path / "m.zarr", "--real-data", real.path, "--real", "0.1",
                                "--gen-data", gen.path, "--gen", "1x")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == "mix: 4 real (of 40) + 40 generated (of 120) = 44 samples"
    other = make_dataset(10, bands=("g", "r"), name="two.zarr")
    small = make_dataset(10, size=8, name="small.zarr")
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in [
        (["--gen-data", other.path, "--gen", "1x"], "has bands g,r but the real set has g,r,i"),
        (["--gen-data", small.path, "--gen", "0.5"], "has images 3x8x8"),
        (["--gen-data", gen.path, "--gen", "5y"], "must be a multiple of the real set (5x)"),
        (["--gen-data", gen.path, "--gen", "10x"], "holds 120"),
        (["--real", "1.5", "--gen-data", gen.path, "--gen", "1x"], "between 0 and 1"),
        (["--real", "0", "--gen-data", gen.path, "--gen", "0"], "the mix would be empty"),
        (["--gen", "1x"], "exactly one of --gen-data and --generator"),
        (["--alpha", "0.5", "--gen-data", gen.path], "--alpha needs --size"),
        (["--alpha", "0.2", "--size", "100", "--gen-data", gen.path], "but --real-data holds 40 (use --replace"),
    ]:
        assert_user_error(galaug_plugins.invoke("mix", tmp_path / "bad.zarr", "--real-data", real.path, *args),
                          message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_set_with_an_unknown_pixel_scale_needs_assume_same_scale(galaug_plugins, make_dataset, tmp_path):
    real = make_dataset(20, name="real.zarr", pixel_scale=0.2 * u.arcsec)
    gen = make_dataset(20, name="gen.zarr", seed=1)  # no pixel scale: ingested without one, say
    before = sorted(p.name for p in tmp_path.iterdir())
    res = galaug_plugins.invoke("mix", tmp_path / "m.zarr", "--real-data", real.path, "--gen-data", gen.path,
                                "--gen", "1x")
    assert_user_error(res, "the real set has pixel scale 0.2 arcsec but", "gen.zarr's is unknown",
                      "--assume-same-scale mixes them anyway")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(GalaugError, match="assume_same_scale mixes them anyway"):
        mix_datasets(tmp_path / "m.zarr", real_data=real.path, gen_data=gen.path, gen="1x")
    mix = mix_datasets(tmp_path / "m.zarr", real_data=real.path, gen_data=gen.path, gen="1x",
                       assume_same_scale=True)
    assert len(mix) == 40 and mix.pixel_scale == 0.2 * u.arcsec
    assert mix.provenance[-1]["config"]["assume_same_scale"] is True
