"""Attribute editing: moving w along the latent-structure directions w* (galaug.editing, generate --edit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from galaug import GalaugError, load_generator, open_dataset
from galaug.editing import Direction, LatentDirections, parse_edits
from galaug.fitting import fit_sersic
from galaug.pluginmanager import PluginManager, set_manager

from test_cli import assert_user_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "checkpoints"
RUN, OTHER = SHIPPED / "alae-sersic-tiny", SHIPPED / "alae-bulgedisk-tiny"
#: how the shipped run's training data was simulated (examples/checkpoints/README.md)
FWHM, NOISE = 1.0, 0.4428649139404297


def _manager() -> PluginManager:
    import galaug_alae
    import galaug_analyses

    manager = PluginManager(autoload=False, blocked=())
    manager.register(galaug_alae, name="alae", distribution="(test)", version="0")
    manager.register(galaug_analyses, name="analyses", distribution="(test)", version="0")
    return manager


def invoke(manager, *args):
    from galaug.cli import make_cli

    return CliRunner().invoke(make_cli(manager), [str(a) for a in args])


@pytest.fixture(scope="module")
def latent(tmp_path_factory, one_torch_thread):
    """A small latent-structure report of the shipped Sersic generator (80 latents, no walks, no control)."""
    manager = _manager()
    old = set_manager(manager)
    try:
        out = tmp_path_factory.mktemp("latent") / "latent"
        result = invoke(manager, "analyze", "latent-structure", RUN, out, "--seed", "0", "--set", "n=80",
                        "--set", "folds=3", "--set", "walk_latents=0", "--set", "control=0", "--set", "strip=2",
                        "--set", f"psf_fwhm={FWHM}", "--set", f"noise_std={NOISE}", "--set", "fit_max_iter=100")
        assert result.exit_code == 0, result.output
    finally:
        set_manager(old)
    return out


@pytest.fixture(scope="module")
def model():
    return load_generator(RUN)


@pytest.fixture
def cli(galaug_plugins):
    import galaug_alae
    import galaug_analyses

    galaug_plugins.register(galaug_alae, name="alae")
    galaug_plugins.register(galaug_analyses, name="analyses")
    return galaug_plugins


def test_the_latent_report_stores_what_editing_needs(latent, model):
    r = json.loads((latent / "report.json").read_text())["results"]
    assert r["latent_dim"] == model.w_dim and r["space"] == "w"
    assert r["run"]["path"] == str(RUN) and r["run"]["checkpoint_step"] == model.step
    for p in r["parameters"].values():
        assert np.linalg.norm(p["normal"]) == pytest.approx(1.0) and p["projection_std"] > 0
        assert "accuracy" in p and "spearman_rho" in p  # the existing keys stay
    d = LatentDirections.load(latent)  # the folder, or its report.json
    assert set(d.names) == set(r["parameters"]) and d.dim == model.w_dim
    assert d.meta["psf_fwhm_arcsec"] == FWHM
    d.check(model)


def test_editing_moves_r_half_the_requested_way(latent, model):
    d = LatentDirections.load(latent / "report.json")
    n, seed = 24, 7
    base = model.sample(n, seed=seed)
    fits = {}
    for sigmas in (-1.5, 1.5):
        out = model.sample(n, seed=seed, edit={"r_half": sigmas}, directions=d)
        assert torch.equal(out["z"], base["z"])  # same z: only w moves, along w*(r_half)
        step = sigmas * d.directions["r_half"].std * d.directions["r_half"].normal
        np.testing.assert_allclose(out["w"].numpy(), base["w"].numpy() + step, atol=1e-6)
        fits[sigmas] = fit_sersic(out["images"][:, 0].numpy(), pixel_scale=model.layout.pixel_scale,
                                  psf_fwhm=FWHM, noise_std=NOISE, max_iter=100)
    f0 = fit_sersic(base["images"][:, 0].numpy(), pixel_scale=model.layout.pixel_scale, psf_fwhm=FWHM,
                    noise_std=NOISE, max_iter=100)
    r = 2  # r_half
    for sigmas, f in fits.items():
        ok = f.success & f0.success
        assert ok.sum() >= n - 4
        change = np.median(f.params[ok, r] - f0.params[ok, r])
        assert np.sign(change) == np.sign(sigmas), (sigmas, change)


def test_an_edit_of_zero_is_the_identity(latent, model):
    d = LatentDirections.load(latent)
    base = model.sample(rows=[3, 11, 40], seed=2)
    same = model.sample(rows=[3, 11, 40], seed=2, edit={"r_half": 0.0, "q": 0.0}, directions=d)
    for key in ("images", "z", "w"):
        assert torch.equal(same[key], base[key]), key
    # model.edit: the same move on given latents, decoded with given noise seeds
    moved = model.edit(base["w"], {"r_half": 1.0}, directions=d, seeds=[0, 1, 2])
    w = base["w"] + torch.as_tensor(d.shift({"r_half": 1.0}), dtype=torch.float32)
    assert torch.equal(moved["w"], w)
    assert torch.equal(moved["images"], model.decode(w, seeds=[0, 1, 2]))
    assert torch.equal(model.edit(base["w"], {"r_half": 0.0}, directions=d, seeds=[5, 6, 7])["images"],
                       model.decode(base["w"], seeds=[5, 6, 7]))


def test_refusals(latent, model):
    d = LatentDirections.load(latent)
    with pytest.raises(GalaugError, match=r"no direction for 'size'.*r_half"):
        model.sample(2, edit={"size": 1.0}, directions=d)
    with pytest.raises(GalaugError, match="another run"):  # same latent size, another training run
        load_generator(OTHER).sample(2, edit={"r_half": 1.0}, directions=LatentDirections.load(latent))
    small = LatentDirections({"r_half": Direction(np.eye(8)[0], 1.0, 0.9)}, run=d.run, source="small")
    with pytest.raises(GalaugError, match="latent dimension mismatch: its directions have 8 dimensions"):
        model.edit(np.zeros((1, model.w_dim)), {"r_half": 1.0}, directions=small)
    in_z = LatentDirections(d.directions, space="z", run=d.run, source="z")
    with pytest.raises(GalaugError, match="z space"):
        model.edit_latents(np.zeros((1, model.w_dim)), {"r_half": 1.0}, directions=in_z)
    with pytest.raises(GalaugError, match="needs directions"):
        model.sample(2, edit={"r_half": 1.0})
    assert parse_edits(["r_half=+1.0", "q=-0.5"]) == {"r_half": 1.0, "q": -0.5}
    for bad in (["r_half"], ["r_half=big"], ["=1"], ["q=1", "q=2"], ["q=nan"]):
        with pytest.raises(ValueError):
            parse_edits(bad)


def test_generate_edit_writes_edited_images_and_records_it(cli, latent, tmp_path):
    plain, edited = tmp_path / "plain.zarr", tmp_path / "edited.zarr"
    assert cli.invoke("generate", "alae", RUN, plain, "-n", "3", "--seed", "4").exit_code == 0
    result = cli.invoke("generate", "alae", RUN, edited, "-n", "3", "--seed", "4", "--edit", "r_half=+1.0",
                        "--edit", "x=-0.5", "--directions", latent)
    assert result.exit_code == 0, result.output
    a, b = open_dataset(plain).read(0, 3), open_dataset(edited).read(0, 3)
    d = LatentDirections.load(latent)
    np.testing.assert_allclose(b["latents"], a["latents"] + d.shift({"r_half": 1.0, "x": -0.5}), atol=1e-6)
    np.testing.assert_array_equal(b["z"], a["z"])
    assert not np.array_equal(b["images"], a["images"])
    config = open_dataset(edited).provenance[-1]["config"]
    assert config["edit"] == {"r_half": 1.0, "x": -0.5}
    assert config["directions"]["report"] == str(latent / "report.json")
    assert config["directions"]["run"]["path"] == str(RUN)
    assert set(config["directions"]["parameters"]) == {"r_half", "x"}
    assert "edit" not in open_dataset(plain).provenance[-1]["config"]


def test_generate_edit_refusals(cli, latent, tmp_path):
    out = tmp_path / "x.zarr"
    assert_user_error(cli.invoke("generate", "alae", RUN, out, "-n", "2", "--edit", "size=1",
                                 "--directions", latent), "no direction for 'size'", "r_half, n, q")
    assert_user_error(cli.invoke("generate", "alae", OTHER, out, "-n", "2", "--edit", "r_half=1",
                                 "--directions", latent), "another run", str(RUN))
    assert_user_error(cli.invoke("generate", "alae", RUN, out, "-n", "2", "--edit", "r_half=1"), "--directions")
    assert_user_error(cli.invoke("generate", "alae", RUN, out, "-n", "2", "--edit", "r_half",
                                 "--directions", latent), "NAME=SIGMAS")
    assert_user_error(cli.invoke("generate", "alae", RUN, out, "-n", "2", "--edit", "r_half=1",
                                 "--directions", RUN / "options.json"), "not a latent-structure report")
    assert not out.exists()


def test_attribute_editing_analysis(cli, latent, tmp_path):
    out = tmp_path / "editing"
    result = cli.invoke("analyze", "attribute-editing", RUN, latent, out, "--seed", "3", "--set", "n=8",
                        "--set", "parameters=r_half", "--set", "steps=-1,0,1", "--set", "fit_max_iter=100")
    assert result.exit_code == 0, result.output
    r = json.loads((out / "report.json").read_text())["results"]
    p = r["parameters"]["r_half"]
    assert list(r["parameters"]) == ["r_half"] and r["steps"] == [-1.0, 0.0, 1.0]
    assert p["median_change"]["r_half"][1] == 0.0  # step 0: the unedited samples themselves
    assert set(p["median_change"]) == {"x", "y", "r_half", "n", "q", "beta", "flux"}  # entanglement
    assert p["per_sigma"]["r_half"] == p["median_change"]["r_half"][2]
    assert isinstance(p["sign_ok"], bool) and p["spearman_rho"] is not None
    assert "| r_half |" in r["table"] and "| r_half |" in r["steps_table"]
    for figure in ("entanglement.png", "editing_strip.png"):
        assert figure in r["figures"] and (out / figure).stat().st_size > 1000
    assert_user_error(cli.invoke("analyze", "attribute-editing", RUN, latent, tmp_path / "bad",
                                 "--set", "parameters=size"), "no direction for 'size'")
    assert_user_error(cli.invoke("analyze", "attribute-editing", OTHER, latent, tmp_path / "other"),
                      "another run")
