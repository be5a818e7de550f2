"""Reliability under damage and scarcity: corrupt datasets, full and read-only disks, misbehaving plugins.

Each section proves one promise of docs/reliability.md:

1. a dataset with a missing, truncated or altered chunk, or wrong metadata,
   is an error naming the dataset and the member, never silently wrong data;
2. an output on a full or read-only disk is one error line, the inputs are
   untouched and nothing is left behind;
3. a plugin that raises in a hook, or hands galaug garbage, is reported by
   name and everything else keeps working.

Bounded memory is measured by ``benchmarks/memory.py``, not here (no timed
or sized tests).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import astropy.units as u
import click
import numpy as np
import pytest
import zarr
from test_cli import assert_user_error

import galaug
from galaug import DatasetError, make_entry, open_dataset
from galaug.kinds import Analysis, Layout, Simulator, Source

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RUN = ROOT / "examples" / "checkpoints" / "alae-sersic-tiny"  # 32 x 32, one band


def digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file below ``root``: equal digests mean byte-identical trees."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# == 1. corrupt datasets =======================================================================
#
# The test datasets have 40 rows in chunks of 8 (conftest.make_dataset), so chunk 1 holds rows 8-15.

def _edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))


def _edit_member_meta(path: Path, member: str, change, *, consolidated: bool = True) -> None:
    """Change a member's metadata in its zarr.json and (unless told) in the consolidated copy alike."""
    _edit_json(path / member / "zarr.json", change)
    if consolidated:
        _edit_json(path / "zarr.json", lambda d: change(d["consolidated_metadata"]["metadata"][member]))


def _edit_attrs(path: Path, change) -> None:
    _edit_json(path / "zarr.json", lambda d: change(d["attributes"]["galaug"]))


def _chunk(path: Path, member: str = "images", i: int = 1) -> Path:
    arr = zarr.open_array(str(path / member), mode="r")
    return path / member / arr.metadata.encode_chunk_key((i,) + (0,) * (arr.ndim - 1))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_a_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x55
    file.write_bytes(bytes(data))


def _set(key, value):
    def change(d):
        d[key] = value
    return change


#: name -> (damage, member named in the error, what the error says)
DAMAGE = {
    "missing-images-chunk": (lambda p: _chunk(p).unlink(), "images", "chunk file images/c/1/0/0/0 (rows 8-15) is missing"),
    "missing-origin-chunk": (lambda p: _chunk(p, "origin", 0).unlink(), "origin",
                             "chunk file origin/c/0 (rows 0-39) is missing"),  # small members: 128 rows a chunk
    "truncated-chunk": (lambda p: _truncate(_chunk(p)), "images", "images/c/1/0/0/0 (rows 8-15) cannot be decoded"),
    "empty-chunk": (lambda p: _chunk(p, "index", 0).write_bytes(b""), "index", "index/c/0 (rows 0-39) cannot be decoded"),
    "altered-chunk": (lambda p: _flip_a_byte(_chunk(p)), "images", "images/c/1/0/0/0 (rows 8-15) cannot be decoded"),
    "member-json-invalid": (lambda p: (p / "images" / "zarr.json").write_text("{not json"), "images",
                            "images/zarr.json is unreadable"),
    "member-json-missing": (lambda p: (p / "index" / "zarr.json").unlink(), "index", "index/zarr.json is missing"),
    "member-disagrees-shape": (lambda p: _edit_member_meta(p, "images", _set("shape", [39, 3, 16, 16]),
                                                           consolidated=False),
                               "images", "disagree on shape"),
    "member-disagrees-byte-order": (lambda p: _edit_member_meta(
        p, "images", lambda d: d["codecs"][0]["configuration"].update(endian="big"), consolidated=False),
        "images", "disagree on codecs"),
    "wrong-shape": (lambda p: _edit_member_meta(p, "images", _set("shape", [39, 3, 16, 16])), "images",
                    "has shape (39, 3, 16, 16), expected (40, 3, 16, 16)"),
    "wrong-dtype": (lambda p: _edit_member_meta(p, "images", _set("data_type", "int32")), "images",
                    "has dtype int32, expected float32"),
    "wrong-chunks": (lambda p: _edit_member_meta(
        p, "index", lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[4])), "index",
        "has chunks (4,), expected a multiple of 8 rows"),
    "params-shorter-than-images": (lambda p: _edit_member_meta(p, "params", _set("shape", [39, 2])), "params",
                                   "has shape (39, 2), expected (40, 2)"),
    "images-dir-missing": (lambda p: shutil.rmtree(p / "images"), "images", "images/zarr.json is missing"),
}

