"""Several processes: sharded writes equal to one process, gradient averaging, training under --nproc and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import galaug
from galaug.data.provenance import make_entry
from galaug.distributed import chunk_shard, strip_nproc

HERE = Path(__file__).parent
SHIPPED = HERE.parent / "examples" / "checkpoints" / "alae-sersic-tiny"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GALAUG_PROGRESS": "0"}


def galaug_cli(*args, env=None):
    exe = Path(sys.executable).with_name("galaug")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env or ENV, timeout=600)


def torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "galaug",
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def assert_same_dataset(a, b):
    a, b = galaug.open_dataset(a), galaug.open_dataset(b)
    assert len(a) == len(b) and a.fields == b.fields
    for field in a.fields:
        np.testing.assert_array_equal(a.read(0, len(a), fields=[field])[field], b.read(0, len(b), fields=[field])[field])


def test_chunk_shards_are_disjoint_chunk_aligned_and_cover_everything():
    for n, chunk, world in [(300, 128, 2), (1000, 7, 3), (5, 128, 4), (4096, 2048, 2)]:
        parts = [chunk_shard(n, chunk, r, world) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        for (a, b), (c, d) in zip(parts, parts[1:]):
            assert b == c and a % chunk == 0 and a <= b
    assert strip_nproc(["simulate", "--nproc", "2", "x", "--nproc=3", "-n", "5"]) == ["simulate", "x", "-n", "5"]


@pytest.mark.parametrize("gpus, local_ranks, backend", [(0, 2, "gloo"), (1, 1, "cpu:gloo,cuda:nccl"),
                                                        (2, 2, "cpu:gloo,cuda:nccl"), (1, 2, "gloo")])
def test_backend_is_nccl_only_with_a_gpu_per_process(monkeypatch, gpus, local_ranks, backend):
    """NCCL refuses two ranks on one GPU (--nproc 2 on a one-GPU machine): gloo then serves CUDA tensors too."""
    import torch.distributed as dist

    from galaug import distributed

    chosen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: chosen.setdefault("device", i))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: chosen.setdefault("backend", backend))
    for k, v in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": str(local_ranks),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    distributed.init()
    assert chosen["backend"] == backend
    if gpus:
        assert chosen["device"] == 1 % gpus


def test_simulate_with_two_processes_equals_one(tmp_path):
    """200 64x64 images are 2 chunks of 128, one per rank; the output is the one-process one."""
    args = ["simulate", "sersic", "-n", "200", "--size", "64", "--seed", "4"]
    assert galaug_cli(*args[:2], tmp_path / "one.zarr", *args[2:]).returncode == 0
    two = galaug_cli(*args[:2], tmp_path / "two.zarr", *args[2:], "--nproc", "2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote") == 1  # reported once, by rank 0
    assert galaug.open_dataset(tmp_path / "two.zarr").chunk_rows == 128
    assert_same_dataset(tmp_path / "one.zarr", tmp_path / "two.zarr")
    assert sorted(os.listdir(tmp_path)) == ["one.zarr", "two.zarr"]


def test_degrade_and_generate_under_torchrun_equal_one_process(tmp_path):
    """The real torchrun launcher, same environment contract as --nproc."""
    _noise_dataset(tmp_path / "in.zarr")
    spec = "psf:gaussian(sigma=1)|noise:gaussian(std=0.5)"
    assert galaug_cli("degrade", tmp_path / "in.zarr", tmp_path / "d1.zarr", "--degrade", spec, "--device", "cpu",
                      "--seed", "3").returncode == 0
    run = torchrun("degrade", tmp_path / "in.zarr", tmp_path / "d2.zarr", "--degrade", spec, "--device", "cpu",
                   "--seed", "3")
    assert run.returncode == 0, run.stderr
    assert_same_dataset(tmp_path / "d1.zarr", tmp_path / "d2.zarr")

    assert galaug_cli("generate", "alae", SHIPPED, tmp_path / "g1.zarr", "-n", "1100", "--seed", "5",
                      "--device", "cpu").returncode == 0
    run = torchrun("generate", "alae", SHIPPED, tmp_path / "g2.zarr", "-n", "1100", "--seed", "5", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert_same_dataset(tmp_path / "g1.zarr", tmp_path / "g2.zarr")


def _noise_dataset(path: Path, n: int = 5000) -> Path:
    rng = np.random.default_rng(0)
    with galaug.create_dataset(path, bands="gr", image_size=16, provenance=make_entry("t")) as w:
        w.append(rng.normal(size=(n, 2, 16, 16)).astype(np.float32) + 10)  # chunks of 1024 rows
    return path


def test_errors_of_a_multi_process_job_are_one_line_and_leave_nothing(tmp_path):
    src = _noise_dataset(tmp_path / "in.zarr")
    spec = ["--degrade", "noise:gaussian(std=1)", "--device", "cpu"]
    before = sorted(os.listdir(tmp_path))
    again = galaug_cli("degrade", src, src, *spec, "--nproc", "2")
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "output exists" in lines[0], again.stderr
    # the ranks killed while writing their chunks: no output, and a rerun succeeds
    killed = galaug_cli("degrade", src, tmp_path / "new.zarr", *spec, "--nproc", "2",
                        env={**ENV, "GALAUG_FAULT": "dataset.chunk"})
    assert killed.returncode != 0
    assert not (tmp_path / "new.zarr").exists()  # only a hidden temporary, which the next writer removes
    assert galaug_cli("degrade", src, tmp_path / "new.zarr", *spec, "--nproc", "2").returncode == 0
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "new.zarr"])
    assert len(galaug.open_dataset(tmp_path / "new.zarr")) == 5000


def test_two_processes_average_gradients_like_one_process_with_the_same_global_batch(tmp_path):
    """Two ALAE steps (R1, style mixing, noise) with SGD: the updates agree to 1e-3 of their size.

    Measured: 1.6e-4 (float32 sums in another order; E's instance norms make
    some gradients pure rounding). Without the gradient averaging the updates
    differ by 1.3 of their size, and a rank taking the wrong slice of the
    random draws or the data would differ at that scale too.
    """
    script = HERE / "ddp_step.py"
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    env = {**ENV, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "two.pt")], stderr=subprocess.PIPE,
                              text=True, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
        p.stderr.close()
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("one.pt", "two.pt"))
    torch.manual_seed(0)
    from galaug_alae.generator import AlaeConfig, Nets

    init = Nets(AlaeConfig(image_size=16, latent_dim=16, mapping_layers=2, fmap_base=64, fmap_max=16).net(2))
    init = init.state_dict()
    keys = [k for k in init if init[k].dtype.is_floating_point and k != "w_avg"]
    da = torch.cat([(a["nets"][k] - init[k]).flatten() for k in keys])
    db = torch.cat([(b["nets"][k] - init[k]).flatten() for k in keys])
    assert da.norm() > 0
    assert (da - db).norm() / da.norm() < 1e-3
    assert a["loss_d"] == pytest.approx(b["loss_d"], rel=1e-4)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_alae_and_denoiser_train_with_two_processes(tmp_path):
    """--nproc 2: one run directory, rank 0's logs once, first-step losses equal to one process, resume works."""
    assert galaug_cli("simulate", "sersic", tmp_path / "s.zarr", "-n", "64", "--size", "16").returncode == 0
    common = ["--preset", "tiny", "--set", "image_size=16", "--set", "batch_size=8", "--set", "log_every=1",
              "--set", "checkpoint_every=2", "--set", "sample_every=100", "--device", "cpu"]
    one = galaug_cli("train", "alae", tmp_path / "s.zarr", "--steps", "3", "--run-dir", tmp_path / "one", *common)
    assert one.returncode == 0, one.stderr
    two = galaug_cli("train", "alae", tmp_path / "s.zarr", "--steps", "3", "--run-dir", tmp_path / "two", *common,
                     "--nproc", "2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run directory:") == 1
    [run_one], [run_two] = (list((tmp_path / d).iterdir()) for d in ("one", "two"))
    m1, m2 = _metrics(run_one), _metrics(run_two)
    assert [m["step"] for m in m2] == [1, 2, 3]  # logged once, not once per rank
    assert m2[0]["loss_d"] == pytest.approx(m1[0]["loss_d"], rel=1e-5)  # before any update: the same batch
    resumed = galaug_cli("train", "alae", tmp_path / "s.zarr", "--resume", run_two, "--steps", "5", "--device", "cpu",
                         "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert [m["step"] for m in _metrics(run_two)] == [1, 2, 3, 4, 5]
    gpu_options = galaug_cli("train", "alae", tmp_path / "s.zarr", "--steps", "2", "--run-dir", tmp_path / "amp",
                             *common, "--set", "amp=bf16", "--set", "channels_last=true", "--set", "loader_workers=1")
    assert gpu_options.returncode == 0, gpu_options.stderr  # the GPU options run on the CPU too
    [run_amp] = list((tmp_path / "amp").iterdir())
    assert all(np.isfinite(m["loss_lae"]) and np.isfinite(m["loss_d"]) for m in _metrics(run_amp))
    odd = galaug_cli("train", "alae", tmp_path / "s.zarr", "--steps", "1", "--run-dir", tmp_path / "odd",
                     *common[:4], "--set", "batch_size=5", "--device", "cpu", "--nproc", "2")
    assert odd.returncode == 2 and "does not split over 2 processes" in odd.stderr
    assert len(odd.stderr.strip().splitlines()) == 1, odd.stderr

    spec = "psf:gaussian(sigma=1)|noise:gaussian(std=0.01)"
    den = ["task", "train", "denoise", tmp_path / "s.zarr", "--degrade", spec, "--set", "epochs=1", "--set",
           "width=8", "--set", "blocks=1", "--device", "cpu"]
    assert galaug_cli(*den, "--run-dir", tmp_path / "d1").returncode == 0
    run = galaug_cli(*den, "--run-dir", tmp_path / "d2", "--nproc", "2")
    assert run.returncode == 0, run.stderr
    [d1], [d2] = (list((tmp_path / d).iterdir()) for d in ("d1", "d2"))
    (e1,), (e2,) = _metrics(d1), _metrics(d2)
    assert e2["train_loss"] == pytest.approx(e1["train_loss"], rel=1e-3)
    assert (d2 / "checkpoints").is_dir()
