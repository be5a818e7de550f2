"""Base classes of the five plugin kinds.

A component is a class with a ``name``, an optional ``Config`` dataclass
(its options, every field with a default) and the methods of its kind.
The registrar checks the base class, the name and the config when the
component is registered, so a mistake shows up in ``galaug plugins``
instead of in the middle of a run.

The kind-specific methods are documented in ``docs/plugins.md``; a kind
gains methods as the commands that drive it are built.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "KINDS",
    "Component",
    "Source",
    "Generator",
    "Degradation",
    "Task",
    "Analysis",
    "base_for",
]


@dataclasses.dataclass
class _NoOptions:
    """A component without options."""


class Component:
    """What every component shares: a name, a config, a version.

    Parameters
    ----------
    config : dataclass instance, optional
        An instance of ``type(self).Config``; the defaults when omitted.
    """

    kind: ClassVar[str] = ""
    #: Unique within its kind; lowercase letters, digits and dashes.
    name: ClassVar[str] = ""
    #: Options of the component; every field needs a default.
    Config: ClassVar[type] = _NoOptions
    #: Version shown by ``galaug plugins``; the distribution's version when empty.
    version: ClassVar[str] = ""

    def __init__(self, config: Any = None) -> None:
        self.config = self.Config() if config is None else config
        if not isinstance(self.config, self.Config):
            raise TypeError(
                f"{type(self).__name__} expects a {self.Config.__name__}, "
                f"got {type(self.config).__name__}"
            )


class Source(Component):
    """Makes or reads real images (simulators, FITS/HDF5/npy readers)."""

    kind = "source"


class Generator(Component):
    """Trains on a dataset; samples, encodes and decodes images."""

    kind = "generator"


class Degradation(Component):
    """A pure function of (batch, seed): PSF, noise, resampling."""

    kind = "degradation"


class Task(Component):
    """A downstream task trained on a dataset under a degradation."""

    kind = "task"


class Analysis(Component):
    """Looks at a generator or at datasets; writes figures and a report.

    ``galaug analyze NAME INPUT... -o OUT`` creates ``OUT`` atomically,
    calls :meth:`run`, and writes what it returns to ``OUT/report.json``
    together with the config, seed and inputs.
    """

    kind = "analysis"

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        """Analyse ``inputs`` and write figures into ``out_dir``.

        Parameters
        ----------
        inputs : list of Path
            The positional arguments of ``galaug analyze`` (datasets, run
            directories), as given.
        out_dir : Path
            An empty directory that is renamed into place when ``run``
            returns; write figures here.
        seed : int
            Seed for every random step.

        Returns
        -------
        dict
            JSON-serialisable results, written to ``report.json``.
        """
        raise NotImplementedError(f"analysis {self.name!r} does not implement run()")


KINDS: dict[str, type[Component]] = {
    cls.kind: cls for cls in (Source, Generator, Degradation, Task, Analysis)
}


def base_for(kind: str) -> type[Component]:
    """The base class of ``kind``; ``KeyError`` names the valid kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}") from None
