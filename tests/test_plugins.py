"""The plugin registry: discovery, isolation of broken plugins, blocking, lazy loading."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from galaug import PluginError
from galaug.kinds import Analysis, Generator, Simulator, Source
from galaug.pluginmanager import PluginManager

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class ToyConfig:
    size: int = 32
    bands: tuple[str, ...] = ("g", "r")


class ToySource(Source):
    """A toy source."""

    name = "toy"
    Config = ToyConfig


def test_registered_component_is_listed_and_retrievable(galaug_plugins):
    plugin = galaug_plugins.plugin(galaug_register=lambda register: register.source(ToySource))
    assert plugin.status == "ok"
    assert galaug_plugins.manager.get("source", "toy") is ToySource
    result = galaug_plugins.invoke("plugins")
    assert result.exit_code == 0
    line = next(l for l in result.output.splitlines() if " toy " in l)
    assert line.split()[:2] == ["source", "toy"] and line.split()[-1] == "ok"


def test_duplicate_name_marks_the_second_plugin_broken(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.source(ToySource))
    second = galaug_plugins.plugin(galaug_register=lambda register: register.source(ToySource))
    assert second.status == "broken" and "duplicate source name 'toy'" in second.reason
    assert galaug_plugins.manager.get("source", "toy") is ToySource  # the first one keeps working


def test_same_name_in_different_kinds_is_fine(galaug_plugins):
    class ToyGen(Generator):
        name = "toy"

    p = galaug_plugins.plugin(galaug_register=lambda register: (register.source(ToySource), register.generator(ToyGen)))
    assert p.status == "ok"


@pytest.mark.parametrize("bad, message", [
    (object, "deriving from galaug.kinds.Source"),
    (type("NoName", (Source,), {"name": "Bad Name"}), "not a valid name"),
    (type("NoCfg", (Source,), {"name": "nocfg", "Config": dict}), "Config must be a dataclass"),
])
def test_invalid_component_is_rejected_with_reason(galaug_plugins, bad, message):
    p = galaug_plugins.plugin(galaug_register=lambda register: register.source(bad))
    assert p.status == "broken" and message in p.reason


def test_a_broken_plugin_leaves_no_half_registration(galaug_plugins):
    def register(register):
        register.source(ToySource)
        raise RuntimeError("oops")

    p = galaug_plugins.plugin(galaug_register=register)
    assert p.status == "broken" and "RuntimeError: oops" in p.reason
    with pytest.raises(PluginError, match="unknown source plugin 'toy'"):
        galaug_plugins.manager.get("source", "toy")


def test_unknown_plugin_name_is_a_clear_error(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.source(ToySource))
    with pytest.raises(PluginError, match=r"unknown source plugin 'toyy' \(available: bulgedisk, fits, hdf5, npy, sersic, toy\)"):
        galaug_plugins.manager.get("source", "toyy")


def test_lazy_component_is_imported_only_when_used(galaug_plugins, tmp_path, monkeypatch):
    (tmp_path / "lazy_mod_x.py").write_text(textwrap.dedent("""
        from galaug.kinds import Analysis
        class Lazy(Analysis):
            '''Imported late.'''
            name = "lazy-one"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis("lazy_mod_x:Lazy", name="lazy-one"))
    assert "lazy_mod_x" not in sys.modules
    entry = galaug_plugins.manager.registry.entry("analysis", "lazy-one")
    assert entry.status == "lazy"
    assert galaug_plugins.manager.get("analysis", "lazy-one").__doc__ == "Imported late."
    assert entry.status == "ok"


def test_lazy_component_that_fails_to_import_is_reported_broken(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis("no_such_mod_q:X", name="ghost"))
    result = galaug_plugins.invoke("plugins", "--check")
    assert result.exit_code == 0
    assert "broken: ModuleNotFoundError" in result.output
    with pytest.raises(PluginError, match="analysis plugin 'ghost' is broken"):
        galaug_plugins.manager.get("analysis", "ghost")