#: name -> (damage, what the error says); the attribute is the member named
ATTR_DAMAGE = {
    "root-json-invalid": (lambda p: (p / "zarr.json").write_text('{"zarr_format": 3,'), "unreadable zarr.json"),
    "n-missing": (lambda p: _edit_attrs(p, lambda a: a.pop("n")), "attribute galaug.n is missing"),
    "n-not-a-count": (lambda p: _edit_attrs(p, _set("n", "40")), "attribute galaug.n is '40', expected a count"),
    "n-disagrees": (lambda p: _edit_attrs(p, _set("n", 41)), "member 'images' has shape (40, 3, 16, 16), expected (41,"),
    "bands-a-string": (lambda p: _edit_attrs(p, _set("bands", "gri")), "attribute galaug.bands is 'gri'"),
    "pixel-scale-garbage": (lambda p: _edit_attrs(p, _set("pixel_scale", {"value": "big"})),
                            "attribute galaug.pixel_scale is {'value': 'big'}"),
    "params-names-missing": (lambda p: _edit_attrs(p, _set("params", {"units": ["nJy", "arcsec"]})),
                             "attribute galaug.params is"),
    "provenance-not-a-list": (lambda p: _edit_attrs(p, _set("provenance", "x")), "attribute galaug.provenance is 'x'"),
}


@pytest.fixture
def damaged(make_dataset):
    def make(case: str) -> tuple[Path, str, str]:
        path = make_dataset(40, name="good.zarr", params=True).path
        if case in DAMAGE:
            damage, member, message = DAMAGE[case]
        else:
            (damage, message), member = ATTR_DAMAGE[case], ""
        damage(path)
        return path, member, message

    return make


def _open_and_read_everything(path: Path):
    ds = open_dataset(path)
    for _ in ds.iter_blocks():
        pass


