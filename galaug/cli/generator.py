"""``galaug train`` and ``galaug generate``: any generator plugin, same commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from galaug.cli.options import config_options, echo, nproc_option, overwrite_option, seed_option
from galaug.distributed import is_main, on_main
from galaug.errors import GalaugError

__all__ = ["train_cmd", "generate_cmd"]

_device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                              show_default=True, help="Where to run; auto picks cuda when available.")


@click.command("train")
@click.argument("name")
@click.argument("data")
@click.option("--preset", default=None, help="Named set of config values (alae: tiny, small, paper).")
@click.option("--run-dir", default="runs", show_default=True, help="Folder that receives the numbered run directory.")
@click.option("--resume", default=None, metavar="RUN", help="Continue this run from its newest good checkpoint.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (overrides the config).")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit without training.")
@_device_option
@config_options
@seed_option
@nproc_option
def train_cmd(name: str, data: str, preset: str | None, run_dir: str, resume: str | None, steps: int | None,
              dry_run: bool, device: str, config_file: str | None, sets: tuple[str, ...], seed: int) -> None:
    """Train generator NAME on dataset DATA; checkpoints, metrics and samples go to a run directory.

    The run directory (RUN_DIR/NNNNN-NAME-DATA) gets options.json before
    training starts. --resume RUN continues that run with its own options
    (only --steps and --device may change) and ends with the same weights as
    an uninterrupted run.
    """
    from galaug.config import config_to_dict, resolve_config
    from galaug.data import open_dataset
    from galaug.data.provenance import current_command
    from galaug.generators import _device, read_options
    from galaug.registry import component_version

    manager = click.get_current_context().find_root().obj
    cls = manager.get("generator", name)
    ds = open_dataset(data)
    if resume:
        options = read_options(resume)
        if options["generator"] != name:
            raise GalaugError(f"{resume}: is a {options['generator']!r} run, not {name!r}")
        if options.get("data_id") != ds.id:
            raise GalaugError(f"{resume}: was trained on {options.get('data')} (id {str(options.get('data_id'))[:8]}), "
                              f"not on {data} (id {ds.id[:8]})")
        if preset or config_file or sets:
            raise GalaugError("--resume continues a run with its own config; drop --preset/--config/--set")
        config = resolve_config(cls.Config, overrides=options["config"])
        steps = steps or options.get("steps")
        seed = options["seed"]
    else:
        overrides = {}
        if preset is not None:
            if preset not in cls.presets:
                raise GalaugError(f"unknown preset {preset!r} for {name} (presets: {', '.join(cls.presets) or 'none'})")
            overrides = cls.presets[preset]
        config = resolve_config(cls.Config, file=config_file, sets=sets, overrides=overrides)
        options = {"generator": name, "plugin_version": component_version(cls), "preset": preset,
                   "config": config_to_dict(config), "data": str(Path(data).resolve()), "data_id": ds.id,
                   "seed": seed, "steps": steps, "command": current_command()}
    if dry_run:
        click.echo(json.dumps({**options, "device": _device(device)}, indent=2))
        return
    generator = cls(config)
    if resume:
        run = Path(resume)
    else:
        run = on_main(_new_run, run_dir, name, data, options)
    echo(f"run directory: {run}")
    try:
        generator.train(ds.path, run, steps=steps, device=_device(device), seed=seed, resume=bool(resume))
    except GalaugError:
        if is_main() and not resume and not any(p.suffix == ".pt" for p in run.rglob("*")):
            shutil.rmtree(run, ignore_errors=True)  # nothing trained: leave no empty run behind
        raise
    echo(f"done: {run}")


def _new_run(root: str, name: str, data: str, options: dict) -> Path:
    """A new numbered run directory with its options.json (rank 0 of a multi-process job makes it)."""
    from galaug.generators import new_run_dir, write_options

    run = new_run_dir(root, generator=name, data=data)
    write_options(run, options)
    return run


@click.command("generate")
@click.argument("name")
@click.argument("run")
@click.argument("output")
@click.option("-n", "count", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--truncation", type=click.FloatRange(0, 1), default=None,
              help="Truncation psi: pull w towards its mean (1 or unset: none).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per batch; the output does not depend on it.")
@_device_option
@seed_option
@overwrite_option
@nproc_option
def generate_cmd(name: str, run: str, output: str, count: int, truncation: float | None, batch_size: int,
                 device: str, seed: int, overwrite: bool) -> None:
    """Write -n images generated by the run RUN of generator NAME to OUTPUT, with latents z and w.

    Sample r depends only on (--seed, r), so any slice can be regenerated
    alone. origin is "generated"; provenance records run, checkpoint step,
    seed and truncation.
    """
    from galaug.generators import _device, generate, read_options

    options = read_options(run)
    if options["generator"] != name:
        raise GalaugError(f"{run}: is a {options['generator']!r} run, not {name!r}")
    ds = generate(run, output, count, seed=seed, truncation=truncation, batch_size=batch_size,
                  device=_device(device), overwrite=overwrite,
                  manager=click.get_current_context().find_root().obj)
    c, h, w = ds.image_shape
    echo(f"wrote {ds.path}: {len(ds)} generated images, {c} x {h} x {w}, seed {seed}")
