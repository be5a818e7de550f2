"""The ALAE reference generator: networks, losses, checkpoints, resume, generation, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from galaug import load_generator, open_dataset
from galaug.generators import generate
from galaug.sources.sersic import SersicConfig
from galaug.sources.simulate import simulate
from galaug_alae.checkpoint import list_checkpoints
from galaug_alae.generator import Alae, AlaeConfig
from galaug_alae.model import Discriminator, Encoder, Mapping, NetConfig, Synthesis
from galaug.stretch import IntensityTransform

from test_cli import assert_user_error

TINY = ["--set", "image_size=16", "--set", "latent_dim=16", "--set", "mapping_layers=2", "--set", "fmap_base=64",
        "--set", "fmap_max=16", "--set", "batch_size=8", "--set", "log_every=1", "--set", "sample_every=1000",
        "--set", "transform_samples=64"]


def tiny_config(**kw) -> AlaeConfig:
    base = dict(image_size=16, latent_dim=16, mapping_layers=2, fmap_base=64, fmap_max=16, batch_size=8,
                log_every=1, sample_every=1000, transform_samples=64, checkpoint_every=1000)
    return AlaeConfig(**{**base, **kw})


@pytest.fixture
def cli(galaug_plugins):
    """The CLI with the alae plugin registered (discovery is blocked in tests)."""
    import galaug_alae

    assert galaug_plugins.register(galaug_alae, name="alae").status == "ok"
    return galaug_plugins


@pytest.fixture(scope="module")
def sersic16(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sersic16.zarr"
    cfg = SersicConfig(image_size=16, pixel_scale=0.8, r_half_range=(1.0, 2.5), noise_std=0.3)
    return simulate("sersic", path, 64, seed=0, config=cfg)


@pytest.fixture(scope="module")
def trained(sersic16, tmp_path_factory):
    """A run trained for 40 steps (shared by the tests that only read it)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"galaug_run": 1, "generator": "alae", "data": str(sersic16.path),
                                                  "data_id": sersic16.id, "seed": 0}))
    Alae(tiny_config(steps=40, checkpoint_every=20)).train(sersic16.path, run, seed=0)
    return run


@pytest.mark.parametrize("bands", [1, 3, 4])
@pytest.mark.parametrize("size", [16, 32])
def test_network_shapes(bands, size):
    cfg = NetConfig(bands=bands, image_size=size, latent_dim=24, mapping_layers=3, fmap_base=128, fmap_max=16)
    f, g, e, d = Mapping(cfg), Synthesis(cfg), Encoder(cfg), Discriminator(cfg)
    w = f(torch.randn(5, 24))
    image = g(w[:, None].expand(-1, g.num_layers, -1), g.random_noise(5))
    assert w.shape == (5, 24) and image.shape == (5, bands, size, size)
    assert e(image).shape == (5, 24) and d(e(image)).shape == (5,)
    low = g(w[:, None].expand(-1, g.num_layers, -1), g.random_noise(5, level=1), level=1, alpha=0.5)
    assert low.shape == (5, bands, 8, 8) and e(low, level=1, alpha=0.5).shape == (5, 24)


def test_noise_inputs_start_at_zero_and_matter_once_learned():
    cfg = NetConfig(bands=1, image_size=16, latent_dim=8, mapping_layers=1, fmap_base=32, fmap_max=8)
    g = Synthesis(cfg)
    styles = torch.randn(2, 1, 8).expand(-1, g.num_layers, -1)
    assert torch.equal(g(styles, g.random_noise(2)), g(styles, g.random_noise(2)))
    for block in g.blocks:
        block.layer1.noise_weight.data.fill_(0.5)
    assert not torch.equal(g(styles, g.random_noise(2)), g(styles, g.random_noise(2)))


def test_intensity_transform_round_trip_and_scale():
    rng = np.random.default_rng(0)
    images = (rng.normal(0, 2, (50, 2, 16, 16)) + np.array([0, 1000])[None, :, None, None]).astype(np.float32)
    images[:, :, 8, 8] += 1e5  # a bright core: a large dynamic range
    t = IntensityTransform.fit(images)
    x = torch.from_numpy(images)
    y = t.forward(x)
    assert float(y.abs().max()) < 2  # bright cores land near 1
    torch.testing.assert_close(t.inverse(y), x, rtol=1e-4, atol=1e-2)