def test_zarr_alone_reads_a_missing_chunk_as_zeros(make_dataset):
    """Why the check is needed: Zarr fills a missing chunk with the fill value, without a word."""
    path = make_dataset(40, name="good.zarr").path
    _chunk(path).unlink()
    assert (zarr.open_array(str(path / "images"), mode="r")[8:16] == 0).all()


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_is_an_error_naming_the_dataset_and_member(damaged, case):
    path, member, message = damaged(case)
    with pytest.raises(DatasetError) as info:
        _open_and_read_everything(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and f"member {member!r}" in text and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize("case", sorted(ATTR_DAMAGE))
def test_wrong_attributes_are_an_error_naming_the_dataset_and_attribute(damaged, case):
    path, _, message = damaged(case)
    with pytest.raises(DatasetError) as info:
        open_dataset(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


CLI_CASES = [(command, case) for command in ("info", "degrade", "mix")
             for case in ("missing-images-chunk", "truncated-chunk", "altered-chunk", "member-json-invalid",
                          "member-disagrees-byte-order", "params-shorter-than-images")
             # info checks that every chunk file exists, but reads no pixels: it decodes no chunk
             if not (command == "info" and case in ("truncated-chunk", "altered-chunk"))]


@pytest.mark.parametrize("command, case", CLI_CASES, ids=[f"{c}-{d}" for c, d in CLI_CASES])
def test_cli_on_a_damaged_dataset_is_one_line_and_writes_nothing(galaug_plugins, damaged, tmp_path, case, command):
    path, member, message = damaged(case)
    out = tmp_path / "out.zarr"
    args = {"info": ["info", path],
            "degrade": ["degrade", path, out, "--degrade", "noise:gaussian(std=1)"],
            "mix": ["mix", out, "--real-data", path]}[command]
    before = digest(tmp_path)
    assert_user_error(galaug_plugins.invoke(*args), str(path), f"member {member!r}", message)
    assert digest(tmp_path) == before


def test_a_dataset_without_the_every_chunk_marker_is_read_as_before(make_dataset):
    """Datasets written before every chunk was stored may lack all-zero chunks: no presence check for them."""
    path = make_dataset(40, name="old.zarr").path
    _edit_attrs(path, lambda a: a.pop("every_chunk_stored"))
    _chunk(path, "origin", 0).unlink()  # as old writers left an all-zero chunk
    ds = open_dataset(path)
    assert not ds.every_chunk_stored and (ds.read()["origin"] == 0).all()


def test_every_chunk_is_stored_even_when_all_zero(make_dataset):
    ds = make_dataset(40, name="zeros.zarr")  # origin is all 0, zarr's fill value
    assert ds.every_chunk_stored
    assert ds.array("origin").chunks == (128,) and _chunk(ds.path, "origin", 0).is_file()  # 16 chunks of images
    ds.verify_chunks()


def test_damage_found_in_a_loader_worker_is_one_line(damaged):
    """torch re-raises a worker's error with the worker's whole traceback as its message: still one line."""
    from click.testing import CliRunner

    from galaug.cli import GalaugGroup
    from galaug.data.torch import make_loader

    path, member, message = damaged("altered-chunk")

    @click.group(cls=GalaugGroup)
    def cli():
        pass

    @cli.command()
    def read():
        for _ in make_loader(path, batch_size=8, shuffle=False, num_workers=1):
            pass

    assert_user_error(CliRunner().invoke(cli, ["read"]), str(path), f"member {member!r}", message)


TINY_ALAE = ["--set", "image_size=16", "--set", "latent_dim=16", "--set", "mapping_layers=2", "--set", "fmap_base=64",
             "--set", "fmap_max=16", "--set", "batch_size=8"]


@pytest.mark.parametrize("command", ["alae", "denoise"])
def test_training_with_loader_workers_on_a_damaged_dataset_is_one_line(galaug_plugins, damaged, tmp_path, command):
    import galaug_alae
    import galaug_denoise

    plugin = {"alae": galaug_alae, "denoise": galaug_denoise}[command]
    assert galaug_plugins.register(plugin, name=command).status == "ok"
    path, member, message = damaged("altered-chunk")
    if command == "alae":
        args = ["train", "alae", path, "--run-dir", tmp_path / "runs", "--steps", "20", *TINY_ALAE,
                "--set", "loader_workers=1"]
    else:
        args = ["task", "train", "denoise", path, "--degrade", "noise:gaussian(std=1)", "--run-dir", tmp_path / "runs",
                "--set", "epochs=1", "--set", "width=4", "--set", "blocks=1", "--set", "batch_size=8",
                "--set", "num_workers=1"]
    assert_user_error(galaug_plugins.invoke(*args), str(path), f"member {member!r}", message)


# == 2. full and read-only disks ===============================================================
#
# The commands run in a child process whose output folders lie on:
#   full       a 64 KiB tmpfs mounted in a private mount namespace (`unshare -rm`): ENOSPC; where
#              namespaces are not allowed, a 32 KiB RLIMIT_FSIZE stands in (EFBIG, "File too large")
#   read-only  folders of mode 0o555 (as root, whom modes do not stop, the child runs without
#              CAP_DAC_OVERRIDE)
# plus RLIMIT_FSIZE (mix) and a read-only bind mount (EROFS, degrade). One child per condition
# runs its commands through the CLI in turn (one interpreter start-up, not one per command) and lists
# each output folder from inside the condition.

TMPFS_KIB = 64
FSIZE_BYTES = 32 * 1024
# as root, drop the capabilities that let root write where the mode says no
DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", "--"]
#: in a new mount namespace: mount a tmpfs ($1 = tmpfs) or a read-only view ($1 = bind) on $2, run the rest
IN_NAMESPACE = r"""
set -u
how=$1 mnt=$2; shift 2
if [ "$how" = tmpfs ]; then mount -t tmpfs -o size=%dk galaug-full "$mnt" || exit 99
else mount --bind "$mnt" "$mnt" && mount -o remount,bind,ro "$mnt" || exit 99; fi
exec "$@"
""" % TMPFS_KIB
#: runs each job [name, output folder, args] through the CLI; prints {name: outcome} as JSON
DRIVER = r"""
import json, os, sys
from click.testing import CliRunner
from galaug.cli import make_cli
results = {}
for name, folder, args in json.loads(sys.argv[1]):
    os.makedirs(folder, exist_ok=True)  # on the tmpfs; elsewhere made beforehand
    res = CliRunner().invoke(make_cli(), args)
    results[name] = {"code": res.exit_code, "stderr": res.stderr, "left": sorted(os.listdir(folder)),
                     "exception": None if isinstance(res.exception, (SystemExit, type(None))) else repr(res.exception)}
print(json.dumps(results))
"""


def _namespaces_work(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    mnt = tmp / "probe"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", IN_NAMESPACE, "sh", "tmpfs", str(mnt), "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _limit_file_size():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_BYTES, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def _noise_dataset(path: Path, *, origin: int) -> Path:
    rng = np.random.default_rng(origin)
    with galaug.create_dataset(path, bands=["r"], image_size=32, pixel_scale="0.396 arcsec",
                               provenance=make_entry("test", seed=origin)) as w:
        w.append(rng.normal(0, 1, (64, 1, 32, 32)), origin=origin)  # noise: 256 KiB that no codec shrinks
    return path


COMMANDS = {
    "simulate": lambda i, out: ["simulate", "sersic", out, "-n", "24", "--size", "32"],  # 96 KiB, barely compressible
    "generate": lambda i, out: ["generate", "alae", SHIPPED_RUN, out, "-n", "64"],
    "degrade": lambda i, out: ["degrade", i / "real.zarr", out, "--degrade", "noise:gaussian(std=1)"],
    "mix": lambda i, out: ["mix", out, "--real-data", i / "real.zarr", "--gen-data", i / "gen.zarr", "--gen", "64"],
}
REASONS = {"full": "No space left on device", "fsize": "File too large", "read-only": "Permission denied",
           "ro-mount": "Read-only file system"}
CONDITIONS = {"full": list(COMMANDS), "read-only": list(COMMANDS), "fsize": ["mix"], "ro-mount": ["degrade"]}
SCENARIOS = [(how, command) for how, commands in CONDITIONS.items() for command in commands]


def _run_condition(root: Path, inputs: Path, how: str, namespaces: bool) -> dict:
    """Run the commands of condition ``how``; {command: outcome}, each with the mechanism actually used."""
    mount = root / how
    mount.mkdir()
    jobs = [(c, str(mount / c), [str(a) for a in COMMANDS[c](inputs, mount / c / "out.zarr")]) for c in CONDITIONS[how]]
    used = "fsize" if how == "full" and not namespaces else how
    args, preexec = [sys.executable, "-c", DRIVER, json.dumps(jobs)], None
    if used in ("full", "ro-mount"):
        if used == "ro-mount":
            for _, folder, _ in jobs:
                os.mkdir(folder)
        args = ["unshare", "-rm", "sh", "-c", IN_NAMESPACE, "sh", "tmpfs" if used == "full" else "bind", str(mount),
                *args]
    elif used == "fsize":
        preexec = _limit_file_size
    elif used == "read-only":
        for _, folder, _ in jobs:
            os.mkdir(folder, 0o555)
            os.chmod(folder, 0o555)  # whatever the umask
        if os.geteuid() == 0:
            args = DROP_DAC + args
    env = {k: v for k, v in os.environ.items() if k not in ("GALAUG_DISABLE_PLUGIN_AUTOLOAD", "GALAUG_BLOCK_PLUGINS")}
    env.update(OMP_NUM_THREADS="1", GALAUG_PROGRESS="0")
    res = subprocess.run(args, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=300)
    assert res.returncode == 0, res.stderr
    return {c: {**o, "how": used} for c, o in json.loads(res.stdout).items()}


@pytest.fixture(scope="module")
def disk_outcomes(tmp_path_factory):
    """Run every condition once, two at a time (each child is single-threaded); check the inputs after all."""
    root = tmp_path_factory.mktemp("disks")
    inputs = root / "inputs"
    inputs.mkdir()
    _noise_dataset(inputs / "real.zarr", origin=0)
    _noise_dataset(inputs / "gen.zarr", origin=1)
    watched = (inputs, SHIPPED_RUN)
    before = [digest(p) for p in watched]
    namespaces = _namespaces_work(root)
    conditions = [how for how in CONDITIONS if not (how == "ro-mount" and not namespaces)
                  and not (how == "read-only" and os.geteuid() == 0 and shutil.which("setpriv") is None)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {how: pool.submit(_run_condition, root, inputs, how, namespaces) for how in conditions}
        outcomes = {(how, c): o for how, f in futures.items() for c, o in f.result().items()}
    return outcomes, before == [digest(p) for p in watched]


@pytest.mark.parametrize("how, command", SCENARIOS, ids=[f"{h}-{c}" for h, c in SCENARIOS])
def test_output_on_a_full_or_read_only_disk(disk_outcomes, how, command):
    outcomes, inputs_untouched = disk_outcomes
    if (how, command) not in outcomes:
        pytest.skip("needs mount namespaces (unshare -rm)" if how == "ro-mount" else "root without setpriv")
    o = outcomes[(how, command)]
    lines = o["stderr"].strip().splitlines()
    assert o["code"] == 2 and len(lines) == 1 and o["exception"] is None, o
    assert lines[0].startswith("Error: ") and "out.zarr" in lines[0] and REASONS[o["how"]] in lines[0], lines[0]
    assert o["left"] == []  # no dataset, no temporary
    assert inputs_untouched  # the input datasets and the run are byte-identical


# == 3. misbehaving plugins ====================================================================
#
# Each bad plugin is registered between two good ones; it must be listed as broken with its name and
# reason, while the built-ins and both good plugins (an analysis, a source, a command) keep working.

@dataclasses.dataclass
class GoodConfig:
    scale: float = 1.0


class GoodAnalysis(Analysis):
    """Registered before the bad plugin."""

    name = "still-works"
    Config = GoodConfig


class LaterSource(Source):
    """Registered after the bad plugin."""

    name = "later"
    Config = GoodConfig


@click.command("hello")
def hello_cmd():
    """Say hello."""
    click.echo("hello from a good plugin")


def _raises(exc):
    def hook(*args, **kwargs):
        raise exc
    return hook


def _class(**attrs):
    return type("Bad", (Analysis,), {"name": "bad-one", "Config": GoodConfig, **attrs})


def _group_over_info(cli):
    @cli.group("info")
    def hijack():
        """Not galaug's info."""


#: name -> (hooks, what the plugin's reason says)
BAD_PLUGINS = {
    # raising in each hook
    "register-raises": ({"galaug_register": _raises(RuntimeError("boom"))}, "galaug_register failed: RuntimeError: boom"),
    "register-exits": ({"galaug_register": _raises(SystemExit(3))}, "galaug_register failed: SystemExit: 3"),
    "register-raises-half-way": ({"galaug_register": lambda register: (register.analysis(_class()), 1 / 0)},
                                 "galaug_register failed: ZeroDivisionError"),
    "cli-raises": ({"galaug_cli": _raises(ValueError("bad\nnews"))}, "galaug_cli failed: ValueError: bad news"),
    "cli-exits": ({"galaug_cli": _raises(SystemExit(0))}, "galaug_cli failed: SystemExit: 0"),
    # garbage handed to the registrar
    "register-none": ({"galaug_register": lambda register: register.source(None)}, "got None"),
    "register-a-number": ({"galaug_register": lambda register: register.generator(42)}, "got 42"),
    "register-an-instance": ({"galaug_register": lambda register: register.analysis(GoodAnalysis())},
                             "must be a class deriving from galaug.kinds.Analysis"),
    "register-an-unknown-kind": ({"galaug_register": lambda register: register.widget(GoodAnalysis)},
                                 "has no attribute 'widget'"),
    "register-lazy-without-module": ({"galaug_register": lambda register: register.analysis("nocolon", name="x")},
                                     "must look like 'module:Class'"),
    "register-lazy-name-not-text": ({"galaug_register": lambda register: register.analysis("m:C", name=7)},
                                    "needs a valid name= (got 7)"),
    "register-summary-not-text": ({"galaug_register": lambda register: register.analysis(_class(), summary=["a"])},
                                  "summary of analysis 'bad-one' must be a string"),
    "register-version-not-text": ({"galaug_register": lambda register: register.analysis(_class(version=2.0))},
                                  "Bad.version must be a string, got 2.0"),
    "register-config-instance": ({"galaug_register": lambda register: register.analysis(_class(Config=GoodConfig()))},
                                 "Bad.Config must be a dataclass"),
    # garbage handed to the CLI
    "cli-adds-none": ({"galaug_cli": lambda cli: cli.add_command(None)}, "add_command needs a click.Command, got None"),
    "cli-adds-a-string": ({"galaug_cli": lambda cli: cli.add_command("hello")}, "got 'hello'"),
    "cli-adds-a-lookalike": ({"galaug_cli": lambda cli: cli.add_command(types.SimpleNamespace(name="zz"))},
                             "add_command needs a click.Command, got namespace(name='zz')"),
    "cli-name-not-text": ({"galaug_cli": lambda cli: cli.add_command(click.Command("x"), name=42)},
                          "command name 42 is not a word"),
    "cli-replaces-through-commands": ({"galaug_cli": lambda cli: cli.commands.__setitem__("info", click.Command("info"))},
                                      "changed existing command(s) info"),
    "cli-removes-a-command": ({"galaug_cli": lambda cli: cli.commands.pop("info")}, "changed existing command(s) info"),
    "cli-adds-garbage-through-commands": ({"galaug_cli": lambda cli: cli.commands.__setitem__("zz", object())},
                                          "add_command needs a click.Command"),
    "cli-group-over-an-existing-command": ({"galaug_cli": _group_over_info}, "command 'info' already exists"),
}


def _assert_the_rest_works(tester, bad_name: str, reason: str) -> None:
    res = tester.invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.output)}
    status = rows[("plugin", bad_name)]["status"]
    assert status.startswith("broken: ") and reason in status and "\n" not in status, status
    assert rows[("analysis", "still-works")]["status"] == "ok" and rows[("source", "later")]["status"] == "ok"
    assert rows[("source", "sersic")]["status"] in ("ok", "lazy")
    assert not [r for r in rows.values() if r["status"].startswith("broken") and r["name"] != bad_name]
    assert ("analysis", "bad-one") not in rows  # nothing half-registered
    help_ = tester.invoke("--help")
    assert help_.exit_code == 0 and "hello" in help_.output and "info" in help_.output and "zz" not in help_.output
    assert tester.invoke("hello").output == "hello from a good plugin\n"
    assert "Describe DATASET" in tester.invoke("info", "--help").output  # galaug's own, untouched
    assert tester.invoke("config", "analysis", "still-works").output == "scale = 1.0\n"
    assert tester.invoke("config", "source", "later").exit_code == 0


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_a_misbehaving_plugin_is_reported_by_name_and_the_rest_works(galaug_plugins, case):
    hooks, reason = BAD_PLUGINS[case]
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis(GoodAnalysis),
                          galaug_cli=lambda cli: cli.add_command(hello_cmd))
    bad = galaug_plugins.plugin(**hooks)
    galaug_plugins.plugin(galaug_register=lambda register: register.source(LaterSource))
    _assert_the_rest_works(galaug_plugins, bad.name, reason)


@pytest.mark.parametrize("load, reason", [
    (_raises(SystemExit(2)), "import failed: SystemExit: 2"),
    (_raises(ImportError("no module named torch_nightly")), "import failed: ImportError: no module named torch_nightly"),
    (lambda: 42, "provides no galaug hook (galaug_register, galaug_cli)"),
    (lambda: None, "provides no galaug hook"),
], ids=["exits", "raises", "a-number", "none"])
def test_an_entry_point_that_exits_or_is_not_a_plugin_is_reported(galaug_plugins, load, reason):
    """What an entry point loads goes through the manager's loader, as for installed plugins."""
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis(GoodAnalysis),
                          galaug_cli=lambda cli: cli.add_command(hello_cmd))
    galaug_plugins.manager._load("odd-plugin", load, "odd-dist", "1.0")
    galaug_plugins.plugin(galaug_register=lambda register: register.source(LaterSource))
    _assert_the_rest_works(galaug_plugins, "odd-plugin", reason)


