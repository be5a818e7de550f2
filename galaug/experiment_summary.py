"""What an experiment's results table says: usefulness of each generator, one number format, a summary in words.

Pure functions of the results table that :func:`galaug.experiment.summarise`
writes into ``results.json`` (``cells``): one cell per table row and test
set, a dict with

- ``arm``: the row's label (``"5x gen + 10% real [alae]"``, ``"baseline: tv"``);
- ``arm_name``: the arm it comes from; ``generator``: the generator's name
  (``"oracle"`` for fresh simulator draws) or None for an arm without
  generated images and for a baseline; ``baseline``: the baseline's name or None;
- ``test_set``; ``mean``, ``std`` (over seeds, ``ddof=1``; 0 for one seed),
  ``n``, ``values`` (one per seed, or per run for a baseline);
- ``n_real``, ``n_generated``: mean counts of the mixes; ``alpha``: whether
  the arm draws its shares at random.

A difference between two cells is *larger than the seed spread* when their
means differ by more than the sum of their two standard deviations over
seeds (:func:`clearly_different`); with one seed there is no spread, so it
is never said to be.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SPREAD_RULE", "clearly_different", "higher_is_better", "better", "gain", "table_format", "usefulness",
           "usefulness_table", "summary_text", "summary_and_table"]

#: The definition of "larger than the seed spread", as the summary states it.
SPREAD_RULE = ("a difference is larger than the seed spread when the two means differ by more than the sum of "
               "their standard deviations over seeds")

Cell = dict[str, Any]


def higher_is_better(metric: str) -> bool:
    """Whether ``metric`` is better higher (PSNR, SSIM, accuracy...), by the report's rule; else lower is better."""
    from galaug.report import worse_than_input

    return worse_than_input(metric, 0.0, 1.0)  # 0 worse than 1: higher is better


def clearly_different(a: Cell, b: Cell) -> bool | None:
    """Whether the means of ``a`` and ``b`` differ by more than ``std_a + std_b``; None with fewer than two seeds."""
    if a["n"] < 2 or b["n"] < 2:
        return None
    return abs(a["mean"] - b["mean"]) > a["std"] + b["std"]


def table_format(means: Iterable[float], stds: Iterable[float] = ()) -> Callable[[float], str]:
    """One number format for every number of a table, chosen from the range of its values.

    Fixed point with the same decimals everywhere: two significant digits
    of the smallest spread (``5807 ± 550`` beside ``16180 ± 360``), or,
    without spreads (or with only spreads below a millionth of the largest
    value: rounding), four significant digits of the largest value, fewer
    where they write every value exactly (``12`` beside ``40``).
    Values too large or too small for that (beyond 1e9, or more than six
    decimals) are all written in scientific notation with the same number
    of digits (``1.234e-08``).
    """
    means = [abs(v) for v in means if math.isfinite(v)]
    largest = max(means, default=0.0)
    # a spread below a millionth of the largest value is rounding (equal values), not a spread to show
    spreads = [v for v in stds if math.isfinite(v) and v > 1e-6 * largest]
    if spreads:
        decimals = 1 - math.floor(math.log10(min(spreads)))
    elif largest > 0:  # the fewest decimals, up to four significant digits of the largest, that write all exactly
        cap = 3 - math.floor(math.log10(largest))
        decimals = next((d for d in range(max(cap, 0) + 1)
                         if all(abs(round(v, d) - v) <= 1e-9 * largest for v in means)), cap)
    else:
        decimals = 0
    if largest < 1e9 and decimals <= 6:
        places = max(decimals, 0)
        return lambda v: f"{v:.{places}f}" if math.isfinite(v) else str(v)
    top = math.floor(math.log10(largest)) if largest > 0 else 0
    digits = min(max(top + decimals, 1), 6)  # mantissa digits that reach the same place as the decimals would
    return lambda v: f"{v:.{digits}e}" if math.isfinite(v) else str(v)


def better(metric: str) -> Callable[[float, float], bool]:
    """``better(metric)(a, b)``: whether value ``a`` of ``metric`` is better than ``b``."""
    up = higher_is_better(metric)
    return (lambda a, b: a > b) if up else (lambda a, b: a < b)


def gain(metric: str, before: float, after: float) -> float:
    """How much ``after`` improves on ``before`` (positive: better), whichever way ``metric`` is better."""
    return after - before if higher_is_better(metric) else before - after