def test_transform_measures_the_sky_noise_and_bounds_generated_values():
    """The sky noise is measured where there is no galaxy; the bound keeps the exponential inverse in range."""
    rng = np.random.default_rng(1)
    sigma = np.array([3.0, 10.0])
    yy, xx = np.mgrid[:32, :32] - 15.5
    radius = rng.uniform(1.5, 3, (300, 1, 1, 1))
    galaxies = 1e3 * np.exp(-np.hypot(yy, xx)[None, None] / radius) * np.array([1, 3])[None, :, None, None]
    images = (galaxies + rng.normal(0, 1, galaxies.shape) * sigma[None, :, None, None]).astype(np.float32)
    t = IntensityTransform.fit(images)
    np.testing.assert_allclose(t.sky_sigma.numpy(), sigma, rtol=0.1)
    y = t.forward(torch.from_numpy(images))
    inside = torch.linspace(0.1, 0.9, 9)[None, None, :, None].expand(1, 2, 9, 1) * (t.high - t.low)[None, :, None,
                                                                                                     None] + t.low[
        None, :, None, None]
    torch.testing.assert_close(t.bound(inside), inside, atol=0.04, rtol=0)  # the interior is left alone
    wild = torch.tensor([-50.0, 50.0])[None, None, :, None].expand(1, 2, 2, 1)
    bounded = t.inverse(t.bound(wild))
    assert float(bounded.max()) <= images.max() * 1.01 and float(bounded.min()) >= images.min() * 1.01
    assert float(t.inverse(wild).max()) > 1e20  # what the bound prevents: sinh of an overshoot
    legacy = IntensityTransform.from_state_dict({k: v for k, v in t.state_dict().items()
                                                 if k not in ("low", "high", "sky_sigma")})
    assert torch.equal(legacy.bound(wild), wild) and legacy.sky_sigma is None


def test_checkpoints_from_before_the_fixes_keep_their_behaviour(trained):
    """A checkpoint whose config predates output_bound and sky_noise samples exactly as it did."""
    from galaug_alae.checkpoint import load_checkpoint
    from galaug_alae.generator import AlaeModel

    state = load_checkpoint(trained)
    assert state["config"]["sky_noise"] == "data" and state["config"]["output_bound"] is True
    old = {**state, "config": {k: v for k, v in state["config"].items() if k not in ("sky_noise", "output_bound")}}
    model = AlaeModel.from_checkpoint(old, device="cpu")
    assert model.config.sky_noise == "network" and model.config.output_bound is False
    w = model.sample(model.micro_batch, seed=0)["w"]  # one micro-batch: the same arithmetic as decode's
    plain = model.transform.inverse(model.nets.G_ema(w[:, None].expand(-1, model.nets.G_ema.num_layers, -1),
                                                     model._noise([0] * len(w))[0]))
    torch.testing.assert_close(model.decode(w), plain, rtol=0, atol=0)


def test_samples_stay_within_the_training_range_and_carry_its_sky_noise(trained, sersic16):
    model = load_generator(trained)
    images = model.sample(64, seed=1)["images"].numpy()
    real = sersic16.read()["images"]
    span = real.max() - real.min()
    assert images.max() <= real.max() + 0.5 * span and images.min() >= real.min() - 0.5 * span
    # with G's noise inputs off, two decodes of one w differ by the sky noise alone, at the data's level
    for block in model.nets.G_ema.blocks:
        block.layer1.noise_weight.data.zero_()
        block.layer2.noise_weight.data.zero_()
    w = model.sample(8, seed=2)["w"]
    diff = (model.decode(w, seeds=range(8)) - model.decode(w, seeds=range(8, 16))).numpy()
    np.testing.assert_allclose(np.std(diff) / np.sqrt(2), float(model.transform.sky_sigma[0]), rtol=0.25)


