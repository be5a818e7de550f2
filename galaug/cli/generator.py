"""``galaug train`` and ``galaug generate``: any generator plugin, same commands."""

from __future__ import annotations

import click

from galaug.cli.options import (codec_option, config_options, deprecated_alias, device_option, echo, nproc_option, option_names,
                                overwrite_option, run_options, seed_option, train_plan)

__all__ = ["train_cmd", "generate_cmd"]


@click.command("train")
@click.argument("name")
@click.argument("data")
@click.option("--preset", default=None, help="Named set of config values (alae: tiny, small, paper).")
@run_options
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (overrides the config).")
@device_option
@config_options
@seed_option(help="Seed of every random step of the training (recorded in options.json).")
@nproc_option
def train_cmd(name: str, data: str, preset: str | None, run_dir: str, resume: str | None, steps: int | None,
              dry_run: bool, device: str, config_file: str | None, sets: tuple[str, ...], seed: int) -> None:
    """Train generator NAME on dataset DATA; checkpoints, metrics and samples go to a run directory.

    The run directory (RUN_DIR/NNNNN-NAME-DATA) gets options.json before
    training starts. --resume RUN continues that run with its own options
    (only --steps and --device may change) and ends with the same weights as
    an uninterrupted run.
    """
    from galaug.runs import plan_training

    plan = plan_training("generator", name, data, manager=click.get_current_context().find_root().obj,
                         resume=resume, preset=preset, config_file=config_file, sets=sets, seed=seed, steps=steps)
    train_plan(plan, run_dir=run_dir, device=device, dry_run=dry_run)


def _edits(ctx, param, value: tuple[str, ...]) -> dict[str, float]:
    from galaug.editing import parse_edits
    from galaug.errors import GalaugError

    try:
        return parse_edits(value)
    except ValueError as exc:
        raise GalaugError(f"--edit: {exc}") from None


def _conditions(ctx, param, value: tuple[str, ...]) -> dict[str, float]:
    from galaug.conditions import parse_conditions
    from galaug.errors import GalaugError

    try:
        return parse_conditions(value)
    except ValueError as exc:
        raise GalaugError(f"--condition: {exc}") from None


@click.command("generate")
@click.argument("name")
@click.argument("run")
@click.argument("output")
@click.option("-n", "count", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--truncation", type=click.FloatRange(0, 1), default=None,
              help="Truncation psi: pull w towards its mean (1 or unset: none).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per batch; the output does not depend on it.")
@deprecated_alias("--batch", "--batch-size", dest="batch_size", type=click.IntRange(min=1))
@click.option("--edit", "edits", multiple=True, metavar="NAME=SIGMAS", callback=_edits,
              help="Move every w SIGMAS standard deviations of the projection along w*(NAME) "
                   "(e.g. r_half=+1.0; repeat for several; needs --directions).")
@click.option("--directions", type=click.Path(exists=True), default=None, metavar="LATENT_REPORT",
              help="The latent-structure output (folder or report.json) of this run that --edit moves along.")
@click.option("--allow-outliers", is_flag=True,
              help="Write the output even when it fails the quality gate (recorded in the provenance).")
@click.option("--condition", "conditions", multiple=True, metavar="NAME=VALUE[,...]", callback=_conditions,
              help="Conditional generators: sample every image at these params values (e.g. r_half=2.5,flux=900); "
                   "columns not given follow the training data.")
@click.option("--condition-from", "condition_from", type=click.Path(exists=True), default=None, metavar="TABLE",
              help="One condition row per sample: a CSV file with a header row, or a dataset's params "
                   "(exactly -n rows).")
@click.option("--extrapolate", is_flag=True, help="Allow condition values outside the training range.")
@click.option("--guidance", type=click.FloatRange(0, 20), default=None,
              help="Classifier-free guidance weight of a conditional generator (1: conditional velocity only).")
@click.option("--steps", "sample_steps", type=click.IntRange(1, 1000), default=None,
              help="ODE steps of a diffusion-type sampler (the run's sample_steps by default).")
@device_option
@seed_option(help="Seed of the samples: sample r depends only on (seed, r) (recorded in the provenance).")
@overwrite_option
@codec_option
@nproc_option
def generate_cmd(name: str, run: str, output: str, count: int, truncation: float | None, batch_size: int,
                 edits: dict[str, float], directions: str | None, allow_outliers: bool, conditions: dict[str, float],
                 condition_from: str | None, extrapolate: bool, guidance: float | None, sample_steps: int | None,
                 device: str, seed: int, overwrite: bool) -> None:
    """Write -n images generated by the run RUN of generator NAME to OUTPUT, with latents z and w.

    Sample r depends only on (--seed, r), so any slice can be regenerated
    alone. origin is "generated"; provenance records run, checkpoint step,
    seed and truncation. --edit moves each sample's w along the directions
    of --directions (same z, same noise), recorded in the provenance too.
    The quality gate compares the output with the statistics of the run's
    training data: output far outside them is refused (exit status 2,
    nothing written) unless --allow-outliers; the verdict goes into the
    provenance. A conditional generator samples at --condition values (or
    one --condition-from row per sample), written to the output's params.
    """
    from galaug.devices import device_name
    from galaug.errors import GalaugError
    from galaug.generators import generate
    from galaug.quality import summary_line
    from galaug.runs import Run

    if bool(edits) != bool(directions):
        raise GalaugError("--edit and --directions go together: --edit NAME=SIGMAS --directions LATENT_REPORT")
    Run.open(run, kind="generator", name=name)
    condition = dict(conditions)
    if condition_from:
        from galaug.conditions import read_condition_table
        from galaug.generators import load_generator

        names = getattr(load_generator(run, device="cpu"), "condition_names", ())
        table = read_condition_table(condition_from, count, names=names or None)
        twice = sorted(set(table) & set(condition))
        if twice:
            raise GalaugError(f"{', '.join(twice)}: given by both --condition and --condition-from")
        condition.update(table)
    with option_names():  # the gate's "allow_outliers overrides" as "--allow-outliers overrides"
        ds = generate(run, output, count, seed=seed, truncation=truncation, batch_size=batch_size,
                      device=device_name(device), overwrite=overwrite,
                      manager=click.get_current_context().find_root().obj, edit=edits or None, directions=directions,
                      allow_outliers=allow_outliers, condition=condition or None, guidance=guidance,
                      steps=sample_steps, extrapolate=extrapolate)
    c, h, w = ds.image_shape
    echo(f"wrote {ds.path}: {len(ds)} generated images, {c} x {h} x {w}, seed {seed}")
    echo(summary_line(ds.provenance[-1].get("quality")))