def test_plugin_can_add_a_command_and_cannot_replace_one(galaug_plugins):
    @click.command("hello")
    def hello():
        """Say hello."""
        click.echo("hello from a plugin")

    @click.command("info")
    def fake_info():
        click.echo("hijacked")

    galaug_plugins.plugin(galaug_cli=lambda cli: cli.add_command(hello))
    bad = galaug_plugins.plugin(galaug_cli=lambda cli: cli.add_command(fake_info))
    assert galaug_plugins.invoke("hello").output == "hello from a plugin\n"
    assert "hijacked" not in galaug_plugins.invoke("info", "--help").output
    assert bad.status == "broken" and "command 'info' already exists" in bad.reason


def test_a_cli_hook_that_raises_does_not_break_the_cli(galaug_plugins):
    def explode(cli):
        raise ValueError("bad plugin")

    galaug_plugins.plugin(galaug_cli=explode)
    result = galaug_plugins.invoke("plugins")
    assert result.exit_code == 0
    assert "broken: galaug_cli failed: ValueError: bad plugin" in result.output


def test_blocked_component_names_are_skipped():
    from galaug.hookspecs import hookimpl as impl

    class Holder:
        @staticmethod
        @impl
        def galaug_register(register):
            register.source(ToySource)

    manager = PluginManager(autoload=False, blocked={"toy"})
    manager.register(Holder, name="holder")
    with pytest.raises(PluginError, match="unknown source plugin"):
        manager.get("source", "toy")


# -- through the real entry-point machinery ---------------------------------------------

