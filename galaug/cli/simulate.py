"""``galaug simulate``: draw images with a simulator source into a new dataset."""

from __future__ import annotations

import dataclasses

import click

from galaug.cli.options import codec_option, config_options, echo, nproc_option, overwrite_option, seed_option
from galaug.errors import GalaugError

__all__ = ["simulate_cmd"]


@click.command("simulate")
@click.argument("name")
@click.argument("output")
@click.option("-n", "count", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Image size in pixels (sets the simulator's image_size).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images drawn per batch; memory is bounded by workers x batch size.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes drawing in parallel; the output does not depend on it.")
@config_options
@seed_option(help="Seed of every random draw: image r depends only on (seed, r) (recorded in the provenance).")
@overwrite_option
@codec_option
@nproc_option
def simulate_cmd(name: str, output: str, count: int, size: int | None, batch_size: int, workers: int,
                 config_file: str | None, sets: tuple[str, ...], seed: int, overwrite: bool) -> None:
    """Draw -n images with simulator NAME (sersic, bulgedisk, ...) into OUTPUT.

    Image r depends only on (--seed, r), so the same seed gives the same
    dataset whatever --batch-size and --workers. Parameters of every image
    go into `params`, with their names and units.
    """
    from galaug.config import resolve_config
    from galaug.kinds import Simulator
    from galaug.sources.simulate import simulate

    manager = click.get_current_context().find_root().obj
    cls = manager.get("source", name)
    if not issubclass(cls, Simulator):
        raise GalaugError(f"source {name!r} reads files; use `galaug ingest` (simulators: "
                          f"{', '.join(n for n in manager.registry.names('source') if _is_sim(manager, n))})")
    overrides = {}
    if size is not None:
        if "image_size" not in {f.name for f in dataclasses.fields(cls.Config)}:
            raise GalaugError(f"simulator {name!r} has no image_size option")
        overrides["image_size"] = size
    config = resolve_config(cls.Config, file=config_file, sets=sets, overrides=overrides)
    ds = simulate(cls(config), output, count, seed=seed, batch_size=batch_size, workers=workers, overwrite=overwrite)
    c, h, w = ds.image_shape
    echo(f"wrote {ds.path}: {len(ds)} images, {c} x {h} x {w} ({', '.join(ds.bands)}), seed {seed}")


def _is_sim(manager, name: str) -> bool:
    from galaug.kinds import Simulator

    try:
        return issubclass(manager.get("source", name), Simulator)
    except GalaugError:
        return False
