"""The registry of components, and the registrar handed to plugins."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from typing import Any

from galaug.errors import PluginError
from galaug.kinds import KINDS, Component, base_for

__all__ = ["Entry", "Registry", "Registrar", "check_component", "component_version", "spec_name"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def spec_name(name: str) -> str:
    """How a registered name is written in a spec: the first ``-`` as ``:`` (``psf-gaussian`` -> ``psf:gaussian``).

    Here rather than in :mod:`galaug.degrade.pipeline`, so that ``galaug plugins`` names degradations without
    importing the pipeline parser."""
    return name.replace("-", ":", 1)


@dataclasses.dataclass
class Entry:
    """One registered component.

    ``target`` is the class, or ``"module:attr"`` until first use; ``error``
    is set when loading or validating it failed.
    """

    kind: str
    name: str
    target: type[Component] | str
    plugin: str
    distribution: str
    version: str
    summary: str = ""
    error: str = ""

    @property
    def loaded(self) -> bool:
        return not isinstance(self.target, str)

    @property
    def status(self) -> str:
        if self.error:
            return f"broken: {self.error}"
        return "ok" if self.loaded else "lazy"


def check_component(kind: str, cls: Any, *, name: str | None = None) -> type[Component]:
    """Validate a component class for ``kind``; raise ``PluginError`` if it is not one."""
    base = base_for(kind)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{kind} component must be a class deriving from galaug.kinds.{base.__name__}, "
            f"got {cls!r}"
        )
    if name is not None and cls.name != name:
        raise PluginError(f"{cls.__name__}.name is {cls.name!r} but it was registered as {name!r}")
    if not isinstance(cls.name, str) or not _NAME.match(cls.name):
        raise PluginError(
            f"{cls.__name__}.name {cls.name!r} is not a valid name "
            "(lowercase letters, digits and single dashes, starting with a letter)"
        )
    if not (isinstance(cls.Config, type) and dataclasses.is_dataclass(cls.Config)):
        raise PluginError(f"{cls.__name__}.Config must be a dataclass")
    if not isinstance(getattr(cls, "version", ""), str):
        raise PluginError(f"{cls.__name__}.version must be a string, got {cls.version!r}")
    for f in dataclasses.fields(cls.Config):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PluginError(f"{cls.__name__}.Config.{f.name} has no default")
    return cls


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions; reading every installed package's metadata takes seconds."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def component_version(cls: type) -> str | None:
    """``cls.version``, else the version of the distribution that ships ``cls``'s module."""
    if getattr(cls, "version", ""):
        return cls.version
    import importlib.metadata

    top = cls.__module__.split(".", 1)[0]
    for dist in _distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


class Registry:
    """All components by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        #: Plugins marked broken: their components are gone, and an unknown name mentions them.
        self.broken_plugins: list[str] = []

    def add(self, entry: Entry) -> None:
        key = (entry.kind, entry.name)
        if key in self._entries:
            other = self._entries[key]
            raise PluginError(
                f"duplicate {entry.kind} name {entry.name!r}: already registered by "
                f"plugin {other.plugin!r} ({other.distribution})"
            )
        self._entries[key] = entry

    def remove_plugin(self, plugin: str, *, broken: bool = False) -> None:
        """Forget every component registered by ``plugin`` (``broken``: remember it failed)."""
        for key in [k for k, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[key]
        if broken and plugin not in self.broken_plugins:
            self.broken_plugins.append(plugin)

    def entries(self, kind: str | None = None) -> list[Entry]:
        return sorted(
            (e for e in self._entries.values() if kind is None or e.kind == kind),
            key=lambda e: (list(KINDS).index(e.kind), e.name),
        )

    def names(self, kind: str) -> list[str]:
        return [e.name for e in self.entries(kind) if not e.error]

    def entry(self, kind: str, name: str) -> Entry:
        base_for(kind)
        try:
            return self._entries[(kind, name)]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none installed"
            broken = (f"; broken plugins, which may provide it: {', '.join(self.broken_plugins)} "
                      "(see galaug plugins)") if self.broken_plugins else ""
            raise PluginError(f"unknown {kind} plugin {name!r} (available: {known}){broken}") from None

    def load(self, entry: Entry) -> type[Component]:
        """Import a lazy entry; record and raise the reason if that fails."""
        if entry.error:
            raise PluginError(f"{entry.kind} plugin {entry.name!r} is broken: {entry.error}")
        if entry.loaded:
            return entry.target  # type: ignore[return-value]
        module, _, attr = entry.target.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            cls = check_component(entry.kind, obj, name=entry.name)
        except (Exception, SystemExit) as exc:  # any failure of third-party code, sys.exit() included
            entry.error = f"{type(exc).__name__}: {exc}"
            raise PluginError(f"{entry.kind} plugin {entry.name!r} is broken: {entry.error}") from exc
        entry.target = cls
        entry.summary = entry.summary or _first_line(cls.__doc__)
        if cls.version:
            entry.version = cls.version
        return cls

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class of ``kind`` called ``name``, imported if lazy."""
        return self.load(self.entry(kind, name))


class Registrar:
    """Handed to :func:`galaug.hookspecs.galaug_register`; implements :class:`galaug.hookspecs.Registrar`.

    Each method takes a component class, or an import path ``"module:Class"``
    together with ``name=`` (and optionally ``summary=``) so that the module
    is imported only when the component is used.
    """

    def __init__(self, registry: Registry, *, plugin: str, distribution: str, version: str) -> None:
        self._registry = registry
        self._plugin = plugin
        self._distribution = distribution
        self._version = version
        self._closed = False

    def close(self) -> None:
        """End registration: the registrar is valid only while ``galaug_register`` runs."""
        self._closed = True

    def _add(self, kind: str, target: Any, name: str | None, summary: str) -> None:
        if self._closed:
            raise PluginError(f"plugin {self._plugin!r} registered a {kind} after galaug_register returned; "
                              "register components inside the hook")
        if not isinstance(summary, str):
            raise PluginError(f"summary of {kind} {name or getattr(target, 'name', target)!r} must be a string, "
                              f"got {type(summary).__name__}")
        if isinstance(target, str):
            if ":" not in target:
                raise PluginError(f"lazy {kind} target {target!r} must look like 'module:Class'")
            if not isinstance(name, str) or not _NAME.match(name):
                raise PluginError(f"lazy {kind} {target!r} needs a valid name= (got {name!r})")
            entry = Entry(kind, name, target, self._plugin, self._distribution, self._version, summary)
        else:
            cls = check_component(kind, target, name=name)
            entry = Entry(
                kind,
                cls.name,
                cls,
                self._plugin,
                self._distribution,
                cls.version or self._version,
                summary or _first_line(cls.__doc__),
            )
        self._registry.add(entry)

    def source(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Source`."""
        self._add("source", target, name, summary)

    def generator(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Generator`."""
        self._add("generator", target, name, summary)

    def degradation(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Degradation`."""
        self._add("degradation", target, name, summary)

    def task(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Task`."""
        self._add("task", target, name, summary)

    def analysis(self, target: Any, *, name: str | None = None, summary: str = "") -> None:
        """Register a :class:`galaug.kinds.Analysis`."""
        self._add("analysis", target, name, summary)