def test_losses_are_finite_and_latent_reconstruction_falls(trained):
    logs = [json.loads(l) for l in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in logs] == list(range(1, 41))
    for key in ("loss_d", "loss_g", "loss_lae", "loss_r1", "images_per_s"):
        assert all(np.isfinite(l[key]) for l in logs), key
    lae = [l["loss_lae"] for l in logs]
    assert np.mean(lae[-5:]) < 0.5 * np.mean(lae[:5])


def test_checkpoints_hold_everything_and_keep_the_last_k(trained):
    ckpts = list_checkpoints(trained)
    assert [p.name for p in ckpts] == ["ckpt-00000040.pt", "ckpt-00000020.pt"]
    state = torch.load(ckpts[0], weights_only=True)
    assert {"nets", "opt_ed", "opt_fg", "transform", "rng", "step", "config", "layout"} <= set(state)
    assert any(k.startswith("F_ema.") for k in state["nets"]) and any(k.startswith("G_ema.") for k in state["nets"])


def test_generation_is_deterministic_per_sample(trained):
    model = load_generator(trained)
    a = model.sample(rows=[3, 4, 5], seed=7)
    b = model.sample(rows=[5], seed=7)
    torch.testing.assert_close(a["images"][2:], b["images"], rtol=0, atol=0)
    assert not torch.equal(model.sample(rows=[3], seed=8)["images"], a["images"][:1])
    assert a["images"].shape == (3, 1, 16, 16) and a["z"].shape == (3, 16) and a["w"].shape == (3, 16)
    x = a["images"]
    assert model.encode(x).shape == (3, 16) and model.reconstruct(x).shape == x.shape


def test_mapping_runs_once_per_batch_with_the_values_of_one_row_at_a_time(trained):
    """F sees the whole batch in one call, and each w has the bits it had when F ran row by row."""
    cfg = NetConfig(bands=1, image_size=16, latent_dim=32, mapping_layers=4)  # 32 x 32 weights: the BLAS path
    f = Mapping(cfg)
    for p in f.parameters():
        p.data.normal_(0, 3)
    z = torch.randn(37, 32)
    with torch.no_grad():
        rows = torch.cat([f(z[i:i + 1]) for i in range(len(z))])
        assert torch.equal(f(z, rowwise=True), rows)
        assert torch.equal(torch.cat([f(z[:5], rowwise=True), f(z[5:], rowwise=True)]), rows)
    model = load_generator(trained)
    calls = []
    model.nets.F_ema.register_forward_hook(lambda *args: calls.append(1))
    w = model.map(torch.randn(10, model.z_dim))
    assert len(calls) == 1 and w.shape == (10, model.z_dim)
    assert model.map(torch.zeros(0, model.z_dim)).shape == (0, model.z_dim)


def test_per_sample_draws_keep_their_values(trained):
    """z and the noise maps, drawn in one buffer, are the values of a fresh generator per sample and per map."""
    from galaug.degrade.seeds import derive_seeds

    model = load_generator(trained)
    seeds = [3, 2**62 + 5, 0]
    noise, sky = model._noise(seeds)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        for got, shape in zip([*noise, sky], [*model.nets.G_ema.noise_shapes(), sky.shape[1:]]):
            assert torch.equal(got[i], torch.randn(*shape, generator=g))
    rows = [4, 9]
    z = model.sample(rows=rows, seed=5)["z"]
    for zi, s in zip(z, derive_seeds(5, np.asarray(rows)).tolist()):
        assert torch.equal(zi, torch.randn(model.z_dim, generator=torch.Generator().manual_seed(s)))


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampling_keeps_the_values_and_the_layout(channels_last):
    from galaug_alae.model import upsample2x

    x = torch.randn(3, 16, 8, 8, requires_grad=True)
    x_in = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    want = torch.nn.functional.interpolate(x_in, scale_factor=2, mode="bilinear", align_corners=False)
    got = upsample2x(x_in)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last) == channels_last
    grad = torch.randn_like(want)
    assert torch.equal(torch.autograd.grad(got, x, grad)[0], torch.autograd.grad(want, x, grad)[0])