def test_a_lazy_component_that_is_not_a_class_is_reported_when_used(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: (register.analysis(GoodAnalysis),
                                                            register.analysis("os:sep", name="sep-factory")))
    assert_user_error(galaug_plugins.invoke("config", "analysis", "sep-factory"),
                      "analysis plugin 'sep-factory' is broken", "got '/'")
    res = galaug_plugins.invoke("plugins", "--check")
    assert res.exit_code == 0 and "still-works" in res.output
    assert next(line for line in res.output.splitlines() if "sep-factory" in line).split()[-1] == "'/'"
    assert galaug_plugins.invoke("config", "analysis", "still-works").exit_code == 0


def test_a_registrar_kept_for_later_cannot_register(galaug_plugins):
    kept = []
    plugin = galaug_plugins.plugin(galaug_register=lambda register: kept.append(register))
    assert plugin.status == "ok"
    with pytest.raises(galaug.PluginError, match="after galaug_register returned"):
        kept[0].analysis(GoodAnalysis)
    assert "still-works" not in galaug_plugins.manager.registry.names("analysis")


def test_an_unknown_name_mentions_the_broken_plugins(galaug_plugins):
    bad = galaug_plugins.plugin(galaug_register=_raises(RuntimeError("boom")))
    assert_user_error(galaug_plugins.invoke("config", "analysis", "what-it-provided"),
                      "unknown analysis plugin 'what-it-provided'", f"broken plugins, which may provide it: {bad.name}")