def _fake_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """Make ``dist`` discoverable by importlib.metadata, as ``pip install`` would."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[galaug]\n{lines}\n")


def _run_galaug(args, site: Path, env_extra=None):
    env = dict(os.environ)
    paths = [str(site), str(ROOT / "examples" / "galaug-bandstats"), str(ROOT / "tests" / "plugins")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env.pop("GALAUG_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("GALAUG_BLOCK_PLUGINS", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "galaug", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def third_party_site(tmp_path):
    site = tmp_path / "site"
    _fake_distribution(site, "galaug-bandstats", "0.1.0", {"bandstats": "galaug_bandstats"})
    _fake_distribution(site, "broken-thing", "9.9", {"broken_import": "broken_import"})
    _fake_distribution(site, "typo-thing", "1.0", {"hook_typo": "hook_typo"})
    _fake_distribution(site, "copycat", "2.0", {"zz_copycat": "dup_band_stats"})
    return site


def test_example_plugin_is_discovered_and_broken_ones_are_reported(third_party_site):
    result = _run_galaug(["plugins", "--json"], third_party_site)
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}
    stats = rows[("analysis", "band-stats")]
    assert (stats["distribution"], stats["version"], stats["status"]) == ("galaug-bandstats", "0.1.0", "lazy")
    assert rows[("plugin", "broken_import")]["status"].startswith("broken: import failed: ModuleNotFoundError")
    assert "unknown hook galaug_regster" in rows[("plugin", "hook_typo")]["status"]
    assert "duplicate analysis name 'band-stats'" in rows[("plugin", "zz_copycat")]["status"]
    # the rest of the CLI keeps working
    assert _run_galaug(["config", "analysis", "band-stats"], third_party_site).stdout.startswith("bins = 100")


def test_listing_plugins_does_not_import_torch_or_lazy_components(third_party_site):
    code = ("import sys; from galaug.cli import main\n"
            "try:\n    main(['plugins'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', 'torch' in sys.modules, 'galaug_bandstats.analysis' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(third_party_site), str(ROOT / "examples" / "galaug-bandstats"),
                                                       str(ROOT / "tests" / "plugins")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "band-stats" in out
    assert out.strip().splitlines()[-1] == "LOADED False False"


def test_autoload_can_be_switched_off(third_party_site):
    result = _run_galaug(["plugins"], third_party_site, {"GALAUG_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 0 and "band-stats" not in result.stdout and "broken" not in result.stdout


def test_named_plugins_can_be_blocked(third_party_site):
    result = _run_galaug(["plugins"], third_party_site, {"GALAUG_BLOCK_PLUGINS": "broken_import,hook_typo"})
    assert "band-stats" in result.stdout
    assert "import failed" not in result.stdout and "galaug_regster" not in result.stdout
    assert "blocked" in result.stdout


def test_example_analysis_runs_from_the_cli(third_party_site, make_dataset, tmp_path):
    a, b = make_dataset(20), make_dataset(10, seed=1)
    out = tmp_path / "stats"
    result = _run_galaug(["analyze", "band-stats", str(a.path), str(b.path), str(out), "--set", "bins=20"],
                         third_party_site)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["bins"] == 20 and report["parents"] == [a.id, b.id]
    g = report["results"]["datasets"][str(a.path)]["bands"]["g"]
    assert g["p1"] < g["p50"] < g["p99"]
    assert (out / "histograms.png").stat().st_size > 1000


# -- the public surface ------------------------------------------------------------------

def test_the_concrete_registrar_satisfies_the_contract():
    from galaug import hookspecs
    from galaug.registry import Registrar, Registry

    registrar = Registrar(Registry(), plugin="p", distribution="d", version="0")
    assert isinstance(registrar, hookspecs.Registrar)
    for kind in ("source", "generator", "degradation", "task", "analysis"):
        assert inspect.signature(getattr(Registrar, kind)) == inspect.signature(getattr(hookspecs.Registrar, kind))


def _private_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Imports in ``path`` that name a private (``_x``) galaug module or name, its own package's excepted."""
    parts = path.relative_to(root).parts
    # plugins/NAME/PACKAGE/... and examples/NAME/PACKAGE/...: a plugin may use its own private modules
    own = parts[2] if len(parts) > 3 else None

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    def checked(module: str) -> bool:
        top = module.split(".", 1)[0]
        return (top == "galaug" or top.startswith("galaug_")) and top != own

    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if checked(a.name) and any(map(private, a.name.split(".")))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and checked(node.module):
            if any(map(private, node.module.split("."))):
                found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
    return [f"{path.relative_to(root)}:{name}" for name in found]


def test_plugins_and_examples_import_only_public_galaug_names():
    files = [p for folder in ("plugins", "examples") for p in sorted((ROOT / folder).rglob("*.py"))
             if not any(part.endswith(".egg-info") or part == "build" for part in p.parts)]
    assert files
    offending = [hit for path in files for hit in _private_imports(path)]
    assert not offending, "plugins may import only public galaug modules and names (docs/plugins.md):\n" + \
        "\n".join(offending)


def test_the_private_import_check_catches_the_three_forms(tmp_path):
    bad = tmp_path / "plugins" / "x" / "galaug_x" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(textwrap.dedent("""
        import galaug._a
        from galaug.data._format import b
        from galaug.data import _format
        from galaug.data import open_dataset
        from galaug_x import _own
        from galaug_other import _theirs
        from galaug import __version__
        from . import _relative
    """))
    assert [h.split(":", 1)[1] for h in _private_imports(bad, tmp_path)] == [
        "galaug._a", "galaug.data._format", "galaug.data._format", "galaug_other._theirs"]


