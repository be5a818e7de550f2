"""The core commands: plugins, config, info, split, show, export, analyze."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from galaug import faults
from galaug.cli.options import codec_option, config_options, deprecated_alias, option_names, overwrite_option, seed_option
from galaug.errors import GalaugError

__all__ = ["CORE_COMMANDS"]


def _manager():
    return click.get_current_context().find_root().obj


@click.command("plugins")
@click.option("--check", is_flag=True, help="Import every lazily registered component to find broken ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_cmd(check: bool, as_json: bool) -> None:
    """List plugins and their components: kind, name, version, distribution, status.

    Components (sources, generators, degradations, tasks, analyses) come
    first, then the plugin modules that provide them (kind "plugin"). A plugin that failed to import or register is listed as broken with its
    reason; everything else keeps working. Lazily registered components are
    not imported unless --check is given. Degradations are named as
    pipeline specs write them (psf:gaussian).
    """
    from galaug.registry import spec_name

    manager = _manager()
    if check:
        for entry in manager.registry.entries():
            if not entry.loaded and not entry.error:
                try:
                    manager.registry.load(entry)
                except GalaugError:
                    pass
    rows = [
        {"kind": e.kind, "name": spec_name(e.name) if e.kind == "degradation" else e.name, "version": e.version,
         "distribution": e.distribution,
         "plugin": e.plugin, "status": e.status, "summary": e.summary}
        for e in manager.registry.entries()
    ]
    for p in manager.plugins.values():
        status = p.status if p.status == "ok" else f"{p.status}: {p.reason}"
        rows.append({"kind": "plugin", "name": p.name, "version": p.version, "distribution": p.distribution,
                     "plugin": p.name, "status": status, "summary": ""})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    cols = ["kind", "name", "version", "distribution", "status"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    click.echo("  ".join(c.upper().ljust(widths.get(c, 0)) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths.get(c, 0)) for c in cols).rstrip())


@click.command("config")
@click.argument("kind")
@click.argument("name")
@click.option("--preset", default=None,
              help="Start from this named set of values (generators; alae: tiny, small, paper).")
@config_options
def config_cmd(kind: str, name: str, preset: str | None, config_file: str | None, sets: tuple[str, ...]) -> None:
    """Print the resolved config of plugin NAME of KIND as TOML.

    With no options these are the defaults; --preset, then --config, then
    --set apply over them, as in `galaug train`. Save the output to a file,
    edit, and pass it back with --config. Unset keys are shown as comments.
    Unknown keys and wrong types are errors; values the plugin's own checks
    refuse (e.g. psf:gaussian needs one of sigma or fwhm) are printed with
    the check's message as a `# note:` comment. Degradations are named as in
    pipeline specs (psf:gaussian; psf-gaussian works too).
    """
    from galaug.config import InvalidConfig, config_to_toml, preset_values, resolve_config
    from galaug.kinds import KINDS

    if kind not in KINDS:
        raise GalaugError(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
    manager = _manager()
    if kind == "degradation":
        name = _degradation_name(manager, name)
    cls = manager.get(kind, name)
    base = preset_values(cls, preset, name=name)
    note = None
    try:
        config = resolve_config(cls.Config, base=base, file=config_file, sets=sets)
    except InvalidConfig as exc:
        config = resolve_config(cls.Config, base=base, file=config_file, sets=sets, check=False)
        note = str(exc).removeprefix("invalid config: ")
    click.echo(config_to_toml(config, unset=True), nl=False)
    if note:
        click.echo(f"# note: {note}")


def _degradation_name(manager, name: str) -> str:
    """The registered name of a degradation written as in a pipeline spec (``psf:gaussian``) or as registered."""
    from galaug.errors import PluginError
    from galaug.registry import spec_name

    registered = name.replace(":", "-")
    try:
        manager.registry.entry("degradation", registered)
    except PluginError:
        known = ", ".join(spec_name(n) for n in manager.registry.names("degradation")) or "none installed"
        raise GalaugError(f"unknown degradation {name!r} (available: {known})") from None
    return registered


def _format_scale(scale: dict | None) -> str:
    return "unknown" if not scale else f"{scale['value']:g} {scale['unit']} / pixel"


@click.command("info")
@click.argument("dataset", metavar="DATASET|RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_cmd(dataset: str, as_json: bool) -> None:
    """Describe DATASET: size, bands, pixel scale, counts by origin, provenance chain.

    Given a RUN directory (galaug train, galaug task train), describe the run
    instead: kind, plugin, data, steps done, last checkpoint, metrics tail.
    """
    from galaug.data import open_dataset
    from galaug.errors import DatasetError
    from galaug.runs import OPTIONS

    path = Path(dataset)
    if path.is_dir() and (path / OPTIONS).is_file() and not (path / "zarr.json").exists():
        _info_run(path, as_json)
        return
    try:
        ds = open_dataset(dataset)
    except DatasetError:
        if path.is_dir() and not (path / "zarr.json").exists():
            raise GalaugError(f"{dataset}: not a galaug dataset or run directory "
                              f"(no zarr.json, no {OPTIONS})") from None
        raise
    s = ds.summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    c, h, w = ds.image_shape
    counts = ", ".join(f"{k} {v}" for k, v in s["origin_counts"].items())
    mb = ds.chunk_rows * c * h * w * 4 / 2**20
    lines = [
        ("path", s["path"]),
        ("id", s["id"]),
        ("samples", f"{s['n']} ({counts})"),
        ("images", f"{c} x {h} x {w} float32, {ds.chunk_rows} per chunk ({mb:.1f} MB)"),
        ("bands", ", ".join(ds.bands)),
        ("pixel scale", _format_scale(s["pixel_scale"])),
        ("flux unit", ds.flux_unit or "unknown"),
        ("params", ", ".join(f"{n} [{u}]" if u else n for n, u in zip(ds.param_names, ds.param_units)) or "-"),
        ("latents", f"w {ds.latent_dim}" + (f", z {ds.z_dim}" if ds.z_dim else "") if ds.latent_dim else "-"),
    ]
    if ds.clean_shape:
        lines.append(("clean", "paired undegraded images, " + " x ".join(map(str, ds.clean_shape))))
    maps = [m for m, has in (("ivar (inverse variance)", ds.has_ivar), ("mask (bit flags)", ds.has_mask)) if has]
    lines.append(("maps", f"{' and '.join(maps)} of all {s['n']} images" if maps else "-"))
    o = s["objects"]
    lines.append(("identity", "-" if o is None else f"{o['coordinates']} of {s['n']} images with coordinates "
                              f"(RA/Dec), {o['ids']} with an object id, {o['wcs']} with a WCS, {o['sources']} "
                              "with a source file"))
    for k, v in lines:
        click.echo(f"{k:<12} {v}")
    click.echo("provenance")
    for i, e in enumerate(ds.provenance, 1):
        extra = []
        if e.get("plugin"):
            extra.append(f"{e['plugin']} {e.get('plugin_version') or ''}".strip())
        if e.get("role"):
            extra.append(e["role"])
        if e.get("seed") is not None:
            extra.append(f"seed={e['seed']}")
        if e.get("parents"):
            extra.append("from " + ",".join(p[:8] for p in e["parents"]))
        click.echo(f"  {i}. {e.get('step', '?'):<10} {str(e.get('output', ''))[:8]}  {e.get('time', '')}  {' '.join(extra)}")
        click.echo(f"     $ {e.get('command', '')}")
        if isinstance(e.get("quality"), dict):
            from galaug.quality import summary_line

            click.echo(f"     {summary_line(e['quality'])}")


def _info_run(path: Path, as_json: bool) -> None:
    """``galaug info RUN``: what :meth:`galaug.runs.Run.describe` says, as JSON or as text."""
    from galaug.runs import Run

    d = Run.open(path).describe()
    if as_json:
        click.echo(json.dumps(d, indent=2, default=_json_default))
        return
    plugin = " ".join(str(x) for x in (d["plugin"], d["plugin_version"]) if x)
    if d.get("preset"):
        plugin += f" (preset {d['preset']})"
    done = "nothing yet" if d["done"] is None else f"{d['counter']} {d['done']}"
    if d["done"] is not None and d.get("steps"):
        done += f" of {d['steps']}"
    lines = [
        ("path", d["path"]),
        ("kind", f"{d['kind']} run"),
        ("plugin", plugin),
        ("data", f"{d['data']} (id {str(d['data_id'])[:8]})" if d["data_id"] else str(d["data"] or "-")),
        ("seed", str(d["seed"])),
    ]
    if d["kind"] == "task":
        lines.append(("degrade", d["degrade"] or "none"))
    lines += [("done", done), ("checkpoint", d["checkpoint"] or "none")]
    if d["samples"]:
        lines.append(("samples", d["samples"][-1]))
    for k, v in lines:
        click.echo(f"{k:<12} {v}")
    click.echo("metrics" + ("" if d["metrics"] else "      none yet"))
    for record in d["metrics"]:
        first = [k for k in ("step", "epoch") if k in record]
        items = [(k, record[k]) for k in first] + [(k, v) for k, v in record.items() if k not in first]
        click.echo("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items))
    if d.get("command"):
        click.echo(f"command      $ {d['command']}")


@click.command("split")
@click.argument("dataset")
@click.option("--val", default="0.2", show_default=True,
              help="Validation share: a fraction (0.2), a percentage (20%) or a count (500).")
@click.option("--train-out", default=None, help="Train output [default: DATASET-train.zarr].")
@click.option("--val-out", default=None, help="Validation output [default: DATASET-val.zarr].")
@seed_option(help="Seed of the choice of validation rows (recorded in the provenance).")
@overwrite_option
@codec_option
def split_cmd(dataset: str, val: str, train_out: str | None, val_out: str | None, seed: int, overwrite: bool) -> None:
    """Split DATASET into disjoint train and validation datasets, chosen with --seed."""
    from galaug.data import split_dataset

    src = Path(dataset)
    stem = src.name[: -len(".zarr")] if src.name.endswith(".zarr") else src.name
    train_out = train_out or str(src.with_name(f"{stem}-train.zarr"))
    val_out = val_out or str(src.with_name(f"{stem}-val.zarr"))
    with option_names():  # the library's "val must be ..." as "--val must be ..."
        train, valid = split_dataset(dataset, train_out, val_out, val=val, seed=seed, overwrite=overwrite)
    click.echo(f"train: {train.path} ({len(train)} samples)")
    click.echo(f"val:   {valid.path} ({len(valid)} samples)")


@click.command("show")
@click.argument("dataset")
@click.argument("output", metavar="OUT", required=False)
@deprecated_alias("-o/--output", "the positional OUT (galaug show DATASET OUT)", dest="output", required=True)
@click.option("-n", "--count", type=click.IntRange(1, 400), default=16, show_default=True, help="Images in the grid.")
@click.option("--bands", default=None, help="Bands as R,G,B (e.g. i,r,g) or one band for grey [default: first three].")
@click.option("--origin", type=click.Choice(["all", "real", "generated"]), default="all", show_default=True,
              help="Show only samples of this origin.")
@click.option("--random", "random_", is_flag=True, help="Pick images at random (with --seed) instead of the first ones.")
@click.option("--q", type=click.FloatRange(min=0.1), default=8.0, show_default=True, help="Asinh softening: higher shows fainter structure.")
@seed_option(help="Seed of the --random choice.")
@overwrite_option
def show_cmd(dataset: str, output: str, count: int, bands: str | None, origin: str, random_: bool,
             q: float, seed: int, overwrite: bool) -> None:
    """Save a grid of DATASET's images to the image file OUT (PNG, PDF, JPG...) with an asinh stretch.

    Three bands make an RGB composite; one band is shown in grey. Each
    origin (real, generated) gets its own stretch, from robust percentiles
    of its own images, so that one set's outliers cannot blacken the other.
    """
    import numpy as np

    from galaug.data import open_dataset
    from galaug.data.writer import check_output
    from galaug.files import atomic_path
    from galaug.viz import figure_format, pick_rgb_bands, save_grid

    ds = open_dataset(dataset)
    out = check_output(output, overwrite=overwrite, what="file")
    try:
        figure_format(output)
    except ValueError as exc:
        raise GalaugError(str(exc)) from None
    try:
        channels = pick_rgb_bands(ds.bands, bands.split(",") if bands else None)
    except ValueError as exc:
        raise GalaugError(str(exc)) from None
    rows = _choose_rows(ds, count, origin, random_, seed)
    if rows.size == 0:
        raise GalaugError(f"{dataset}: no samples of origin {origin!r}")
    images = np.concatenate([ds.read(int(r), int(r) + 1, fields=["images"])["images"] for r in rows]) \
        if random_ else ds.read(int(rows[0]), int(rows[-1]) + 1, fields=["images"])["images"][rows - rows[0]]
    origins = _origins(ds, rows)
    labels = [f"#{r} {ds.origin_names[o]}" for r, o in zip(rows, origins)]
    shown = ",".join(ds.bands[c] for c in channels)
    per = ", stretch per origin" if len(np.unique(origins)) > 1 else ""
    title = (f"{Path(dataset).name}: {len(rows)} of {len(ds)} ({'RGB=' if len(channels) == 3 else 'band '}{shown}, "
             f"asinh Q={q:g}{per})")
    with atomic_path(out) as tmp:
        save_grid(images, tmp, channels=channels, labels=labels, title=title, q=q, groups=origins)
    click.echo(f"wrote {out}")


def _origins(ds, rows: np.ndarray) -> np.ndarray:
    origin = ds.read(int(rows.min()), int(rows.max()) + 1, fields=["origin"])["origin"]
    return origin[rows - rows.min()]


def _choose_rows(ds, count: int, origin: str, random_: bool, seed: int) -> np.ndarray:
    """Rows to show: the first ``count`` (or a seeded random choice) of the wanted origin."""
    import numpy as np

    if origin == "all":
        candidates = np.arange(len(ds))
    else:
        code = ds.origin_names.index(origin)
        candidates = np.concatenate([start + np.flatnonzero(b["origin"] == code)
                                     for start, b in ds.iter_blocks(rows=65536, fields=["origin"])] or [np.empty(0, int)])
    if random_ and candidates.size > count:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, size=count, replace=False))
    return candidates[:count].astype(np.int64)


@click.command("export")
@click.argument("dataset")
@click.argument("fits_dir", metavar="OUT_DIR", required=False)
@deprecated_alias("--fits", "the positional OUT_DIR (galaug export DATASET OUT_DIR)", dest="fits_dir", required=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Export only the first N images.")
@overwrite_option
def export_cmd(dataset: str, fits_dir: str, limit: int | None, overwrite: bool) -> None:
    """Export DATASET as FITS files into the new folder OUT_DIR, one file per image.

    Each file is a C x H x W cube, with the bands and the provenance in its header.
    """
    from galaug.data import export_fits

    n = export_fits(dataset, fits_dir, limit=limit, overwrite=overwrite)
    click.echo(f"wrote {n} FITS files to {fits_dir}")


@click.command("analyze")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, metavar="INPUT... OUT")
@deprecated_alias("-o/--output", "the last argument OUT (galaug analyze NAME INPUT... OUT)", dest="output")
@config_options
@seed_option(help="Seed of every random step of the analysis (recorded in report.json).")
@overwrite_option
def analyze_cmd(name: str, paths: tuple[str, ...], config_file: str | None, sets: tuple[str, ...], seed: int,
                overwrite: bool, output: str | None = None) -> None:
    """Run analysis NAME on the INPUTs (datasets or run folders); write OUT/report.json and figures.

    OUT, the last argument, is the folder to create.
    """
    from galaug.config import config_to_dict, resolve_config
    from galaug.data.provenance import make_entry
    from galaug.data.writer import check_output, commit_path, temporary_sibling

    if output is not None:  # the deprecated -o OUT: every argument is an input
        inputs = paths
    elif len(paths) >= 2:
        inputs, output = paths[:-1], paths[-1]
    else:
        raise click.UsageError("give the inputs, then the output folder: galaug analyze NAME INPUT... OUT")
    manager = _manager()
    entry = manager.registry.entry("analysis", name)
    cls = manager.registry.load(entry)
    config = resolve_config(cls.Config, file=config_file, sets=sets)
    out = check_output(output, overwrite=overwrite, what="folder")
    tmp = temporary_sibling(out)
    tmp.mkdir()
    try:
        results = cls(config).run([Path(p) for p in inputs], tmp, seed=seed)
        faults.point("analyze.results")
        report = make_entry("analyze", plugin=f"analysis:{name}", plugin_version=entry.version,
                            config=config_to_dict(config), seed=seed, inputs=list(inputs),
                            parents=_dataset_ids(inputs))
        report["results"] = results
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        commit_path(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    click.echo(f"wrote {out / 'report.json'}")


def _dataset_ids(paths) -> list[str]:
    """Ids of the inputs that are galaug datasets (others, such as run folders, are skipped)."""
    from galaug.data import open_dataset

    ids = []
    for p in paths:
        try:
            ids.append(open_dataset(p).id)
        except GalaugError:
            pass
    return ids


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


@click.command("report")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("output", metavar="OUT", required=False)
@deprecated_alias("-o/--output", "the positional OUT (galaug report MANIFEST OUT)", dest="output", required=True)
@overwrite_option
def report_cmd(manifest: str, output: str, overwrite: bool) -> None:
    """Build one self-contained HTML page OUT (figures embedded) from MANIFEST.

    MANIFEST is TOML: sections of figures, experiments and analyses.
    """
    from galaug.report import build_report

    click.echo(f"wrote {build_report(manifest, output, overwrite=overwrite)}")


CORE_COMMANDS = (plugins_cmd, config_cmd, info_cmd, split_cmd, show_cmd, export_cmd, analyze_cmd, report_cmd)