class BuggySimulator(Simulator):
    """A third-party simulator with a bug in its own code."""

    name = "buggy"
    Config = GoodConfig

    def layout(self):
        return Layout(bands=("r",), image_size=8, pixel_scale=0.2 * u.arcsec)

    def draw(self, rows, *, seed):
        return {"images": 1}["imgs"], None  # the bug: a KeyError


def test_a_bug_in_a_plugins_component_names_the_plugin(galaug_plugins, tmp_path, monkeypatch):
    """One line naming the plugin and its distribution, exit status 1 (a bug, not bad input), no output;
    GALAUG_TRACEBACK=1 gives the traceback to the plugin's author."""
    plugin = galaug_plugins.plugin(galaug_register=lambda register: register.source(BuggySimulator))
    out = tmp_path / "out.zarr"
    res = galaug_plugins.invoke("simulate", "buggy", out, "-n", "4")
    assert res.exit_code == 1, res.output
    (line,) = res.stderr.strip().splitlines()
    assert line == (f"Error: plugin {plugin.name!r} ({plugin.distribution} {plugin.version}) failed: "
                    "KeyError: 'imgs'. That is a bug in the plugin; GALAUG_TRACEBACK=1 shows where")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("GALAUG_TRACEBACK", "1")
    assert isinstance(galaug_plugins.invoke("simulate", "buggy", out, "-n", "4").exception, KeyError)


def test_a_bug_in_galaug_itself_keeps_its_traceback(galaug_plugins, tmp_path, monkeypatch):
    """galaug's own code is never blamed on a plugin, even when a plugin's component is in use."""
    import galaug.sources.simulate as simulate_module

    galaug_plugins.plugin(galaug_register=lambda register: register.source(BuggySimulator))

    code = {"__name__": "galaug.sources.simulate"}  # a function of galaug's, as the traceback sees it
    exec("def simulate(*args, **kwargs):\n    raise ZeroDivisionError('a bug in galaug')\n", code)
    monkeypatch.setattr(simulate_module, "simulate", code["simulate"])
    res = galaug_plugins.invoke("simulate", "buggy", tmp_path / "out.zarr", "-n", "4")
    assert isinstance(res.exception, ZeroDivisionError)
