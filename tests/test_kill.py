"""Killed at any point: simulate, ingest, degrade, mix, generate, train, task train, split, export, analyze and
report are SIGKILLed, then rerun.

Each case runs a real ``galaug`` command in its own process with
``GALAUG_FAULT=POINT[:K]`` (``galaug/faults.py``), so that it kills itself
with SIGKILL there, or kills it at a seeded random moment, and then checks
what is on disk: no output (dataset, FITS folder, analysis folder, report
page) under the final name (with ``--overwrite``: the complete old one, or
the complete new one once renamed), and a rerun that succeeds and writes
exactly what an uninterrupted run writes, leaving nothing else behind. A
killed training (a generator's or a task's) is resumed and must end with
bit-identical weights, optimiser state and RNG state.

The processes are forked from one "zygote" that has imported torch and
galaug once (:func:`_zygote`); a fresh interpreter would spend seconds on
imports before every case. One test starts a fresh ``galaug`` to show the
variable works there too. The reruns run in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import galaug
from galaug import faults
from galaug.cli import make_cli
from galaug.errors import DatasetError
from galaug.pluginmanager import AUTOLOAD_ENV

from conftest import galaxy_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 140  # 64 x 64 x 1 float32: 128 rows a chunk, so one whole chunk, then a partial one
TINY = ["--set", "latent_dim=16", "--set", "mapping_layers=2", "--set", "fmap_base=64", "--set", "fmap_max=16",
        "--set", "batch_size=8", "--set", "log_every=1", "--set", "sample_every=1000", "--set", "transform_samples=64"]
STEPS = 8
TRAIN = ["--steps", STEPS, "--device", "cpu", "--seed", 3, *TINY, "--set", "image_size=16",
         "--set", "checkpoint_every=3"]
ENV = {"OMP_NUM_THREADS": "1", "GALAUG_PROGRESS": "0"}


def galaug_cli(*args):
    """``galaug ARGS`` in this process (the reruns)."""
    return CliRunner().invoke(make_cli(), [str(a) for a in args])


def _clean_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in (AUTOLOAD_ENV, faults.ENV)}, **ENV}


# -- the processes that get killed ----------------------------------------------------------

def _zygote() -> None:
    """Serve ``galaug`` runs: import everything once, then fork one child per request (a JSON line).

    A child is a process of its own that sets ``GALAUG_FAULT``, re-reads it
    and runs the console entry point ``galaug.cli.main(args)``. Nothing has
    touched Zarr or started a thread before the fork. Replies with the
    child's pid, then reads ``wait`` or ``kill`` (SIGKILL it now: it is not
    reaped before, so its pid cannot be another process's) and replies with
    its exit status (-9: killed).
    """
    import importlib

    import galaug.data.writer as writer
    from galaug.cli import main
    from galaug.pluginmanager import get_manager
    from galaug.registry import component_version

    torch.set_num_threads(1)
    for kind, name in (("generator", "alae"), ("source", "sersic"), ("source", "npy"), ("task", "denoise"),
                       ("analysis", "memorisation")):
        component_version(get_manager().get(kind, name))  # reads the installed packages' metadata once
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo here, not in every child
    import astropy.io.fits  # noqa: F401 - for export
    import matplotlib.pyplot  # noqa: F401 - for the sample grids and the analysis' figures

    print("ready", flush=True)
    while line := sys.stdin.readline():
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            if job["fault"]:
                os.environ[faults.ENV] = job["fault"]
            importlib.reload(faults)
            if not job["exchange"]:  # as where two paths cannot be swapped atomically
                writer._exchange = lambda a, b: False
            signal.alarm(300)  # a child that hangs ends (status -14) instead of the test run
            code = 1
            try:
                main(job["args"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(pid, flush=True)
        if sys.stdin.readline().strip() == "kill":
            os.kill(pid, signal.SIGKILL)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


def _running(pid: int) -> bool:
    """False once the child has exited (it stays a zombie until the zygote reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # no /proc: rely on the deadline
        return True


class Runs:
    """``galaug`` commands in processes forked from the zygote."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.count = logs, 0
        self.proc = subprocess.Popen([sys.executable, __file__, "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=_clean_env(), text=True)
        self.ready = False

    def run(self, args, fault: str | None = None, *, exchange: bool = True, kill_when=None,
            window: float = 0.0, rng=None) -> int:
        """Exit status of ``galaug ARGS`` run with ``GALAUG_FAULT=fault``; or, given ``kill_when``,
        SIGKILLed a random 0 to ``window`` seconds after ``kill_when()`` turns true.

        0 (a random kill came too late) or -9; anything else fails with the command's output.
        """
        if not self.ready:
            assert self.proc.stdout.readline().strip() == "ready", "the zygote did not start"
            self.ready = True
        self.count += 1
        log = self.logs / f"{self.count}.log"
        job = {"args": [str(a) for a in args], "fault": fault, "exchange": exchange, "log": str(log)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        if kill_when is not None:
            deadline = time.monotonic() + 120
            while _running(pid) and not kill_when() and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, window))
        self.proc.stdin.write("kill\n" if kill_when is not None else "wait\n")
        self.proc.stdin.flush()
        rc = int(self.proc.stdout.readline())
        assert rc in (-signal.SIGKILL, 0), log.read_text()
        return rc

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    zygote = Runs(tmp_path_factory.mktemp("logs"))  # imports while `inputs` is built
    yield zygote
    zygote.close()


# -- inputs, and what every command writes when nobody kills it ------------------------------

def fill(args, out):
    return [out if a == "{out}" else a for a in args]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    images = galaxy_images(N, bands=1, size=64)
    np.save(root / "stack.npy", images)
    with galaug.create_dataset(root / "real.zarr", bands="r", image_size=64, provenance=galaug.make_entry("t")) as w:
        w.append(images)
    with galaug.create_dataset(root / "r16.zarr", bands="r", image_size=16, provenance=galaug.make_entry("t")) as w:
        w.append(galaxy_images(64, bands=1, size=16, seed=1))
    res = galaug_cli("train", "alae", root / "real.zarr", "--run-dir", root / "runs", "--steps", 1, "--device", "cpu",
                     *TINY, "--set", "image_size=64")
    assert res.exit_code == 0, res.output
    (run,) = (root / "runs").iterdir()
    args = {
        "simulate": ["simulate", "sersic", "{out}", "-n", N, "--size", 64, "--set", "n_range=[1.0, 1.0]"],
        "ingest": ["ingest", root / "stack.npy", "{out}", "--bands", "r"],
        "degrade": ["degrade", root / "real.zarr", "{out}", "--degrade", "psf:gaussian(sigma=1)|noise:gaussian(std=1)",
                    "--batch-size", 64, "--device", "cpu"],
        "mix": ["mix", "{out}", "--real-data", root / "real.zarr", "--real", 130, "--gen-data", root / "real.zarr",
                "--gen", 20],
        "generate": ["generate", "alae", run, "{out}", "-n", 150, "--batch-size", 64, "--device", "cpu"],
    }
    refs = root / "refs"
    refs.mkdir()
    res = galaug_cli("simulate", "sersic", refs / "old.zarr", "-n", 40, "--size", 64, "--seed", 1)
    assert res.exit_code == 0, res.output
    seconds = {}  # how long a warm run takes on this machine now: the window of the random kills
    for name, a in [*args.items(), ("train", ["train", "alae", root / "r16.zarr", "--run-dir", refs / "runs", *TRAIN])]:
        t = time.perf_counter()
        res = galaug_cli(*fill(a, refs / f"{name}.zarr"))
        seconds[name] = time.perf_counter() - t
        assert res.exit_code == 0, res.output
    (train_ref,) = (refs / "runs").iterdir()
    return {"root": root, "args": args, "refs": refs, "train_ref": train_ref, "seconds": seconds}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same_data(path: Path, reference: Path) -> None:
    got, want = galaug.open_dataset(path).read(), galaug.open_dataset(reference).read()
    assert got.keys() == want.keys()
    for field in want:
        if want[field].dtype.names:  # the objects table: column by column, NaN (unknown) equal to NaN
            for column in want[field].dtype.names:
                np.testing.assert_array_equal(got[field][column], want[field][column], err_msg=f"{field} {column}")
        else:
            assert np.array_equal(got[field], want[field]), field


# -- datasets: simulate, ingest, degrade, mix, generate --------------------------------------

CASES = [
    *[(cmd, point, False) for cmd in ("simulate", "ingest", "degrade", "mix", "generate")
      for point in ("dataset.start", "dataset.chunk:1", "dataset.rename")],
    ("simulate", "dataset.rename", True),   # replacing a dataset: the old one stays whole
    ("simulate", "dataset.renamed", True),  # the new one is in place, the old one not yet removed
    ("simulate", "dataset.aside", True),    # no atomic exchange: old moved aside, new not yet in place
]


@pytest.mark.parametrize(("command", "fault", "overwrite"), CASES,
                         ids=[f"{c}-{f}{'-overwrite' if o else ''}" for c, f, o in CASES])
def test_killed_command_leaves_no_dataset_and_a_rerun_writes_the_same(runs, inputs, tmp_path, command, fault,
                                                                      overwrite):
    out = tmp_path / "out.zarr"
    args = fill(inputs["args"][command], out)
    if overwrite:
        shutil.copytree(inputs["refs"] / "old.zarr", out)
        args.append("--overwrite")
    assert runs.run(args, fault, exchange=fault != "dataset.aside") == -signal.SIGKILL
    assert hidden(tmp_path)  # what the killed writer left
    if fault == "dataset.renamed":
        assert_same_data(out, inputs["refs"] / f"{command}.zarr")
    elif overwrite and fault != "dataset.aside":
        assert_same_data(out, inputs["refs"] / "old.zarr")
    else:
        with pytest.raises(DatasetError, match="no such"):
            galaug.open_dataset(out)
    if fault == "dataset.aside":  # the next writer of the name puts the old dataset back first
        res = galaug_cli(*args[:-1])
        assert res.exit_code == 2 and "output exists" in res.stderr
        assert_same_data(out, inputs["refs"] / "old.zarr")
    res = galaug_cli(*args)
    assert res.exit_code == 0, res.output
    assert_same_data(out, inputs["refs"] / f"{command}.zarr")
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]  # nothing else left behind


@pytest.mark.parametrize("repetition", range(4))
def test_simulate_killed_at_a_random_moment(runs, inputs, tmp_path, repetition):
    out = tmp_path / "out.zarr"
    args = fill(inputs["args"]["simulate"], out)
    runs.run(args, kill_when=lambda: bool(hidden(tmp_path)), window=inputs["seconds"]["simulate"],
             rng=np.random.default_rng([7, repetition]))
    if not out.exists():
        res = galaug_cli(*args)
        assert res.exit_code == 0, res.output
    assert_same_data(out, inputs["refs"] / "simulate.zarr")  # complete, whether renamed before the kill or rerun
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]


def test_the_next_writer_removes_what_dead_writers_left_and_spares_live_ones(tmp_path):
    from galaug.data.writer import check_output

    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    (tmp_path / f".report.html.tmp-{gone.pid}-0123abcd").write_text("<html>half")  # a file, not a folder
    (tmp_path / f".report.html.tmp-{os.getpid()}-0123abcd").write_text("<html>being written")
    check_output(tmp_path / "report.html", overwrite=False, what="file")
    assert hidden(tmp_path) == [f".report.html.tmp-{os.getpid()}-0123abcd"]


def test_the_fault_variable_kills_a_fresh_galaug_process(inputs, tmp_path):
    out = tmp_path / "out.zarr"
    exe = Path(sys.executable).with_name("galaug")
    proc = subprocess.run([str(exe), *map(str, fill(inputs["args"]["simulate"], out))], capture_output=True,
                          env={**_clean_env(), faults.ENV: "dataset.chunk:1"}, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists() and hidden(tmp_path)


# -- train: killed, resumed, identical --------------------------------------------------------

def _flat(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix: value}


def assert_same_training(run: Path, reference: Path) -> None:
    """Bit-identical final checkpoints; every step logged once; no stray files among the checkpoints."""
    a, b = (torch.load(r / "checkpoints" / f"ckpt-{STEPS:08d}.pt", weights_only=True) for r in (run, reference))
    for part in ("nets", "opt_ed", "opt_fg", "rng"):
        flat_a, flat_b = _flat(a[part]), _flat(b[part])
        assert flat_a.keys() == flat_b.keys()
        for key, value in flat_a.items():
            same = torch.equal(value, flat_b[key]) if isinstance(value, torch.Tensor) else value == flat_b[key]
            assert same, f"{part}: {key}"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))
    assert all(re.fullmatch(r"ckpt-\d+\.pt", p.name) for p in (run / "checkpoints").iterdir())


TRAIN_CASES = [
    ("checkpoint.write:2", [3]),  # while writing the checkpoint of step 6: resumes from step 3
    ("train.step:5", [3]),        # between two checkpoints
    ("train.step:2", []),         # before the first checkpoint: starts again from step 0
]


@pytest.mark.parametrize(("fault", "checkpoints"), TRAIN_CASES, ids=[f for f, _ in TRAIN_CASES])
def test_killed_training_resumes_and_ends_identical(runs, inputs, tmp_path, fault, checkpoints):
    data = inputs["root"] / "r16.zarr"
    assert runs.run(["train", "alae", data, "--run-dir", tmp_path, *TRAIN], fault) == -signal.SIGKILL
    (run,) = tmp_path.iterdir()
    assert [int(p.stem[5:]) for p in sorted(run.glob("checkpoints/ckpt-*.pt"))] == checkpoints
    res = galaug_cli("train", "alae", data, "--resume", run, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert_same_training(run, inputs["train_ref"])


@pytest.mark.parametrize("repetition", range(3))
def test_training_killed_at_a_random_moment_resumes_identical(runs, inputs, tmp_path, repetition):
    data = inputs["root"] / "r16.zarr"
    runs.run(["train", "alae", data, "--run-dir", tmp_path, *TRAIN], kill_when=lambda: any(tmp_path.glob("*/*.jsonl")),
             window=inputs["seconds"]["train"], rng=np.random.default_rng([11, repetition]))
    (run,) = tmp_path.iterdir()
    res = galaug_cli("train", "alae", data, "--resume", run, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert_same_training(run, inputs["train_ref"])


# -- task train, split, export, analyze, report -----------------------------------------------

EPOCHS = 4
TASK = ["--degrade", "noise:gaussian(std=1)", "--device", "cpu", "--seed", 3,
        *[x for item in ("width=4", "blocks=1", "batch_size=8", f"epochs={EPOCHS}", "holdout=0", "checkpoint_every=2",
                         "max_steps_per_epoch=2", "normalize_samples=32") for x in ("--set", item)]]
# two steps an epoch; best.pt every epoch (no held-out part), ckpt-2 and ckpt-4: checkpoint.write K = 1 to 6 is
# best 1, best 2, ckpt 2, best 3, best 4, ckpt 4
REPORT = """title = "kill"
[[section]]
title = "memorisation"
analysis = "mem"
"""


def fill_in(args, folder: Path) -> list[str]:
    return [str(a).replace("{dir}", str(folder)) for a in args]


@pytest.fixture(scope="module")
def outputs(inputs):
    """The other commands' arguments (``{dir}`` for the test's folder), reference outputs and warm run times."""
    root, refs = inputs["root"], inputs["refs"] / "outputs"
    refs.mkdir()
    r16 = root / "r16.zarr"
    (refs / "report.toml").write_text(REPORT)
    args = {
        "split": ["split", r16, "--val", "0.25", "--seed", 2, "--train-out", "{dir}/train.zarr",
                  "--val-out", "{dir}/val.zarr"],
        "export": ["export", r16, "{dir}/fits", "--limit", 12],
        "analyze": ["analyze", "memorisation", r16, refs / "train.zarr", refs / "val.zarr", "{dir}/mem"],
        "report": ["report", refs / "report.toml", "{dir}/report.html"],
        "task": ["task", "train", "denoise", r16, "--run-dir", "{dir}", *TASK],
    }
    seconds = {}
    for name, a in args.items():  # in this order: analyze reads the split, report the analysis
        t = time.perf_counter()
        res = galaug_cli(*fill_in(a, refs))
        seconds[name] = time.perf_counter() - t
        assert res.exit_code == 0, res.output
    (task_ref,) = refs.glob("0*-denoise-*")
    return {"args": args, "refs": refs, "task_ref": task_ref, "seconds": seconds, "r16": r16}


#: what each command writes in the test's folder
FINAL = {"split": ["train.zarr", "val.zarr"], "export": ["fits"], "analyze": ["mem"], "report": ["report.html"]}


def make_old(command: str, folder: Path) -> None:
    """A complete previous output under the final name, for --overwrite."""
    if command == "report":
        (folder / "report.html").write_text("old page")
    else:
        (folder / FINAL[command][0]).mkdir()
        (folder / FINAL[command][0] / "old.txt").write_text("old")


def is_old(command: str, folder: Path) -> bool:
    if command == "report":
        return (folder / "report.html").read_text() == "old page"
    return sorted(p.name for p in (folder / FINAL[command][0]).iterdir()) == ["old.txt"]


def assert_same_output(command: str, folder: Path, reference: Path) -> None:
    """What an uninterrupted run writes (the analysis' timing aside)."""
    if command == "split":
        for name in FINAL["split"]:
            assert_same_data(folder / name, reference / name)
        return
    got, want = folder / FINAL[command][0], reference / FINAL[command][0]
    if command == "report":
        assert got.read_bytes() == want.read_bytes()
        return
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())
    if command == "export":
        for p in want.iterdir():
            assert (got / p.name).read_bytes() == p.read_bytes(), p.name
        return
    a, b = (json.loads((f / "report.json").read_text())["results"] for f in (got, want))
    a.pop("timing"), b.pop("timing")
    assert a == b
    with np.load(got / "nearest.npz") as x, np.load(want / "nearest.npz") as y:
        assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)