def test_training_toggles_and_optimisers():
    """train_only sets requires_grad as the module walks did; Adam runs foreach, also after loading a state."""
    from galaug_alae.generator import Nets, _optimizers

    cfg = tiny_config()
    nets = Nets(cfg.net(1))
    nets.train_only(nets.E, nets.D)
    flags = {name.split(".")[0]: p.requires_grad for name, p in nets.named_parameters()}
    assert flags == {"F": False, "G": False, "E": True, "D": True, "F_ema": False, "G_ema": False}
    opt_ed, opt_fg = _optimizers(nets, cfg)
    params = [*nets.E.parameters(), *nets.D.parameters()]
    twin = [p.detach().clone() for p in params]
    plain = torch.optim.Adam(twin, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=False)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, twin, grads):
            p.grad, q.grad = g, g.clone()
        opt_ed.step()
        plain.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twin))  # the same values as the loop over parameters
    saved = {"opt_ed": {**plain.state_dict()}, "opt_fg": opt_fg.state_dict()}
    saved["opt_ed"]["param_groups"] = [{**g, "foreach": None} for g in saved["opt_ed"]["param_groups"]]
    loaded, _ = _optimizers(Nets(cfg.net(1)), cfg, saved)
    assert all(g["foreach"] is True for g in loaded.param_groups)



@pytest.mark.parametrize("micro_batch", [2, 3])
def test_micro_batches_give_the_update_of_the_whole_batch(micro_batch):
    """A step in micro-batches of 2 (and 3: 3 + 3 + 2 rows) moves every parameter as the whole batch of 8 does, up
    to the order of float sums (the same z, style mixing, noise and sky noise; each loss scaled by its share), and
    no network ever sees more than ``micro_batch`` rows at once. Plain SGD, so an update is the learning rate times
    the gradient (Adam's first steps divide by the gradient's own size and magnify rounding, tests/ddp_step.py)."""
    from galaug_alae.generator import Nets, _train_step

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16] - 7.5
    galaxies = 100 * np.exp(-np.hypot(yy, xx)[None, None] / rng.uniform(1, 3, (8, 1, 1, 1)))
    images = (galaxies + rng.normal(0, 1, (8, 2, 16, 16))).astype(np.float32)  # sky noise: the sky draw is used
    transform = IntensityTransform.fit(images)
    x = transform.forward(torch.from_numpy(images))

    def one_step(size):
        cfg = tiny_config(micro_batch=size, style_mixing=1.0)
        torch.manual_seed(0)
        nets = Nets(cfg.net(2))
        before = {k: v.clone() for k, v in nets.state_dict().items()}
        rows = []
        for module in (nets.G, nets.E, nets.D):  # and F but for w = F(z) of the whole batch without a graph
            module.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
        opt_ed = torch.optim.SGD([*nets.E.parameters(), *nets.D.parameters()], lr=0.1)
        opt_fg = torch.optim.SGD([*nets.F.parameters(), *nets.G.parameters()], lr=0.1)
        logs = _train_step(nets, opt_ed, opt_fg, x, cfg, cfg.net(2).levels - 1, 1.0, 8, transform=transform)
        return before, nets.state_dict(), logs, max(rows)

    before, whole, logs_whole, rows_whole = one_step(None)
    _, parts, logs_parts, rows_parts = one_step(micro_batch)
    assert rows_whole == 8 and rows_parts == micro_batch
    moved = {key.split(".")[0] for key, value in whole.items() if not torch.equal(value, before[key])}
    assert moved == {"F", "G", "E", "D"}  # the EMA copies and w_avg are the training loop's
    for key, value in whole.items():  # weights of order 1 (equalized learning rate); sums in another order
        torch.testing.assert_close(parts[key], value, rtol=1e-5, atol=5e-5, msg=key)
    for name in ("loss_d", "loss_r1", "loss_g", "loss_lae", "d_real", "d_fake"):
        assert logs_parts[name] == pytest.approx(logs_whole[name], rel=1e-5), name
    torch.testing.assert_close(logs_parts["w_mean"], logs_whole["w_mean"], rtol=1e-5, atol=1e-6)