def test_building_the_cli_and_listing_plugins_import_neither_torch_nor_zarr_nor_astropy():
    """`galaug --help` and `galaug plugins` start in a quarter of a second: the heavy libraries (numpy too) load
    on first use."""
    import subprocess

    code = ("import sys, io, contextlib\n"
            "import galaug, galaug.cli\n"
            "from galaug.degrade import parse_pipeline\n"
            "sys.argv = ['galaug', 'plugins']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        galaug.cli.main()\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'zarr', 'astropy', 'numpy') if m in sys.modules))\n"
            "print(galaug.open_dataset.__module__, galaug.load_generator.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded, names = out.stdout.splitlines()
    assert loaded == "[]"
    assert names == "galaug.data.dataset galaug.generators"  # the lazy names still resolve


# -- a plugin's bug inside a worker process -----------------------------------------------------------

class WorkerBugSimulator(Simulator):
    """A simulator whose ``draw`` fails; with ``--workers 2`` it fails in a spawned pool worker."""

    name = "worker-bug"
    Config = ToyConfig

    def layout(self):
        import astropy.units as u

        from galaug.kinds import Layout

        return Layout(bands=("r",), image_size=8, pixel_scale=0.2 * u.arcsec)

    def draw(self, rows, *, seed):
        return {"images": 1}["imgs"], None  # the bug: a KeyError


class _BuggyBatches:
    """A map-style dataset whose items fail (read in a DataLoader worker)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise ValueError(f"item {i} is\nbroken")


class WorkerBugAnalysis(Analysis):
    """An analysis reading through a torch DataLoader with one worker process, which fails."""

    name = "worker-bug"
    Config = ToyConfig

    def run(self, inputs, out_dir, *, seed):
        import torch

        for _ in torch.utils.data.DataLoader(_BuggyBatches(), batch_size=None, num_workers=1):
            pass
        return {}


def _bug_line(plugin, error: str) -> str:
    return (f"Error: plugin {plugin.name!r} ({plugin.distribution} {plugin.version}) failed: {error}. "
            "That is a bug in the plugin; GALAUG_TRACEBACK=1 shows where")


def test_a_plugins_bug_in_a_pool_worker_names_the_plugin(galaug_plugins, tmp_path):
    """The same line and exit status (1) as in the main process: the pool re-raises the exception in
    galaug's code, and the plugin is found in the worker's traceback."""
    plugin = galaug_plugins.plugin(galaug_register=lambda register: register.source(WorkerBugSimulator))
    out = tmp_path / "out.zarr"
    for workers in (1, 2):
        res = galaug_plugins.invoke("simulate", "worker-bug", out, "-n", 4, "--batch-size", 2, "--workers", workers)
        assert res.exit_code == 1, res.output
        assert res.stderr.strip().splitlines() == [_bug_line(plugin, "KeyError: 'imgs'")], workers
        assert list(tmp_path.iterdir()) == []


def test_a_plugins_bug_in_a_dataloader_worker_is_one_line(galaug_plugins, make_dataset, tmp_path):
    """torch re-raises a worker's exception with the worker's traceback as its message: the line says only
    the message, as for a bug in the main process."""
    plugin = galaug_plugins.plugin(galaug_register=lambda register: register.analysis(WorkerBugAnalysis))
    res = galaug_plugins.invoke("analyze", "worker-bug", make_dataset(8).path, tmp_path / "out")
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines() == [_bug_line(plugin, "ValueError: item 0 is broken")]
    assert not (tmp_path / "out").exists()


def test_a_worker_traceback_blames_the_innermost_plugin_frame_and_never_galaug(galaug_plugins):
    """What a pool attaches (the worker's formatted traceback) is searched by file, innermost first."""
    import multiprocessing.pool

    import galaug.sources.simulate

    plugin = galaug_plugins.plugin(galaug_register=lambda register: register.source(WorkerBugSimulator))
    mine, core = __file__, galaug.sources.simulate.__file__
    for frames, blamed in (([core, mine], plugin), ([mine, core], plugin), ([core], None), ([], None)):
        exc = KeyError("imgs")
        text = "".join(f'  File "{f}", line 1, in f\n    x\n' for f in frames)
        exc.__cause__ = multiprocessing.pool.RemoteTraceback(f"\n\"\"\"\nTraceback (most recent call last):\n{text}")
        assert galaug_plugins.manager.blame(exc) is blamed, frames
