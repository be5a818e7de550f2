"""The real-set-size sweep: the task's metric against the number of real images, with and without generated data.

``galaug experiment sizes CONFIG.toml [OUT]`` reads the same experiment file
as ``galaug experiment ratios`` and replaces its arms by, for every size n
of ``sizes`` (default ``[50, 100, 200, 400, 800, "all"]``, sizes above the
real set dropped)::

    n real                  n real images; with one seed, the images of a
                            smaller n are part of those of a larger one
    n real + 5x gen         the same n real images and 5n generated ones
                            (size_gen = "5x"), once per generator and,
                            with oracle = true, with the oracle

Every arm trains for the same number of gradient steps
(:func:`galaug.experiment.equal_steps`), so a curve shows what data buys,
not what more steps buy. The sweep runs as an experiment of its own in
``OUT`` (default: the file's ``out``/sizes), resumes like one, and adds
``curve.png`` (metric against n, error bars over seeds, a panel per test
set, a star where the oracle's gain exceeds the seed spread), ``curve.md``
and ``curve.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from galaug.errors import ConfigError

__all__ = ["DEFAULT_SIZES", "check_sizes", "size_arms", "run_sizes", "curve"]

DEFAULT_SIZES: tuple[int | str, ...] = (50, 100, 200, 400, 800, "all")


def check_sizes(where: str, sizes: Any, size_gen: str) -> tuple[int | str, ...]:
    """The ``sizes`` of an experiment file: positive counts or ``"all"``, each once; ``size_gen`` a multiple."""
    from galaug.errors import ParamError
    from galaug.mix import parse_gen_share

    if sizes is None:
        sizes = DEFAULT_SIZES
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ConfigError(f"{where}: sizes must be a list of real-set sizes, e.g. [50, 100, 200, \"all\"]")
    out: list[int | str] = []
    for s in sizes:
        if isinstance(s, str) and s.strip().lower() == "all":
            s = "all"
        elif isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ConfigError(f"{where}: sizes: {s!r} is not a number of real images (a count >= 1, or \"all\")")
        if s in out:
            raise ConfigError(f"{where}: sizes: {s!r} is listed twice")
        out.append(s)
    try:
        share = parse_gen_share(size_gen)
    except ParamError as exc:
        raise ConfigError(f"{where}: size_gen: " + exc.spelled(lambda name: name)) from None
    if share.kind != "multiple":
        raise ConfigError(f"{where}: size_gen must be a multiple of each size, such as \"5x\", got {size_gen!r}")
    return tuple(out)


def size_arms(sizes: tuple[int | str, ...], n_real: int, size_gen: str, *, generated: bool,
              where: str = "the experiment file") -> tuple[tuple, dict[str, int]]:
    """The sweep's arms for a real set of ``n_real`` images, and each arm's number of real images.

    Sizes above ``n_real`` are dropped, and ``"all"`` is ``n_real``; a size
    left twice counts once. ``generated``: add the arms with generated images.
    """
    from galaug.experiment import Arm
    from galaug.mix import parse_gen_share

    multiple = parse_gen_share(size_gen).value
    ns = sorted({n_real if s == "all" else int(s) for s in sizes if s == "all" or int(s) <= n_real})
    if not ns:
        raise ConfigError(f"{where}: every size is above the real set's {n_real} images")
    arms, size_of = [], {}
    for n in ns:
        real = "1.0" if n == n_real else f"n={n}"
        arms.append(Arm(f"{n} real", real=real, nested=True))
        size_of[f"{n} real"] = n
        if generated:
            name = f"{n} real + {size_gen.strip()} gen"
            arms.append(Arm(name, real=real, gen=f"n={round(multiple * n)}", nested=True))
            size_of[name] = n
    return tuple(arms), size_of


def run_sizes(config, task_config: dict[str, Any], *, sizes: tuple[int | str, ...], size_gen: str = "5x",
              manager=None, echo=print, overwrite: bool = False, inputs=()) -> Path:
    """Run the sweep (every (arm, seed) not finished yet) into ``config.out``, then write its curve."""
    from galaug.data import open_dataset
    from galaug.experiment import _sources, run_experiment

    n_real = len(open_dataset(config.real))
    generated = bool(_sources(config)) or config.oracle
    arms, size_of = size_arms(sizes, n_real, size_gen, generated=generated)
    echo(f"size sweep: {', '.join(str(n) for n in dict.fromkeys(size_of.values()))} real images"
         + (f", each alone and with {size_gen} generated" if generated else ""))
    out = run_experiment(config, arms, task_config, manager=manager, echo=echo, overwrite=overwrite, inputs=inputs)
    curve(out, size_of)
    return out


def curve(out: Path, size_of: dict[str, int]) -> dict[str, Any]:
    """``curve.json``, ``curve.md`` and ``curve.png`` of a finished sweep in ``out`` (from its results.json)."""
    from galaug.experiment_summary import better, clearly_different, gain, table_format

    results = json.loads((out / "results.json").read_text())
    metric, test_sets = results["metric"], results["test_sets"]
    is_better = better(metric)
    lines: dict[str, dict[str, list[dict[str, Any]]]] = {}  # test set -> group -> points by n
    for c in results["cells"]:
        if c.get("baseline") or c["arm_name"] not in size_of:
            continue
        group = c.get("generator") or "real only"
        lines.setdefault(c["test_set"], {}).setdefault(group, []).append(
            {"n": size_of[c["arm_name"]], "mean": c["mean"], "std": c["std"], "seeds": c["n"]})
    gains: dict[str, list[dict[str, Any]]] = {}
    for ts, groups in lines.items():
        for points in groups.values():
            points.sort(key=lambda p: p["n"])
        real = {p["n"]: p for p in groups.get("real only", [])}
        for p in groups.get("oracle", []):
            if p["n"] in real:
                r = real[p["n"]]
                verdict = clearly_different({**r, "n": r["seeds"]}, {**p, "n": p["seeds"]})
                share = gain(metric, r["mean"], p["mean"]) / abs(r["mean"]) if r["mean"] else None
                gains.setdefault(ts, []).append({"n": p["n"], "gain": share,
                                                 "exceeds_spread": bool(verdict) and is_better(p["mean"], r["mean"])})
    baselines = {ts: min(((name, cells[ts]["mean"]) for name, cells in results.get("baselines", {}).items()
                          if ts in cells), key=lambda x: -gain(metric, 0.0, x[1]), default=None)
                 for ts in test_sets}
    record = {"metric": metric, "test_sets": test_sets, "lines": lines, "oracle_gain": gains,
              "best_baseline": {ts: b for ts, b in baselines.items() if b}}
    (out / "curve.json").write_text(json.dumps(record, indent=2) + "\n")
    # curve.md: a table per test set (rows: sizes; columns: real only, each generator, the oracle's gain)
    fmt = table_format([p["mean"] for g in lines.values() for ps in g.values() for p in ps],
                       [p["std"] for g in lines.values() for ps in g.values() for p in ps])
    text = [_gain_sentence(gains, test_sets), ""] if gains else []
    text.append(f"{metric}, mean ± std over seeds, against the number of real images"
                + (f"; {results['steps']}" if results.get("steps") else ""))
    for ts in test_sets:
        groups = lines.get(ts, {})
        ns = sorted({p["n"] for ps in groups.values() for p in ps})
        names = list(groups)
        by = {g: {p["n"]: p for p in ps} for g, ps in groups.items()}
        oracle = {g["n"]: g for g in gains.get(ts, [])}
        text += ["", f"**{ts}**", "", "| real images | " + " | ".join(names)
                 + (" | oracle gain |" if oracle else " |"), "|---" * (len(names) + 1 + bool(oracle)) + "|"]
        for n in ns:
            cells = [f"{fmt(by[g][n]['mean'])} ± {fmt(by[g][n]['std'])}" if n in by[g] else "-" for g in names]
            if oracle:
                o = oracle.get(n)
                cells.append("-" if o is None or o["gain"] is None else
                             f"{100 * o['gain']:+.1f}%" + (" (beyond the seed spread)" if o["exceeds_spread"] else ""))
            text.append(f"| {n} | " + " | ".join(cells) + " |")
    (out / "curve.md").write_text("\n".join(text) + "\n")
    _plot_curve(out / "curve.png", lines, gains, test_sets, metric, record["best_baseline"])
    return record


def _gain_sentence(gains: dict[str, list[dict[str, Any]]], test_sets: list[str]) -> str:
    """Where perfect generated data (the oracle) helps by more than the seed spread, per test set."""
    parts = []
    for ts in test_sets:
        where = [str(g["n"]) for g in gains.get(ts, []) if g["exceeds_spread"]]
        parts.append(f"{ts}: at {', '.join(where)} real images" if where else f"{ts}: at no size")
    return ("Where the oracle's generated images help by more than the seed spread (its mean better than real "
            "only by more than the sum of the two standard deviations) — " + "; ".join(parts) + ".")


def _plot_curve(path: Path, lines, gains, test_sets, metric: str, baselines: dict[str, tuple[str, float]]) -> None:
    """A panel per test set: the metric against the number of real images, a line per group, error bars over
    seeds, stars where the oracle's gain exceeds the seed spread; the best baseline dashed where it falls near
    the curves, else named in the panel (a line far off would flatten them). One legend under the panels."""
    from matplotlib.ticker import NullFormatter

    from galaug.experiment import _flux_unit
    from galaug.viz import axis_label, metric_unit, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(test_sets), figsize=(3.4 * len(test_sets), 3.4), squeeze=False)
    groups = list(dict.fromkeys(g for ts in test_sets for g in lines.get(ts, {})))
    colours = {g: ("0.2" if g == "real only" else "C1" if g == "oracle" else f"C{2 + i}") for i, g in enumerate(groups)}
    flux_unit = _flux_unit(path.parent)
    handles: dict[str, Any] = {}
    for ax, ts in zip(axes[0], test_sets):
        points = [p for ps in lines.get(ts, {}).values() for p in ps]
        for g, mine in lines.get(ts, {}).items():  # each group a little aside, so the error bars stay apart
            dodge = 1 + 0.04 * (groups.index(g) - (len(groups) - 1) / 2)
            handles[g] = ax.errorbar([p["n"] * dodge for p in mine], [p["mean"] for p in mine],
                                     yerr=[p["std"] for p in mine], marker="o", ms=3, capsize=2, color=colours[g])
        starred = [g["n"] for g in gains.get(ts, []) if g["exceeds_spread"]]
        oracle = {p["n"]: p["mean"] for p in lines.get(ts, {}).get("oracle", [])}
        if starred:
            dodge = 1 + 0.04 * (groups.index("oracle") - (len(groups) - 1) / 2)
            handles["oracle gain > seed spread"] = ax.plot([n * dodge for n in starred], [oracle[n] for n in starred],
                                                           "*", ms=11,
                                                           color="C1", mfc="none")[0]
        if ts in baselines and points:
            name, value = baselines[ts]
            low = min(p["mean"] - p["std"] for p in points)
            high = max(p["mean"] + p["std"] for p in points)
            if low - (high - low) <= value <= high + (high - low):
                handles["best classical baseline"] = ax.axhline(value, ls="--", lw=1, color="0.5")
            else:
                shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
                ax.text(0.02, 0.98, f"best baseline ({name}): {shown}, off the axis", transform=ax.transAxes,
                        fontsize=6, va="top", color="0.35")
        ns = sorted({p["n"] for p in points})
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("real training images", fontsize=8)
        ax.set_ylabel(axis_label(metric, metric_unit(metric, flux_unit)), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(ts, fontsize=9)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_config(config, out: str | None):
    """The experiment config of the sweep: the file's, writing into ``out`` (default: the file's ``out``/sizes)."""
    return dataclasses.replace(config, out=out or str(Path(config.out) / "sizes"))
