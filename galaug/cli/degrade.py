"""``galaug degrade``: apply a degradation pipeline to a dataset (added by the built-in plugin)."""

from __future__ import annotations

import click

from galaug.cli.options import codec_option, deprecated_alias, device_option, echo, nproc_option, overwrite_option, seed_option

__all__ = ["degrade_cmd"]


@click.command("degrade")
@click.argument("input")
@click.argument("output")
@click.option("--degrade", "spec", default=None, metavar="SPEC",
              help='Degradations in order, e.g. "psf:gaussian(fwhm=0.8arcsec)|noise:ccd(gain=2, sky_level=100)" '
                   "(required). Lengths in pixels, or with an angle unit (arcsec) converted with INPUT's pixel "
                   "scale; noise levels in INPUT's flux unit, noise:ccd's gain (required) in electrons per that "
                   "unit.")
@deprecated_alias("--pipeline", "--degrade", dest="spec", required=True, metavar="SPEC")
@seed_option(help="Seed of every random draw (recorded in the provenance).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images degraded at once (the output does not depend on it).")
@device_option(help="Where to compute; auto picks cuda when available (CPU and CUDA draw different noise).")
@click.option("--copy-clean", is_flag=True,
              help="Store a copy of the clean images, so that OUTPUT travels without INPUT "
                   "(by default OUTPUT refers to INPUT's images, checked when opened).")
@overwrite_option
@codec_option
@nproc_option
def degrade_cmd(input: str, output: str, spec: str, seed: int, batch_size: int, device: str,
                copy_clean: bool, overwrite: bool) -> None:
    """Degrade the images of INPUT with the --degrade pipeline of PSFs, noise and resampling; write OUTPUT.

    OUTPUT holds the degraded images, the undegraded ones as its paired
    clean member (a reference to INPUT's images unless --copy-clean), and
    the pipeline and seed in its provenance. Sample r is
    degraded with a seed derived from (--seed, r). See docs/degradations.md
    for the degradations and the spec grammar.
    """
    from galaug.degrade import degrade_dataset

    registry = click.get_current_context().find_root().obj.registry
    ds = degrade_dataset(input, output, spec, seed=seed, batch_size=batch_size, device=device,
                         overwrite=overwrite, copy_clean=copy_clean, registry=registry)
    echo(f"wrote {ds.path} ({len(ds)} samples): {ds.provenance[-1]['config']['pipeline']}")
