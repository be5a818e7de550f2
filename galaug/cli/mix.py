"""``galaug mix``: real and generated images into one dataset at chosen ratios."""

from __future__ import annotations

import click

from galaug.cli.options import codec_option, device_option, option_names, overwrite_option, seed_option

__all__ = ["mix_cmd"]


@click.command("mix")
@click.argument("output")
@click.option("--real-data", required=True, help="The real (training) dataset.")
@click.option("--real", default=None,
              help="Real share: a fraction (0.1; all: 1.0), a percentage (10%) or a count (500, '1 image') "
                   "[default: all]. A bare 1 is refused.")
@click.option("--gen-data", default=None, help="A generated dataset (galaug generate).")
@click.option("--generator", default=None, metavar="RUN", help="Generate the images needed with this run instead.")
@click.option("--gen", default=None,
              help="Generated share: a multiple of the full real set (5x), a fraction or percentage of --gen-data, or a count.")
@click.option("--alpha", type=float, default=None,
              help="Instead of --real/--gen: each sample is generated with probability ALPHA (needs --size).")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Total samples with --alpha.")
@click.option("--replace", is_flag=True, help="Allow a source image to appear more than once.")
@click.option("--truncation", type=click.FloatRange(0, 1), default=None, help="Truncation psi with --generator.")
@click.option("--allow-outliers", is_flag=True,
              help="Mix a generated set that failed the quality gate, or --generator images that fail it "
                   "(recorded in the provenance).")
@click.option("--assume-same-scale", is_flag=True,
              help="Mix sets when one has a pixel scale and the other none (recorded in the provenance).")
@device_option(help="Where --generator runs; auto picks cuda when available.")
@seed_option(help="Seed of the choice of samples and their order (recorded in the provenance).")
@overwrite_option
@codec_option
def mix_cmd(output: str, real_data: str, real: str | None, gen_data: str | None, generator: str | None,
            gen: str | None, alpha: float | None, size: int | None, replace: bool, truncation: float | None,
            allow_outliers: bool, assume_same_scale: bool, device: str, seed: int, overwrite: bool) -> None:
    """Mix real and generated images into OUTPUT, e.g. --real 0.1 --gen 5x.

    Prints the resolved counts, then streams the sources block by block
    (memory does not grow with N), interleaving them in a random order
    chosen with --seed. origin and index record where every sample came
    from; the provenance keeps both parents. A generated set that failed
    the quality gate of `galaug generate` is refused, and so are images
    generated on the fly (--generator) that fail it, unless --allow-outliers.
    """
    from galaug.devices import device_name as _device
    from galaug.mix import mix_datasets
    from galaug.quality import summary_line

    with option_names():  # the library's "gen must be ..." as "--gen must be ..."
        ds = mix_datasets(output, real_data=real_data, real=real, gen_data=gen_data, gen=gen, generator=generator,
                          alpha=alpha, size=size, seed=seed, replace=replace, truncation=truncation,
                          overwrite=overwrite, device=_device(device), echo=click.echo, allow_outliers=allow_outliers,
                          assume_same_scale=assume_same_scale)
    counts = ds.origin_counts()
    click.echo(f"wrote {ds.path}: {len(ds)} samples ({counts['real']} real, {counts['generated']} generated)")
    if "quality" in ds.provenance[-1]:
        click.echo(summary_line(ds.provenance[-1]["quality"]))