OUTPUT_CASES = [
    ("split", "dataset.start:2", False),    # both temporaries started: nothing under either name
    ("split", "dataset.rename:2", False),   # train in place, val complete but not yet: the rerun finishes the pair
    ("export", "export.file:5", False),
    ("export", "dataset.rename", True),     # replacing a folder: the old one stays whole
    ("export", "dataset.renamed", True),    # the new one is in place, the old one not yet removed
    ("analyze", "analyze.results", False),  # the figures are written, report.json not yet
    ("analyze", "dataset.rename", True),
    ("report", "dataset.rename", True),     # the page is written under its temporary name
    ("report", "dataset.renamed", True),
]


@pytest.mark.parametrize(("command", "fault", "overwrite"), OUTPUT_CASES,
                         ids=[f"{c}-{f}{'-overwrite' if o else ''}" for c, f, o in OUTPUT_CASES])
def test_killed_output_command_leaves_old_or_new_output_and_a_rerun_writes_the_same(runs, outputs, tmp_path, command,
                                                                                    fault, overwrite):
    args = fill_in(outputs["args"][command], tmp_path)
    if overwrite:
        make_old(command, tmp_path)
        args.append("--overwrite")
    assert runs.run(args, fault) == -signal.SIGKILL
    assert hidden(tmp_path)  # what the killed writer left
    if fault == "dataset.renamed":
        assert_same_output(command, tmp_path, outputs["refs"])
    elif overwrite:
        assert is_old(command, tmp_path)
    elif fault == "dataset.rename:2":  # one of the pair in place, complete
        assert not (tmp_path / "val.zarr").exists()
        assert_same_data(tmp_path / "train.zarr", outputs["refs"] / "train.zarr")
    else:
        assert not any((tmp_path / name).exists() for name in FINAL[command])
    res = galaug_cli(*args)
    assert res.exit_code == 0, res.output
    assert_same_output(command, tmp_path, outputs["refs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == FINAL[command]  # nothing else left behind


@pytest.mark.parametrize("command", ["split", "export", "analyze", "report"])
def test_output_command_killed_at_a_random_moment(runs, outputs, tmp_path, command):
    """Old or new output at every moment (--overwrite but for split's pair), and a rerun writes the new one."""
    args = fill_in(outputs["args"][command], tmp_path)
    if command != "split":
        make_old(command, tmp_path)
        args.append("--overwrite")
    runs.run(args, kill_when=lambda: bool(hidden(tmp_path)), window=outputs["seconds"][command],
             rng=np.random.default_rng([13, len(command)]))
    if command == "split":  # each of the pair complete where it is in place
        there = [name for name in FINAL["split"] if (tmp_path / name).exists()]
        for name in there:
            assert_same_data(tmp_path / name, outputs["refs"] / name)
    elif not is_old(command, tmp_path):
        assert_same_output(command, tmp_path, outputs["refs"])
    if command != "split" or len(there) < 2:
        res = galaug_cli(*args)
        assert res.exit_code == 0, res.output
    assert_same_output(command, tmp_path, outputs["refs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == FINAL[command]


def test_split_replaces_only_the_half_that_the_same_split_left(outputs, tmp_path):
    """The rerun of a split killed between its two renames replaces the one output in place without
    --overwrite; one that another split left (other seed) is refused as usual."""
    args = fill_in(outputs["args"]["split"], tmp_path)
    other = [*args[:5], 5, *args[6:]]  # --seed 5
    assert galaug_cli(*other).exit_code == 0
    shutil.rmtree(tmp_path / "val.zarr")
    res = galaug_cli(*args)
    assert res.exit_code == 2 and "output exists" in res.stderr
    assert galaug_cli(*other).exit_code == 0  # the same split: the half in place is replaced
    assert galaug_cli(*args, "--overwrite").exit_code == 0
    assert_same_output("split", tmp_path, outputs["refs"])


def assert_same_task_training(run: Path, reference: Path) -> None:
    """Bit-identical last checkpoint and best.pt; every epoch logged once; no stray files among the checkpoints."""
    for name in (f"ckpt-{EPOCHS:06d}.pt", "best.pt"):
        a, b = (_flat(torch.load(r / "checkpoints" / name, weights_only=True)) for r in (run, reference))
        assert a.keys() == b.keys()
        for key, value in a.items():
            same = torch.equal(value, b[key]) if isinstance(value, torch.Tensor) else value == b[key]
            assert same, f"{name}: {key}"
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))
    assert all(re.fullmatch(r"ckpt-\d+\.pt|best\.pt", p.name) for p in (run / "checkpoints").iterdir())


TASK_CASES = [
    ("checkpoint.write:6", [2]),  # while writing the checkpoint of epoch 4: resumes from epoch 2
    ("checkpoint.write:4", [2]),  # while writing best.pt of epoch 3
    ("train.step:5", [2]),        # in epoch 3, between two checkpoints
    ("train.step:2", []),         # before the first checkpoint: starts again from epoch 0
]


@pytest.mark.parametrize(("fault", "checkpoints"), TASK_CASES, ids=[f for f, _ in TASK_CASES])
def test_killed_task_training_resumes_and_ends_identical(runs, outputs, tmp_path, fault, checkpoints):
    assert runs.run(fill_in(outputs["args"]["task"], tmp_path), fault) == -signal.SIGKILL
    (run,) = tmp_path.iterdir()
    assert [int(p.stem[5:]) for p in sorted(run.glob("checkpoints/ckpt-*.pt"))] == checkpoints
    res = galaug_cli("task", "train", "denoise", outputs["r16"], "--resume", run, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert_same_task_training(run, outputs["task_ref"])


@pytest.mark.parametrize("repetition", range(2))
def test_task_training_killed_at_a_random_moment_resumes_identical(runs, outputs, tmp_path, repetition):
    runs.run(fill_in(outputs["args"]["task"], tmp_path), kill_when=lambda: any(tmp_path.glob("*/*.jsonl")),
             window=outputs["seconds"]["task"], rng=np.random.default_rng([17, repetition]))
    (run,) = tmp_path.iterdir()
    res = galaug_cli("task", "train", "denoise", outputs["r16"], "--resume", run, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert_same_task_training(run, outputs["task_ref"])


# -- the points ------------------------------------------------------------------------------

def test_every_fault_point_is_marked_in_the_code_and_tested_here():
    root = Path(galaug.__file__).parent.parent
    marked = set()
    for path in [*root.glob("galaug/**/*.py"), *root.glob("plugins/*/galaug_*/**/*.py")]:
        marked |= set(re.findall(r"faults\.point\(\"([^\"]+)\"\)", path.read_text()))
    assert marked == set(faults.POINTS)
    tested = {f.partition(":")[0] for _, f, _ in [*CASES, *OUTPUT_CASES]} | \
        {f.partition(":")[0] for f, _ in [*TRAIN_CASES, *TASK_CASES]}
    assert tested == set(faults.POINTS)


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    _zygote()
