"""Test helpers for plugin authors (and galaug's own tests).

Enable them in a ``conftest.py``::

    pytest_plugins = ["galaug.testing"]

and use the :func:`galaug_plugins` fixture::

    def test_my_analysis(galaug_plugins, tmp_path):
        galaug_plugins.register(my_plugin_module)
        result = galaug_plugins.invoke("analyze", "my-analysis", "data.zarr", tmp_path / "out")
        assert result.exit_code == 0, result.output
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from galaug.pluginmanager import AUTOLOAD_ENV, Plugin, PluginManager, set_manager

__all__ = ["PluginTester", "galaug_plugins"]


class PluginTester:
    """A plugin manager with entry-point discovery blocked, plus ways to drive it."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def register(self, plugin: Any, *, name: str | None = None) -> Plugin:
        """Register a plugin (a module, or any object with hook functions); returns its status.

        Functions may be given in a namespace, e.g. ``types.SimpleNamespace(galaug_register=f)``,
        as long as they carry :data:`galaug.hookimpl`.
        """
        name = name or getattr(plugin, "__name__", None) or f"test-plugin-{len(self.manager.plugins)}"
        return self.manager.register(plugin, name=name, distribution="(test)", version="0")

    def plugin(self, **hooks: Any) -> Plugin:
        """Register a plugin made of the given hook functions, e.g. ``galaug_register=fn``."""
        from galaug.hookspecs import hookimpl

        ns = types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})
        return self.register(ns, name=f"test-plugin-{len(self.manager.plugins)}")

    def cli(self):
        """The ``galaug`` root command built from this manager."""
        from galaug.cli import make_cli

        return make_cli(self.manager)

    def invoke(self, *args: Any, **kwargs: Any):
        """Run ``galaug ARGS...`` in-process; returns a ``click.testing.Result``."""
        from click.testing import CliRunner

        return CliRunner().invoke(self.cli(), [str(a) for a in args], **kwargs)


@pytest.fixture
def galaug_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginTester]:
    """Block plugin discovery and give a :class:`PluginTester` to register temporary plugins.

    Only the built-in plugins are loaded; whatever the test registers is
    gone afterwards, and the process-wide manager is restored.
    """
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    manager = PluginManager(autoload=False, blocked=())
    old = set_manager(manager)
    try:
        yield PluginTester(manager)
    finally:
        set_manager(old)