def usefulness(cells: Sequence[Cell], *, metric: str) -> list[dict[str, Any]]:
    """The usefulness of every generated arm of every generator but the oracle, per test set.

    For arm (real share r, generated share g, generator X): ``(M(r) - M(r, g, X)) / (M(r) - M(r, g, oracle))``
    with ``M`` the mean over seeds of ``metric`` (signs turned for a metric
    that is better higher), ``M(r)`` the arm with the same real images and
    no generated ones. 1: as good as perfect data, 0: useless, below 0:
    harmful. ``spread`` is the standard deviation of the per-seed values
    (seeds are paired: a seed takes the same real images in every arm);
    where a seed is missing from one of the three arms, or the oracle does
    not gain at some seed, the three arms' standard deviations propagated to
    first order. ``value`` is None, with ``why``, where a pairing is missing,
    the oracle's gain is within the seed spread, or the oracle does not gain.
    """
    out = []
    for x in cells:
        if x.get("baseline") or x.get("generator") in (None, "oracle"):
            continue
        row = {"arm": x["arm"], "arm_name": x["arm_name"], "generator": x["generator"], "test_set": x["test_set"],
               "value": None, "spread": None, "why": None}
        out.append(row)
        none = None if x.get("alpha") else next(
            (c for c in cells if c["test_set"] == x["test_set"] and c.get("generator") is None
             and not c.get("baseline") and not c.get("alpha") and c["n_generated"] == 0
             and c["n_real"] == x["n_real"]), None)
        oracle = next((c for c in cells if c["test_set"] == x["test_set"] and c.get("generator") == "oracle"
                       and c["arm_name"] == x["arm_name"]), None)
        if none is None:
            row["why"] = "no arm with the same real images and none generated"
            continue
        if oracle is None:
            row["why"] = "no oracle arm"
            continue
        denominator = gain(metric, none["mean"], oracle["mean"])
        if clearly_different(none, oracle) is False:
            row["why"] = "oracle gain within seed spread"
            continue
        if not denominator > 0:
            row["why"] = "the oracle does not gain"
            continue
        value = gain(metric, none["mean"], x["mean"]) / denominator
        row["value"] = value
        row["spread"] = _paired_spread(metric, none, x, oracle)
        if row["spread"] is None and min(none["n"], oracle["n"], x["n"]) >= 2:
            row["spread"] = math.sqrt(x["std"] ** 2 + (1 - value) ** 2 * none["std"] ** 2
                                      + value ** 2 * oracle["std"] ** 2) / denominator
    return out


def _paired_spread(metric: str, none: Cell, x: Cell, oracle: Cell) -> float | None:
    """The standard deviation of the per-seed usefulness, where the three cells share two seeds or more and the
    oracle gains at every one of them; else None."""
    seeds = [list(c.get("seeds") or []) for c in (none, x, oracle)]
    common = [s for s in seeds[0] if s in seeds[1] and s in seeds[2]]
    if len(common) < 2:
        return None
    at = [{s: v for s, v in zip(ss, c["values"])} for ss, c in zip(seeds, (none, x, oracle))]
    per_seed = []
    for s in common:
        oracle_gain = gain(metric, at[0][s], at[2][s])
        if not oracle_gain > 0:
            return None
        per_seed.append(gain(metric, at[0][s], at[1][s]) / oracle_gain)
    mean = sum(per_seed) / len(per_seed)
    return math.sqrt(sum((u - mean) ** 2 for u in per_seed) / (len(per_seed) - 1))


def _usefulness_text(row: dict[str, Any], fmt: Callable[[float], str]) -> str:
    if row["value"] is None:
        return f"n/a ({row['why']})"
    if row["spread"] is None:
        return f"{fmt(row['value'])} (one seed)"
    return f"{fmt(row['value'])} ± {fmt(row['spread'])}"


