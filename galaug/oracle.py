"""The oracle: a perfect generator for a real set that was simulated, drawing fresh images from its simulator.

A real set made by ``galaug simulate`` (then split any number of times)
records its simulator, the simulator's version and config, and the seed in
its provenance. The oracle draws new images from the same simulator with
the same config (so with the same size, bands, pixel scale and flux unit)
and a seed that none of the given sets' simulations used; a set that went
through any other step after its simulation (degrade, resample, mix,
ingest) has no oracle, since the oracle would not reproduce that step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import astropy.units as u

from galaug.data import Dataset, open_dataset
from galaug.errors import GalaugError, ParamError

__all__ = ["OraclePlan", "oracle_plan", "no_oracle_reason", "draw_oracle"]


@dataclasses.dataclass(frozen=True)
class OraclePlan:
    """What the oracle draws: simulator ``source`` (its name), ``version`` and ``config``, with ``seed``.

    ``used_seeds`` are the seeds of the simulations the oracle must not
    repeat (the real set's, and those of the sets passed as ``avoid``).
    """

    source: str
    version: str | None
    config: dict[str, Any]
    seed: int
    used_seeds: tuple[int, ...]

    def describe(self) -> dict[str, Any]:
        """The plan as recorded in an experiment's results."""
        return {"simulator": self.source, "simulator_version": self.version, "config": self.config,
                "seed": self.seed, "seeds_avoided": list(self.used_seeds)}


def _lineage(ds: Dataset) -> list[dict[str, Any]]:
    """The provenance entries that made ``ds``, its own last, following single parents back to the first step."""
    by_output = {e.get("output"): e for e in ds.provenance if e.get("output")}
    entry = by_output.get(ds.id) or (ds.provenance[-1] if ds.provenance else None)
    chain = []
    while entry is not None and len(chain) <= len(ds.provenance):
        chain.append(entry)
        parents = entry.get("parents") or []
        entry = by_output.get(parents[0]) if len(parents) == 1 else None
    return chain[::-1]


def _simulation(ds: Dataset) -> tuple[dict[str, Any] | None, str | None]:
    """The ``simulate`` entry ``ds`` comes from through splits only, or None and why not."""
    name = Path(str(ds.path)).name
    chain = _lineage(ds)
    if not chain:
        return None, f"the real set {name} has no provenance"
    steps = [str(e.get("step")) for e in chain]
    if steps[0] != "simulate":
        return None, f"the real set {name} was not simulated (its history starts with {steps[0]})"
    if len(chain[0].get("parents") or []) or any(s != "split" for s in steps[1:]):
        return None, (f"the real set {name} was made by {' then '.join(steps)}; the oracle reproduces only a "
                      "simulation followed by splits")
    return chain[0], None


def _simulation_seeds(ds: Dataset) -> set[int]:
    return {int(e["seed"]) for e in ds.provenance if e.get("step") == "simulate" and isinstance(e.get("seed"), int)}


def _source(entry: dict[str, Any], manager) -> tuple[type, Any, str | None]:
    """The simulator class, its rebuilt config and the installed version, or :class:`GalaugError` saying why not."""
    from galaug.config import config_to_dict, resolve_config
    from galaug.kinds import Simulator
    from galaug.registry import component_version

    plugin = str(entry.get("plugin") or "")
    kind, _, name = plugin.partition(":")
    if kind != "source" or not name:
        raise GalaugError(f"its simulation does not record its simulator (plugin {plugin!r})")
    try:
        cls = manager.get("source", name)
    except GalaugError:
        raise GalaugError(f"its simulator {name!r} is not installed") from None
    if not (isinstance(cls, type) and issubclass(cls, Simulator)):
        raise GalaugError(f"source {name!r} is not a simulator")
    version = component_version(cls)
    if entry.get("plugin_version") != version:
        raise GalaugError(f"it was simulated by {name} {entry.get('plugin_version')}, and {name} {version} is "
                          "installed: the oracle would draw from another simulator")
    try:
        config = resolve_config(cls.Config, overrides=entry.get("config") or {})
    except GalaugError as exc:
        raise GalaugError(f"its simulator's recorded config does not rebuild ({exc})") from None
    if config_to_dict(config) != (entry.get("config") or {}):
        raise GalaugError("its simulator's recorded config does not rebuild to the same values")
    return cls, config, version


def no_oracle_reason(real: Dataset, *, manager=None) -> str | None:
    """Why ``real`` has no oracle (a phrase), or None when it has one. Reads the provenance only."""
    from galaug.pluginmanager import get_manager

    entry, why = _simulation(real)
    if entry is None:
        return why
    try:
        cls, config, _ = _source(entry, manager or get_manager())
        _check_layout(real, cls(config))
    except GalaugError as exc:
        return f"the real set {Path(str(real.path)).name}: {exc}"
    return None


def _check_layout(real: Dataset, simulator) -> None:
    layout = simulator.layout()
    drawn = (tuple(layout.bands), (len(layout.bands), layout.image_size, layout.image_size), layout.flux_unit)
    have = (tuple(real.bands), tuple(real.image_shape), real.flux_unit)
    try:
        scale_differs = (layout.pixel_scale is None) != (real.pixel_scale is None) or (
            layout.pixel_scale is not None and abs(layout.pixel_scale.to_value(real.pixel_scale.unit)
                                                   - real.pixel_scale.value) > 1e-6 * abs(real.pixel_scale.value))
    except u.UnitConversionError:  # an angle against a length
        scale_differs = True
    if drawn != have or scale_differs:
        raise GalaugError(f"its simulator's config draws {drawn[1]} images in {drawn[0]}, {layout.flux_unit}, "
                          f"{layout.pixel_scale}/px, not the set's {have[1]} in {have[0]}, {real.flux_unit}, "
                          f"{real.pixel_scale}/px")


def oracle_plan(real: Dataset, *, avoid: Sequence[Dataset] = (), seed: int | None = None,
                manager=None) -> OraclePlan:
    """The oracle of ``real``, checked; reads the provenance only (nothing is drawn).

    Parameters
    ----------
    real : Dataset
        The real set: simulated, then split any number of times.
    avoid : sequence of Dataset
        Other sets (the validation set) whose simulation seeds the oracle must not use either.
    seed : int, optional
        The oracle's seed; by default one more than the largest seed of
        those simulations.

    Raises
    ------
    ParamError
        Naming ``oracle`` when ``real`` has no oracle, and ``oracle_seed``
        for a ``seed`` that a simulation of ``real`` or ``avoid`` used.
    """
    from galaug.pluginmanager import get_manager

    manager = manager or get_manager()
    entry, why = _simulation(real)
    if entry is None:
        raise ParamError("oracle", "{oracle}: {why}, so there is no simulator to draw fresh images from", why=why)
    try:
        cls, config, version = _source(entry, manager)
        _check_layout(real, cls(config))
    except GalaugError as exc:
        raise ParamError("oracle", "{oracle}: the real set {name}: {why}", name=Path(str(real.path)).name,
                         why=str(exc)) from None
    used = set().union(_simulation_seeds(real), *(_simulation_seeds(d) for d in avoid))
    if seed is None:
        seed = max(used, default=-1) + 1
    elif seed in used:
        raise ParamError("oracle_seed", "{oracle_seed} {seed} is a seed of the real or validation set's simulation; "
                         "the oracle needs fresh draws", seed=seed)
    return OraclePlan(source=cls.name, version=version, config=entry.get("config") or {}, seed=int(seed),
                      used_seeds=tuple(sorted(used)))


def draw_oracle(plan: OraclePlan, out: str | Path, n: int, *, manager=None, echo=None) -> Dataset:
    """The oracle's set at ``out``: ``n`` fresh draws of the plan, reused when ``out`` already holds them.

    Raises :class:`GalaugError` when ``out`` holds other draws (another
    simulator, config or seed, or fewer images).
    """
    from galaug.config import resolve_config
    from galaug.pluginmanager import get_manager
    from galaug.sources.simulate import simulate

    out = Path(out)
    if out.exists():
        ds = open_dataset(out)
        first = ds.provenance[0] if ds.provenance else {}
        same = (first.get("step") == "simulate" and first.get("plugin") == f"source:{plan.source}"
                and first.get("config") == plan.config and first.get("seed") == plan.seed and len(ds) >= n)
        if not same:
            raise GalaugError(f"{out} holds other draws than this experiment's oracle ({plan.source}, seed "
                              f"{plan.seed}, {n} images); --overwrite starts the experiment afresh")
        if echo is not None:
            echo(f"oracle: {out.name} reused ({len(ds)} draws of {plan.source}, seed {plan.seed})")
        return ds
    manager = manager or get_manager()
    cls = manager.get("source", plan.source)
    if echo is not None:
        echo(f"oracle: drawing {n} images from {plan.source} (seed {plan.seed}) into {out}")
    from galaug.threads import available_cores

    # drawn in worker processes (one per core): row r depends only on (seed, r), so the draws are the same
    return simulate(cls(resolve_config(cls.Config, overrides=plan.config)), out, n, seed=plan.seed, manager=manager,
                    workers=min(available_cores(), max(1, n // 256)))