def test_micro_batch_must_fit_the_batch(cli, sersic16, tmp_path):
    for bad in (0, 9):
        with pytest.raises(ValueError, match=f"micro_batch must be from 1 to batch_size \\(8\\), got {bad}"):
            tiny_config(micro_batch=bad)
        assert_user_error(cli.invoke("train", "alae", sersic16.path, "--run-dir", tmp_path / "runs", *TINY,
                                     "--set", f"micro_batch={bad}"), "micro_batch must be from 1 to batch_size (8)")
        assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_out_of_memory_names_micro_batch(cli, sersic16, tmp_path, monkeypatch):
    """A step that runs out of memory (a GPU's OutOfMemoryError) is one line saying what to lower, not a plugin bug."""
    import galaug_alae.generator

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(galaug_alae.generator, "_train_step", out_of_memory)
    res = cli.invoke("train", "alae", sersic16.path, "--run-dir", tmp_path / "runs", *TINY)
    assert_user_error(res, "out of cpu memory in step 0, with 8 images through the networks at once",
                      "set micro_batch=4 or lower")
    assert list((tmp_path / "runs").iterdir()) == []
    res = cli.invoke("train", "alae", sersic16.path, "--run-dir", tmp_path / "runs", *TINY, "--set", "micro_batch=1")
    assert_user_error(res, "micro_batch is 1 already")

def test_generate_output_does_not_depend_on_batch_size(trained, tmp_path):
    a = generate(trained, tmp_path / "a.zarr", 10, seed=1, batch_size=3)
    b = generate(trained, tmp_path / "b.zarr", 10, seed=1, batch_size=10)
    assert np.array_equal(a.read()["images"], b.read()["images"])
    assert np.array_equal(a.read()["latents"], b.read()["latents"]) and a.z_dim == 16
    assert a.origin_counts() == {"real": 0, "generated": 10}
    entry = a.provenance[-1]
    assert entry["step"] == "generate" and entry["checkpoint_step"] == 40 and entry["seed"] == 1