def usefulness_table(rows: Sequence[dict[str, Any]], test_sets: Sequence[str]) -> str:
    """A markdown table of :func:`usefulness`: a row per generated arm, a column per test set, one number format."""
    if not rows:
        return ""
    fmt = table_format([r["value"] for r in rows if r["value"] is not None],
                       [r["spread"] for r in rows if r["spread"] is not None])
    lines = ["| arm | generator | " + " | ".join(test_sets) + " |", "|---|---" + "|---" * len(test_sets) + "|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = {r["test_set"]: r for r in rows if r["arm"] == arm}
        first = next(iter(mine.values()))
        lines.append(f"| {arm} | {first['generator']} | "
                     + " | ".join(_usefulness_text(mine[ts], fmt) if ts in mine else "-" for ts in test_sets) + " |")
    return "\n".join(lines)


def _best(cells: Sequence[Cell], better: Callable[[float, float], bool]) -> Cell:
    top = cells[0]
    for c in cells[1:]:
        if better(c["mean"], top["mean"]):
            top = c
    return top


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _spread_words(verdict: bool | None) -> str:
    return {True: "by more than the seed spread", False: "within the seed spread", None: "(one seed: no spread)"}[
        verdict]


def summary_text(cells: Sequence[Cell], *, metric: str, oracle: str | None = None,
                 usefulness_rows: Sequence[dict[str, Any]] | None = None) -> str:
    """A few markdown paragraphs that state what the results table shows.

    Which arm is best on each test set and whether its lead over the next
    arm is larger than the seed spread; whether the best trained model
    beats the best classical baseline; each generator's usefulness on the
    first test set (from ``usefulness_rows``, :func:`usefulness`), or
    ``oracle``, a sentence saying why there is none. Every sentence is
    said once, with the test sets it holds for.
    """
    is_better = better(metric)
    direction = "higher" if higher_is_better(metric) else "lower"
    test_sets = list(dict.fromkeys(c["test_set"] for c in cells))
    arms = [c for c in cells if not c.get("baseline") and math.isfinite(c["mean"])]
    paragraphs = []

    best: dict[str, Cell] = {}
    groups: dict[tuple[str, str | None, bool | None], list[str]] = {}
    for ts in test_sets:
        ranked = [c for c in arms if c["test_set"] == ts]
        if not ranked:
            continue
        top = _best(ranked, is_better)  # of equal means, the first in the table
        best[ts] = top
        rest = [c for c in ranked if c is not top]
        runner = _best(rest, is_better) if rest else None
        key = (top["arm"], None if runner is None else runner["arm"],
               None if runner is None else clearly_different(top, runner))
        groups.setdefault(key, []).append(ts)
    if best:
        clauses = []
        for (arm, runner, verdict), sets in groups.items():
            lead = "" if runner is None else f", ahead of {runner} {_spread_words(verdict)}"
            clauses.append(f"{arm} on {_join(sets)}{lead}")
        paragraphs.append(f"Best arm by {metric} ({direction} is better): " + "; ".join(clauses)
                          + f". Here {SPREAD_RULE}.")

    baselines = [c for c in cells if c.get("baseline") and math.isfinite(c["mean"])]
    if baselines and best:
        outcomes: dict[str, list[str]] = {}
        names: dict[str, list[str]] = {}
        for ts, top in best.items():
            mine = [c for c in baselines if c["test_set"] == ts]
            if not mine:
                continue
            rival = _best(mine, is_better)
            names.setdefault(rival["baseline"], []).append(ts)
            verdict = clearly_different(top, rival)
            outcome = ("better" if is_better(top["mean"], rival["mean"])
                       else "worse" if is_better(rival["mean"], top["mean"]) else "no better")
            outcome += "" if verdict is None else f" {_spread_words(verdict)}"
            outcomes.setdefault(outcome, []).append(ts)
        if outcomes:
            which = (next(iter(names)) if len(names) == 1
                     else "; ".join(f"{name} on {_join(sets)}" for name, sets in names.items()))
            one_seed = " (one seed: no spread)" if all(" seed spread" not in o for o in outcomes) else ""
            paragraphs.append(f"Against the best classical baseline ({which}), the best arm is "
                              + "; ".join(f"{o} on {_join(sets)}" for o, sets in outcomes.items()) + f"{one_seed}.")

    if usefulness_rows:
        first = next(ts for ts in [*test_sets, usefulness_rows[0]["test_set"]]
                     if any(r["test_set"] == ts for r in usefulness_rows))
        rows = [r for r in usefulness_rows if r["test_set"] == first]
        values = [r for r in rows if r["value"] is not None]
        ufmt = table_format([r["value"] for r in values], [r["spread"] for r in values if r["spread"] is not None])
        per_generator = []
        for name in dict.fromkeys(r["generator"] for r in rows):
            mine = [f"{_usefulness_text(r, ufmt)} with {r['arm_name']}" for r in rows
                    if r["generator"] == name and r["value"] is not None]
            per_generator.append(f"{name} {_join(mine)}" if mine else f"{name} n/a")
        missing: dict[str, list[str]] = {}
        for r in rows:
            if r["value"] is None:
                missing.setdefault(r["why"], []).append(r["arm_name"])
        text = (f"Usefulness on {first} (the gain over the same real images alone, as a fraction of the oracle's "
                "gain: 1 as good as perfect data, 0 useless, below 0 harmful; ± over seeds): "
                + "; ".join(per_generator) + ".")
        if missing:
            text += " None for " + "; ".join(f"{_join(list(dict.fromkeys(a)))} ({why})"
                                             for why, a in missing.items()) + "."
        paragraphs.append(text)
    elif oracle:
        paragraphs.append(oracle)
    return "\n\n".join(paragraphs)


def summary_and_table(folder: Path, results_md: str) -> tuple[str, str]:
    """The summary of the experiment in ``folder`` (:func:`summary_text` of its results.json) and the rest of
    its ``results_md``; ``("", results_md)`` for an experiment whose results.md does not open with it
    (summarised before summaries existed)."""
    try:
        result = json.loads((Path(folder) / "results.json").read_text())
        summary = summary_text(result["cells"], metric=result["metric"], oracle=(result.get("oracle") or {}).get("why"),
                               usefulness_rows=result.get("usefulness"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", results_md
    if not summary or not results_md.startswith(summary):
        return "", results_md
    return summary, results_md[len(summary):]
