"""Base classes of the five plugin kinds.

A component is a class with a ``name``, an optional ``Config`` dataclass
(its options, every field with a default) and the methods of its kind.
The registrar checks the base class, the name and the config when the
component is registered, so a mistake shows up in ``galaug plugins``
instead of in the middle of a run.

The kind-specific methods are documented in ``docs/plugins.md``; a kind
gains methods as the commands that drive it are built. Sources come in two
shapes, :class:`Simulator` and :class:`Reader`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from galaug.degrade import Pipeline

__all__ = [
    "KINDS",
    "Component",
    "Source",
    "Simulator",
    "Reader",
    "Layout",
    "Generator",
    "GeneratorModel",
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
    """Makes or reads real images: a :class:`Simulator` or a :class:`Reader`."""

    kind = "source"


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a simulator's dataset looks like (everything the writer needs but the pixels).

    ``pixel_scale`` is an astropy Quantity (angle or length per pixel);
    ``param_units`` has one unit string per parameter (``""`` if none).
    """

    bands: tuple[str, ...]
    image_size: int
    pixel_scale: Any = None
    flux_unit: str | None = None
    param_names: tuple[str, ...] = ()
    param_units: tuple[str, ...] = ()


class Simulator(Source):
    """A source that draws images: ``galaug simulate NAME OUT.zarr -n N --seed S``."""

    def layout(self) -> Layout:
        """Bands, image size, pixel scale, flux unit and parameter names of the images."""
        raise NotImplementedError

    def draw(self, rows: Sequence[int], *, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Images (n, C, H, W) float32 and params (n, P) float32 (or None) of ``rows``.

        Row ``r`` must depend only on ``(seed, r)``, never on which other rows
        are drawn in the same call, so that batching and sharding give
        identical datasets.
        """
        raise NotImplementedError


class Reader(Source):
    """A source that reads files: ``galaug ingest PATH OUT.zarr --format NAME``."""

    #: Glob patterns of the files this reader takes when given a folder.
    patterns: ClassVar[tuple[str, ...]] = ()

    def read(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None]]:
        """Yield ``(label, image, bands)`` for each image in the file ``path``.

        ``image`` is (C, H, W) float32 (C = 1 for a 2-d image); ``bands`` are
        the band names the file declares, or None. Raise ``ValueError`` or
        ``OSError`` for a file that cannot be read; ingest reports it by name.
        """
        raise NotImplementedError


class Generator(Component):
    """Trains on a dataset; its trained form (:class:`GeneratorModel`) samples, encodes and decodes.

    ``galaug train NAME DATA`` creates a run directory, writes
    ``options.json`` (generator name, resolved config, data, seed) and calls
    :meth:`train`; ``galaug generate RUN`` and ``galaug.load_generator(RUN)``
    call :meth:`load`.
    """

    kind = "generator"
    #: Named config overrides for ``--preset``, e.g. ``{"tiny": {"image_size": 32}}``.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def train(self, data: Path, run_dir: Path, *, steps: int | None = None, device: str = "cpu",
              seed: int = 0, resume: bool = False) -> None:
        """Train on the dataset at ``data``; write checkpoints and metrics into ``run_dir``.

        ``run_dir`` exists and already holds ``options.json``. With
        ``resume``, continue from the newest good checkpoint in it.
        ``steps`` overrides the config's number of steps.
        """
        raise NotImplementedError

    @classmethod
    def load(cls, run_dir: Path, *, device: str = "cpu", checkpoint: Path | None = None) -> GeneratorModel:
        """The trained model of ``run_dir`` (its newest good checkpoint unless ``checkpoint``)."""
        raise NotImplementedError


class GeneratorModel:
    """A trained generator, batched, on CPU or GPU; the interface every generator offers.

    Tensors in and out are torch tensors on :attr:`device` (numpy arrays are
    accepted); images are (B, C, H, W) in the training data's units.

    Attributes
    ----------
    layout : Layout
        Bands, image size, pixel scale and flux unit of the images.
    z_dim, w_dim : int
        Sizes of the prior and of the latent that :meth:`encode` returns.
    step : int
        Training step of the loaded checkpoint.
    device : torch.device
    """

    layout: Layout
    z_dim: int
    w_dim: int
    step: int
    #: whether :func:`galaug.generate` stores z and w with the images (False where they are as large as the
    #: images themselves, like a diffusion model's starting noise)
    stores_latents: bool = True
    #: the params columns a conditional generator samples at (empty: unconditional). A conditional model also
    #: offers ``condition_units``, ``condition_range`` ({name: (low, high)}) and
    #: ``check_condition(condition, *, extrapolate)``, and its :meth:`sample` takes ``condition=`` (a mapping
    #: of column to one value or one per row) and returns the values used as ``"condition"`` (B, k)
    condition_names: tuple[str, ...] = ()

    def sample(self, n: int | None = None, *, seed: int = 0, rows: Sequence[int] | None = None,
               truncation: float | None = None, edit: Mapping[str, float] | None = None,
               directions: Any = None) -> dict[str, torch.Tensor]:
        """Samples ``rows`` (or ``range(n)``): ``{"images", "z", "w"}``.

        Sample ``r`` depends only on ``(seed, r)``, so any slice can be
        regenerated alone and batching does not change the output.

        ``edit`` (e.g. ``{"r_half": 1.0}``) moves each w, after truncation
        and before decoding, along the ``directions`` (a
        :class:`galaug.editing.LatentDirections` or the path of a
        latent-structure report): implement it by passing w through
        :meth:`edit_latents`, so that the edited sample ``r`` is the unedited
        one (same z, same noise) moved along w*, and an edit of 0 changes
        nothing.
        """
        raise NotImplementedError

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """Prior samples z (B, z_dim) to latents w (B, w_dim)."""
        raise NotImplementedError

    def decode(self, w: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Latents w to images; ``seeds`` fix any per-sample noise."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (in data units) to latents w."""
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``decode(encode(images))``."""
        return self.decode(self.encode(images))

    def edit_latents(self, w, edit: Mapping[str, float] | None, *, directions: Any = None):
        """``w`` moved by ``edit[name]`` standard deviations of the projection along each w*(name).

        ``w`` is returned as it is when ``edit`` is empty; otherwise the
        directions are checked against this generator first (another run,
        checkpoint or latent size is a :class:`galaug.GalaugError`). Numpy
        arrays and torch tensors keep their type, device and dtype.
        """
        if not edit:
            return w
        from galaug.editing import as_directions

        directions = as_directions(directions)
        directions.check(self)
        return directions.move(w, edit)

    def edit(self, w, edit: Mapping[str, float], *, directions: Any,
             seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Latents ``w`` moved along the directions of ``edit`` and decoded: ``{"images", "w"}``.

        ``model.edit(w, {"r_half": 1.0}, directions="runs/latent")`` moves
        each w by one standard deviation of the projection along
        w*(r_half) (:meth:`edit_latents`) and decodes it with ``seeds``
        (pass the noise seeds of the unedited images to keep their noise).
        """
        import numpy as np
        import torch

        moved = self.edit_latents(w, edit, directions=directions)
        if not isinstance(moved, torch.Tensor):
            moved = torch.as_tensor(np.asarray(moved), dtype=torch.float32).to(self.device)
        return {"images": self.decode(moved, seeds=seeds), "w": moved}


class Degradation(Component):
    """A pure function of (batch, seeds): PSF, noise, resampling.

    Applied on the fly by tasks (CPU or GPU) and by ``galaug degrade``.
    """

    kind = "degradation"
    #: True if the output depends on the seeds (noise); False for PSFs and resampling.
    stochastic: ClassVar[bool] = False
    #: Config fields that are lengths: pixels, or an angle that :meth:`galaug.degrade.Pipeline.in_pixels`
    #: converts with the images' pixel scale (see :mod:`galaug.degrade.units`).
    lengths: ClassVar[tuple[str, ...]] = ()

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Degrade ``images`` (B, C, H, W), float, on any device.

        ``seeds`` (B,) int64 holds one seed per sample: sample ``i`` must
        depend only on ``images[i]`` and ``seeds[i]``. Returns (B, C, H', W')
        on the same device.
        """
        raise NotImplementedError

    def pixel_scale_factor(self) -> float:
        """Output pixel scale over input pixel scale (2.0 when the resolution is halved)."""
        return 1.0

    def scaled(self, factor: float) -> Degradation:
        """The same degradation with its noise ``factor`` times stronger in standard deviation.

        Tasks use it for their stronger-noise test sets
        (:meth:`galaug.degrade.Pipeline.scaled`). A degradation that draws no
        random numbers (``stochastic = False``: PSFs, resampling) returns
        itself; a stochastic one overrides this method and returns a new
        instance, leaving ``self`` unchanged.

        Raises
        ------
        ValueError
            For a stochastic degradation that does not implement it.
        """
        if not self.stochastic:
            return self
        from galaug.degrade.pipeline import spec_name

        raise ValueError(f"cannot make {spec_name(self.name)} {factor:g}x stronger: it does not implement scaled()")

    def pixel_grid(self, height: int, width: int) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Where the output's pixels lie on the input's, for inputs of ``height`` x ``width``.

        ``((scale_y, offset_y), (scale_x, offset_x))``: output pixel ``p``
        (0-based, along each axis) is centred at input pixel coordinate
        ``offset + scale * p``. ``galaug degrade`` moves each image's WCS
        with it. The default is the same grid (PSFs, noise); a degradation
        that crops or resamples overrides it, or returns None, and the WCS
        is then dropped (a step whose output has another shape and that
        claims the same grid is taken as None).
        """
        return (1.0, 0.0), (1.0, 0.0)

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        """The per-pixel variance of ``apply(images)``'s output, given its input's ``variance``.

        ``variance`` is (B, C, H, W), ``inf`` where unknown (an inverse
        variance of 0). ``galaug degrade`` uses it to carry a dataset's
        ``ivar``. The default, None, says it cannot be known, and the
        degraded dataset then has no ``ivar`` (the provenance says why).
        """
        return None

    def propagate_mask(self, mask: torch.Tensor) -> torch.Tensor | None:
        """The bit flags (B, C, H, W) int32 of the output's pixels, given the input's ``mask``.

        The default passes them through unchanged (PSFs, noise: flags are
        not dilated); None drops the mask (the provenance says why), as
        does a mask of another shape than the output.
        """
        return mask


class Task(Component):
    """A downstream task trained on a dataset under a degradation, then evaluated.

    ``galaug task train NAME DATA --degrade SPEC`` creates a run directory,
    writes ``options.json`` (task name, resolved config, data, degradation,
    seed) and calls :meth:`train`; ``galaug task eval NAME RUN DATA`` calls
    :meth:`evaluate` and writes what it returns to ``metrics.json``.
    """

    kind = "task"
    #: Classical baselines :meth:`evaluate` can score beside the model (optional; empty: none). A task that
    #: names some takes ``baselines=`` (a tuple of these names) in :meth:`evaluate` whenever the user chooses
    #: them (``galaug task eval --baselines``), and reports each in its summary as
    #: ``summary[test_set]["baselines"][name][metric]``.
    baselines: ClassVar[tuple[str, ...]] = ()

    def train(self, data: Path, run_dir: Path, *, degrade: Pipeline | None = None, device: str = "cpu",
              seed: int = 0, resume: bool = False) -> None:
        """Train on the dataset at ``data`` (any mix), degrading inputs on the fly with ``degrade``.

        ``degrade`` is the degradation pipeline, parsed once by the caller
        (its canonical spec is in ``options.json``); None means the dataset's
        stored pairs (a ``galaug degrade`` output). ``run_dir`` exists and
        holds ``options.json``; write checkpoints and ``metrics.jsonl`` there
        (:class:`galaug.runs.Training` does the bookkeeping); with
        ``resume``, continue from the newest good checkpoint.
        """
        raise NotImplementedError

    def evaluate(self, run_dir: Path, data: Path, *, degrade: Pipeline | None = None, device: str = "cpu",
                 seed: int = 0) -> dict[str, Any]:
        """Evaluate the trained run on ``data``; JSON-serialisable metrics.

        ``degrade`` is the evaluation pipeline: the caller passes the run's
        own unless the user chose another (None: the dataset's stored
        pairs). Every random step uses fixed seeds so that every model sees
        identical inputs.

        A task with :attr:`baselines` also takes ``baselines``: the names the
        user chose (possibly none), or nothing for the task's own default.
        """
        raise NotImplementedError


class Analysis(Component):
    """Looks at a generator or at datasets; writes figures and a report.

    ``galaug analyze NAME INPUT... OUT`` creates ``OUT`` atomically,
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