def test_resume_ends_with_the_same_weights(sersic16, tmp_path):
    def run_dir(name):
        run = tmp_path / name
        run.mkdir()
        (run / "options.json").write_text(json.dumps({"galaug_run": 1, "generator": "alae", "seed": 0}))
        return run

    cfg = tiny_config(steps=10, checkpoint_every=4, style_mixing=0.5, r1_every=2)
    whole = run_dir("whole")
    Alae(cfg).train(sersic16.path, whole, seed=3)
    parts = run_dir("parts")
    Alae(cfg).train(sersic16.path, parts, steps=4, seed=3)  # "interrupted" after the checkpoint at step 4
    Alae(cfg).train(sersic16.path, parts, seed=3, resume=True)
    a = torch.load(list_checkpoints(whole)[0], weights_only=True)
    b = torch.load(list_checkpoints(parts)[0], weights_only=True)
    assert a["step"] == b["step"] == 10
    for key in a["nets"]:
        torch.testing.assert_close(a["nets"][key], b["nets"][key], rtol=0, atol=0, msg=key)
    steps = [json.loads(l)["step"] for l in (parts / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


def test_train_and_generate_from_the_cli(cli, sersic16, tmp_path):
    res = cli.invoke("train", "alae", sersic16.path, "--run-dir", tmp_path / "runs", "--steps", "3",
                                "--device", "cpu", *TINY)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "00000-alae-sersic16"
    options = json.loads((run / "options.json").read_text())
    assert options["config"]["image_size"] == 16 and options["data_id"] == sersic16.id
    res = cli.invoke("generate", "alae", run, tmp_path / "gen.zarr", "-n", "5", "--truncation", "0.7")
    assert res.exit_code == 0, res.output
    gen = open_dataset(tmp_path / "gen.zarr")
    assert gen.image_shape == (1, 16, 16) and gen.pixel_scale == sersic16.pixel_scale
    dry = cli.invoke("train", "alae", sersic16.path, "--preset", "tiny", "--dry-run")
    assert json.loads(dry.output)["config"]["image_size"] == 32


# -- bad input -----------------------------------------------------------------------------

def test_nan_pixels_are_refused_and_no_run_is_left(cli, make_dataset, tmp_path):
    import galaug

    ds = make_dataset(16, bands=("r",), size=16)
    images = ds.read()["images"]
    images[5, 0, 3, 3] = np.nan
    with galaug.create_dataset(tmp_path / "nan.zarr", bands=["r"], image_size=16,
                               provenance=galaug.make_entry("t")) as w:
        w.append(images)
    res = cli.invoke("train", "alae", tmp_path / "nan.zarr", "--run-dir", tmp_path / "runs", *TINY)
    assert_user_error(res, "NaN/Inf pixels")
    assert list((tmp_path / "runs").iterdir()) == []


def test_small_sets_train_over_many_epochs_or_are_refused(cli, make_dataset, tmp_path):
    """30 images in batches of 8: epochs of 3 batches whatever the shifted boundaries; 4 images: one clear line."""
    small = make_dataset(30, bands=("r",), size=16)
    res = cli.invoke("train", "alae", small.path, "--run-dir", tmp_path / "runs", *TINY, "--steps", "12",
                     "--set", "batch_size=8")
    assert res.exit_code == 0, res.output
    tiny = make_dataset(4, bands=("r",), size=16)
    assert_user_error(cli.invoke("train", "alae", tiny.path, "--run-dir", tmp_path / "runs2", *TINY,
                                 "--set", "batch_size=8"), "4 images, fewer than one batch of 8")


def test_image_size_must_be_a_power_of_two_and_match(cli, sersic16, tmp_path):
    assert_user_error(cli.invoke("train", "alae", sersic16.path, "--set", "image_size=24"),
                      "power of two from 16 to 256")
    assert_user_error(cli.invoke("train", "alae", sersic16.path, "--run-dir", tmp_path, "--set",
                                            "image_size=32"), "images are 16x16")


def test_not_a_run_and_unknown_preset(cli, sersic16, tmp_path):
    assert_user_error(cli.invoke("generate", "alae", tmp_path, tmp_path / "g.zarr", "-n", "2"),
                      "not a galaug run")
    assert_user_error(cli.invoke("train", "alae", sersic16.path, "--preset", "huge"),
                      "unknown preset 'huge'", "tiny, small, paper")


def test_truncated_newest_checkpoint_falls_back_with_a_warning(trained, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    newest = list_checkpoints(run)[0]
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="using ckpt-00000020.pt"):
        assert load_generator(run).step == 20


def test_checkpoint_of_another_model_or_with_pickled_code_is_refused(cli, trained, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    for ckpt in list_checkpoints(run):
        torch.save({"format": "someone-else/1", "weights": torch.zeros(3)}, ckpt)
    assert_user_error(cli.invoke("generate", "alae", run, tmp_path / "g.zarr", "-n", "2"),
                      "no loadable checkpoint", "not an ALAE checkpoint")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for ckpt in list_checkpoints(run):
        ckpt.write_bytes(pickle.dumps({"format": "galaug-alae/1", "x": Evil()}))
    assert_user_error(cli.invoke("generate", "alae", run, tmp_path / "g.zarr", "-n", "2"),
                      "no loadable checkpoint")
    assert not (tmp_path / "g.zarr").exists()


def test_progressive_schedule_grows_and_fades_in():
    from galaug_alae.generator import _schedule

    cfg = tiny_config(image_size=32, progressive=True, start_resolution=8, level_steps=10)
    net = cfg.net(1)
    seen = [_schedule(cfg, net, s) for s in range(0, 60, 5)]
    resolutions = [net.resolution(level) for level, _ in seen]
    assert resolutions[:2] == [8, 8] and resolutions[-1] == 32 and sorted(resolutions) == resolutions
    assert (1, 1.0) in seen and (2, 0.0) in seen and (2, 0.5) in seen  # stable 8 px, then 16 px fading in
    assert seen[-1] == (3, 1.0)


def test_progressive_training_ends_at_full_resolution(sersic16, tmp_path):
    run = tmp_path / "prog"
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"galaug_run": 1, "generator": "alae", "seed": 0}))
    cfg = tiny_config(steps=12, progressive=True, start_resolution=4, level_steps=2, r1_every=2)
    Alae(cfg).train(sersic16.path, run, seed=0)
    logs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["resolution"] for l in logs][0] == 4 and logs[-1]["resolution"] == 16
    assert any(0 < l["alpha"] < 1 for l in logs)
    assert load_generator(run).sample(2, seed=0)["images"].shape == (2, 1, 16, 16)
