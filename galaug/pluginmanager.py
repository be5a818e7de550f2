"""The machinery that finds, loads and isolates plugins.

Plugin authors read :mod:`galaug.hookspecs`; this module is for galaug.

Loading order: the built-in plugins in :data:`DEFAULT_PLUGINS`, then every
entry point of the group ``galaug`` (unless ``GALAUG_DISABLE_PLUGIN_AUTOLOAD``
is set), skipping names listed in ``GALAUG_BLOCK_PLUGINS``. Each plugin is
loaded, checked against the hookspecs and asked to register on its own, so
a plugin that fails to import, uses an unknown hook, raises, or registers a
duplicate name is recorded as broken with its reason, and everything else
keeps working.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
from typing import Any

import pluggy

from galaug import hookspecs
from galaug.errors import GalaugError, PluginError, describe, short
from galaug.registry import Registrar, Registry

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "Plugin",
    "PluginManager",
    "get_manager",
    "set_manager",
]

ENTRY_POINT_GROUP = "galaug"
AUTOLOAD_ENV = "GALAUG_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "GALAUG_BLOCK_PLUGINS"

#: Built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "galaug.builtin.commands",
    "galaug.builtin.simulators",
    "galaug.builtin.readers",
    "galaug.builtin.degradations",
)

_FALSE = {"", "0", "false", "no", "off"}


@dataclasses.dataclass
class Plugin:
    """A plugin (a module with hook implementations) and how loading it went."""

    name: str
    distribution: str
    version: str
    status: str = "ok"  # "ok", "broken" or "blocked"
    reason: str = ""
    obj: Any = None


def _env_blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _env_autoload() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() in _FALSE


#: What a plugin's code may raise while galaug loads it, each recorded as the plugin being broken. SystemExit
#: too: a plugin calling sys.exit() must not end galaug. KeyboardInterrupt still stops everything.
_PLUGIN_FAILURES = (Exception, SystemExit)
_HOOKS = tuple(n for n in hookspecs.__all__ if n.startswith("galaug_"))


class PluginManager:
    """Loads plugins into a pluggy manager and a component :class:`Registry`.

    Parameters
    ----------
    autoload : bool, optional
        Load entry points of the ``galaug`` group. Defaults to true unless
        ``GALAUG_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value.
    blocked : iterable of str, optional
        Plugin (entry-point) names and component names not to load.
        Defaults to the comma-separated ``GALAUG_BLOCK_PLUGINS``.
    builtins : iterable of str, optional
        Modules registered first; :data:`DEFAULT_PLUGINS` by default.
    """

    def __init__(self, *, autoload: bool | None = None, blocked=None, builtins=None) -> None:
        self.autoload = _env_autoload() if autoload is None else autoload
        self.blocked = _env_blocked() if blocked is None else set(blocked)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, Plugin] = {}
        from galaug._version import __version__

        for module in DEFAULT_PLUGINS if builtins is None else builtins:
            self._load(module, lambda m=module: importlib.import_module(m), "galaug", __version__)
        if self.autoload:
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                meta = ep.dist.metadata if ep.dist is not None else None  # read once (.name and .version each read it)
                dist, version = (meta["Name"], meta["Version"]) if meta is not None else ("?", "?")
                self._load(ep.name, ep.load, dist, version)

    # -- loading ---------------------------------------------------------------
    def _load(self, name: str, load, distribution: str, version: str) -> Plugin:
        if name in self.plugins:
            existing = self.plugins[name]
            plugin = Plugin(name + f" ({distribution})", distribution, version, "broken",
                            f"plugin name {name!r} is already used by {existing.distribution}")
            self.plugins[plugin.name] = plugin
            return plugin
        plugin = Plugin(name, distribution, version)
        self.plugins[name] = plugin
        if name in self.blocked:
            plugin.status, plugin.reason = "blocked", f"listed in {BLOCK_ENV}"
            return plugin
        try:
            plugin.obj = load()
        except _PLUGIN_FAILURES as exc:
            return self._broken(plugin, f"import failed: {describe(exc, None)}")
        return self.register(plugin.obj, name=name, distribution=distribution, version=version)

    def _broken(self, plugin: Plugin, reason: str) -> Plugin:
        plugin.status, plugin.reason = "broken", reason
        self.registry.remove_plugin(plugin.name, broken=True)
        if plugin.obj is not None and self.pm.is_registered(plugin.obj):
            self.pm.unregister(plugin.obj)
        return plugin

    def register(self, obj: Any, *, name: str, distribution: str = "?", version: str = "?") -> Plugin:
        """Register a plugin object (usually a module) and call its register hook.

        Used for built-ins, entry points and temporary plugins in tests
        (see :mod:`galaug.testing`). Failures mark the plugin broken
        instead of raising.
        """
        plugin = self.plugins.get(name) or Plugin(name, distribution, version)
        plugin.obj = obj
        self.plugins[name] = plugin
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # pluggy validation: bad signature, dup registration
            plugin.obj = None
            return self._broken(plugin, describe(exc, None))
        callers = self.pm.get_hookcallers(obj) or []
        unknown = [c.name for c in callers if not c.has_spec()]
        if unknown:
            return self._broken(plugin, f"unknown hook {', '.join(sorted(unknown))} (see galaug.hookspecs)")
        if not callers:
            return self._broken(plugin, f"provides no galaug hook ({', '.join(_HOOKS)}); "
                                        f"the entry point should name a module (got {short(obj)})")
        registrar = _FilteredRegistrar(self.registry, plugin=name, distribution=distribution,
                                       version=version, blocked=self.blocked)
        try:
            for impl in self.pm.hook.galaug_register.get_hookimpls():
                if impl.plugin is obj:
                    try:
                        impl.function(register=registrar)
                    except _PLUGIN_FAILURES as exc:
                        return self._broken(plugin, f"galaug_register failed: {describe(exc, None)}")
        finally:
            registrar.close()  # a registrar kept for later cannot register outside this isolation
        return plugin

    # -- queries ---------------------------------------------------------------
    def add_commands(self, cli) -> None:
        """Let every plugin add commands to ``cli``; isolate the ones that fail."""
        for impl in list(self.pm.hook.galaug_cli.get_hookimpls()):  # registration order
            plugin = self.plugins[self.pm.get_name(impl.plugin)]
            before = dict(cli.commands)
            guard = _GuardedGroup(cli, plugin.name)
            try:
                impl.function(cli=guard)
                # what reached the group other than through add_command (cli.commands[...] = ...)
                changed = sorted(n for n, c in before.items() if cli.commands.get(n) is not c)
                if changed:
                    raise PluginError(f"changed existing command(s) {', '.join(changed)}")
                for cmd_name, cmd in cli.commands.items():
                    if cmd_name not in before:
                        _check_command(cmd, cmd_name)
            except _PLUGIN_FAILURES as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._broken(plugin, f"galaug_cli failed: {describe(exc, None)}")

    def get(self, kind: str, name: str):
        """The component class ``name`` of ``kind``; :class:`galaug.errors.PluginError` if unknown or broken."""
        return self.registry.get(kind, name)

    def blame(self, exc: BaseException) -> Plugin | None:
        """The plugin whose code raised ``exc``, or None where it came from galaug's own code.

        The innermost frame of the traceback that lies in a plugin's package
        (the plugin module's, or that of a component it registered) names the
        plugin; galaug's core package is never blamed. An exception raised in
        a worker process (a ``multiprocessing`` or ``concurrent.futures``
        pool, a torch ``DataLoader`` worker) and re-raised here carries the
        worker's traceback as text only: its frames, which lie inside the
        frames of this process, are searched first, by file.
        """
        import sys
        import traceback
        import types

        owners: dict[str, str] = {}
        for entry in self.registry.entries():
            if entry.loaded:
                owners.setdefault(entry.target.__module__.partition(".")[0], entry.plugin)
        for plugin in self.plugins.values():
            if isinstance(plugin.obj, types.ModuleType):
                owners.setdefault(plugin.obj.__name__.partition(".")[0], plugin.name)
        owners.pop("galaug", None)
        places = []  # (folder or file of a plugin's top-level module, plugin name)
        for module, owner in owners.items():
            loaded = sys.modules.get(module)
            for where in getattr(loaded, "__path__", None) or [getattr(loaded, "__file__", None)]:
                if where:
                    places.append((os.path.normcase(os.path.abspath(where)), owner))
        for filename in reversed(_worker_frames(exc)):
            filename = os.path.normcase(os.path.abspath(filename))
            for where, owner in places:
                if (filename == where or filename.startswith(where + os.sep)) and owner in self.plugins:
                    return self.plugins[owner]
        for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
            owner = owners.get(str(frame.f_globals.get("__name__", "")).partition(".")[0])
            if owner is not None and owner in self.plugins:
                return self.plugins[owner]
        return None


_FRAME_LINE = re.compile(r'^\s*File "([^"]+)", line \d+', re.MULTILINE)


def _worker_frames(exc: BaseException) -> list[str]:
    """The files of the frames, outermost first, of the worker traceback that ``exc`` carries as text.

    ``multiprocessing`` and ``concurrent.futures`` pools set the worker's
    formatted traceback as the ``__cause__`` of the exception they re-raise
    (an exception with the text in ``tb``); torch puts it into the message
    (``Caught X in DataLoader worker process N. Original Traceback ...``).
    """
    texts = [getattr(exc.__cause__, "tb", None)]
    try:
        texts.append(str(exc))
    except Exception:  # a plugin's exception whose __str__ is broken too
        pass
    return [name for text in texts if isinstance(text, str) for name in _FRAME_LINE.findall(text)]


class _FilteredRegistrar(Registrar):
    """A registrar that skips component names listed as blocked."""

    def __init__(self, registry, *, blocked, **kw) -> None:
        super().__init__(registry, **kw)
        self._blocked = blocked

    def _add(self, kind, target, name, summary) -> None:
        key = name if name is not None else getattr(target, "name", None)
        if isinstance(key, str) and (key in self._blocked or f"{kind}:{key}" in self._blocked):
            return
        super()._add(kind, target, name, summary)


def _check_command(cmd: Any, name: Any) -> None:
    """A command a plugin adds must be a click command under a plain name, or it breaks ``galaug --help``."""
    import click

    if not isinstance(cmd, click.Command):
        raise PluginError(f"add_command needs a click.Command, got {short(cmd)}")
    if not (isinstance(name, str) and name and name.isprintable() and " " not in name):
        raise PluginError(f"command name {short(name)} is not a word")


class _GuardedGroup:
    """Wraps the root group so a plugin can add commands, and cannot replace one or add garbage."""

    def __init__(self, group, plugin: str) -> None:
        self._group = group
        self._plugin = plugin

    def add_command(self, cmd, name: str | None = None) -> None:
        name = name or getattr(cmd, "name", None)
        _check_command(cmd, name)
        if name in self._group.commands:
            raise GalaugError(f"command {name!r} already exists")
        self._group.add_command(cmd, name)

    def command(self, *args, **kwargs):
        import click

        return self._decorator(click.command, args, kwargs)

    def group(self, *args, **kwargs):
        import click

        return self._decorator(click.group, args, kwargs)

    def _decorator(self, make, args, kwargs):
        def decorator(f):
            cmd = make(*args, **kwargs)(f)
            self.add_command(cmd)
            return cmd

        return decorator

    def __getattr__(self, attr):
        return getattr(self._group, attr)


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def set_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (``None`` resets it); returns the old one."""
    global _manager
    old, _manager = _manager, manager
    return old
