"""The plugin contract: every hook galaug calls, with its signature.

A plugin is a module (or any object) with functions named like the hooks
below, decorated with :data:`galaug.hookimpl`. It is found through the
``galaug`` entry-point group::

    [project.entry-points.galaug]
    my_plugin = "my_package.plugin"

This module is the whole contract; ``docs/plugins.md`` documents each hook
and a test keeps the two in agreement. The machinery that loads plugins
lives in :mod:`galaug.pluginmanager`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pluggy

if TYPE_CHECKING:
    import click

__all__ = ["hookspec", "hookimpl", "Registrar", "galaug_register", "galaug_cli"]

PROJECT = "galaug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@runtime_checkable
class Registrar(Protocol):
    """What :func:`galaug_register` is handed: one method per component kind.

    Each method takes a component class deriving from the kind's base class
    in :mod:`galaug.kinds`, or an import path ``"module:Class"`` together
    with ``name=`` (and optionally ``summary=``) so that the module is
    imported only when the component is used. The registrar is valid only
    while ``galaug_register`` runs. (The implementation is
    :class:`galaug.registry.Registrar`.)
    """

    def source(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Source`."""

    def generator(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Generator`."""

    def degradation(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Degradation`."""

    def task(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Task`."""

    def analysis(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Analysis`."""


@hookspec
def galaug_register(register: Registrar) -> None:
    """Register the components (sources, generators, degradations, tasks,
    analyses) this plugin provides.

    Called once per plugin when the plugin manager starts. Components are
    classes deriving from the kind's base class in :mod:`galaug.kinds`; a
    heavy one may be given as an import path string so that it is imported
    only when used::

        @hookimpl
        def galaug_register(register):
            register.analysis(BandStats)
            register.generator("my_pkg.model:MyGenerator", name="mygen",
                               summary="A generator that imports torch")

    Parameters
    ----------
    register : Registrar
        Has one method per kind: ``source``, ``generator``, ``degradation``,
        ``task`` and ``analysis``. A name already registered for the same
        kind, a class that does not derive from the kind's base, or an
        invalid name marks this plugin as broken; other plugins keep working.
    """


@hookspec
def galaug_cli(cli: click.Group) -> None:
    """Add commands to the ``galaug`` command line.

    Called once per plugin while the CLI is built. Add commands with
    ``cli.add_command(command)``. Adding a command whose name is already
    taken marks this plugin as broken and leaves the existing command in
    place; a hook that raises is reported by ``galaug plugins`` and the
    rest of the CLI keeps working.

    Parameters
    ----------
    cli : click.Group
        The root ``galaug`` group.
    """
