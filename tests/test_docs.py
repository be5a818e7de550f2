"""The docs agree with the code: every hook and every option is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest

from galaug import hookspecs
from galaug.cli import make_cli
from galaug.pluginmanager import PluginManager

def _flatten(commands, prefix=""):
    for cmd in sorted(commands, key=lambda c: c.name):
        if isinstance(cmd, click.Group):
            yield from _flatten(cmd.commands.values(), f"{prefix}{cmd.name} ")
        else:
            yield f"{prefix}{cmd.name}", cmd


#: every command of the CLI with only the built-in plugins, sub-commands as "task train"
BUILTIN_COMMANDS = list(_flatten(make_cli(PluginManager(autoload=False, blocked=())).commands.values()))

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hookspecs() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if name.startswith("galaug_") and callable(fn)}


def _documented_hooks() -> dict[str, str]:
    text = (DOCS / "plugins.md").read_text()
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    return {s.split("\n", 1)[0].strip(): s for s in sections if s.startswith("galaug_")}


def test_every_hookspec_is_documented_with_its_signature():
    documented = _documented_hooks()
    for name, sig in _hookspecs().items():
        assert name in documented, f"hook {name} is missing from docs/plugins.md"
        params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
        assert f"{name}({params}) -> {sig.return_annotation}" in documented[name]


def test_no_documented_hook_is_missing_from_the_spec():
    assert set(_documented_hooks()) == set(_hookspecs())


def test_every_hookspec_has_a_docstring():
    for name in _hookspecs():
        assert len(getattr(hookspecs, name).__doc__ or "") > 80, name


@pytest.mark.parametrize("name, command", BUILTIN_COMMANDS, ids=[n for n, _ in BUILTIN_COMMANDS])
def test_every_builtin_command_and_option_is_in_the_reference(name: str, command: click.Command):
    text = (DOCS / "cli.md").read_text()
    match = re.search(rf"^## galaug {name}\b(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/cli.md has no section for galaug {name}"
    section = match.group(1)
    for param in command.params:
        if param.name == "threads":  # on every command: documented once, in the vocabulary
            assert "| `--threads N` | every command:" in text
            continue
        if isinstance(param, click.Option) and not param.hidden:
            longest = max(param.opts, key=len)
            assert f"`{longest}" in section or f", {longest}`" in section, f"{name} {longest} undocumented"


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    """MkDocs in strict mode: a broken link, a page missing from the nav or a bad anchor fails the build."""
    import subprocess
    import sys

    root = DOCS.parent
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                             str(root / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "analyses" / "index.html").exists()
