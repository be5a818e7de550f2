"""One self-contained HTML page from the outputs of a study: figures, experiment tables, analyses.

A report is described by a TOML manifest (``galaug report MANIFEST.toml -o
report.html``)::

    title = "galaug demo"
    intro = "What was run, on what."

    [[section]]
    title = "Real and generated galaxies"
    text = "One sentence on what the section shows."
    images = [{path = "real-train.png", caption = "..."}, "gen.png"]

    [[section]]
    title = "The ratio experiment"
    experiment = "experiment"      # a `galaug experiment ratios` output folder

    [[section]]
    title = "Latent structure"
    analysis = "latent"            # a `galaug analyze` output folder

    [[section]]
    title = "Quality gate"
    quality = ["gen.zarr"]         # generated datasets: the gate's verdict from their provenance

Paths are relative to the manifest. An ``experiment`` section shows
its summary in words first, then ``results.md`` and ``results.png``, and
for a size sweep (``galaug experiment sizes``) ``curve.md`` and ``curve.png``; a ``run`` section (a task run folder,
or one metrics file of ``galaug task eval``) shows the summary metrics of
every evaluation next to those of the task's input and of its classical
baselines, when it reports some; an ``analysis`` section shows the
analysis' ``table`` and every figure it lists, captioned by its
``captions`` when it gives them; ``table = "file.md"`` shows a Markdown
file; ``quality = ["gen.zarr", ...]`` shows, per generated dataset, the
verdict of ``galaug generate``'s quality gate and the statistics outside
the training range (a set that failed it, overridden, gets a warning). Figures are embedded (base64), so the page can be mailed or
archived alone; they are numbered, and a caption already shown is not
repeated (``Figure 12: as figure 7.``). Each table writes a metric (or a
statistic) in one number format.

A run or an experiment arm whose task metric is worse than the task's own
input (the denoiser's ``mse`` above its ``input_mse``, its ``psnr`` below
``input_psnr``; any summary metric ``m`` with an ``input_m`` beside it;
PSNR, SSIM and accuracies are better higher, every other metric lower), or
not finite, gets a visible warning, and the arm's table row a ⚠ mark.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any

from galaug.config import read_toml
from galaug.errors import ConfigError

__all__ = ["build_report", "render_report", "markdown_to_html", "worse_than_input"]

_SECTION_KEYS = {"title", "text", "images", "experiment", "run", "analysis", "table", "quality"}
#: Metrics that are better higher (by the last part of their name); every other one is better lower.
_HIGHER_IS_BETTER = ("psnr", "ssim", "accuracy", "r2", "auc")
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; } th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; } p.lead { font-size: 1.05em; }
div.warning { border: 2px solid #c00; background: #fff0f0; color: #900; padding: 0.5em 1em; margin: 1em 0; }
"""


def markdown_to_html(text: str) -> str:
    """Paragraphs and pipe tables (the Markdown galaug writes) to HTML; everything is escaped."""
    out: list[str] = []
    lines = text.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):  # skip the |---|---| rule
                    rows.append(cells)
                i += 1
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith("|"):
            para.append(lines[i].strip())
            i += 1
        if para:
            out.append(f"<p>{html.escape(' '.join(para))}</p>")
        else:
            i += 1
    return "\n".join(out)


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        raise ConfigError(f"report: figure {str(path)!r} does not exist")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else f"image/{path.suffix.lower().lstrip('.') or 'png'}"
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError:
        raise ConfigError(f"report: {what} {str(path)!r} cannot be read") from None


def worse_than_input(metric: str, value: float, input_value: float) -> bool:
    """True when ``value`` of ``metric`` is worse than the input's ``input_value`` (or is not finite)."""
    if not math.isfinite(value):
        return True
    if not math.isfinite(input_value):
        return False
    name = metric.rsplit(".", 1)[-1].lower()
    return value < input_value if name.endswith(_HIGHER_IS_BETTER) else value > input_value


def _input_pairs(summary: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """``(test set, metric, value, input value)`` of every summary metric that has an ``input_`` twin."""
    out = []
    for test_set, values in summary.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            twin = values.get(f"input_{name}")
            if not name.startswith("input_") and _number(value) and _number(twin):
                out.append((test_set, name, float(value), float(twin)))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _warning(lines: list[str], what: str, *, advice: bool = False) -> str:
    """A red box: ``what`` and a list of ``lines``; with ``advice``, what to check (said once, at the top)."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    hint = (" (check the training data and the generated images: galaug generate's quality gate, galaug show)"
            if advice else "")
    return f'<div class="warning"><strong>⚠ Warning: {html.escape(what)}</strong>{hint}<ul>{items}</ul></div>'


def _number_figures(page: str) -> str:
    """Every caption of ``page`` as ``Figure N. caption``; a caption shown before is not repeated: ``Figure N: as
    figure M.`` (a report with three realism sections says each sentence once)."""
    first: dict[str, int] = {}
    count = 0

    def numbered(match: re.Match) -> str:
        nonlocal count
        count += 1
        caption = match[1].strip()
        if caption in first:
            return f"<figcaption>Figure {count}: as figure {first[caption]}.</figcaption>"
        if caption:
            first[caption] = count
        return f"<figcaption>Figure {count}.{' ' + caption if caption else ''}</figcaption>"

    return re.sub(r"<figcaption>(.*?)</figcaption>", numbered, page, flags=re.DOTALL)


def _experiment_warnings(folder: Path) -> tuple[list[str], set[str]]:
    """Lines saying which arm and test set is worse than the input, and those arms (from results.json)."""
    try:
        rows = json.loads((folder / "results.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return [], set()  # an older experiment, or no per-run rows: nothing to compare
    means: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if isinstance(r, dict) and _number(r.get("value")):
            means.setdefault((r["arm"], r["test_set"], r["metric"]), []).append(float(r["value"]))
    lines, arms = [], set()
    for (arm, test_set, metric), values in means.items():
        twin = means.get((arm, test_set, f"input_{metric}"))
        if metric.startswith("input_") or not twin:
            continue
        value, given = sum(values) / len(values), sum(twin) / len(twin)
        if worse_than_input(metric, value, given):
            arms.add(arm)
            fmt = _metric_formats([(metric, value), (metric, given)])[metric]
            lines.append(f"{arm}, {test_set}: {metric} {fmt(value)} is worse than the input's {fmt(given)}")
    return lines, arms


def _mark_arms(table_md: str, arms: set[str]) -> str:
    """The experiment table with ⚠ before the name of every arm in ``arms``."""
    out = []
    for line in table_md.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and cells[1].strip() in arms:
            cells[1] = f" ⚠ {cells[1].strip()} "
            line = "|".join(cells)
        out.append(line)
    return "\n".join(out)


def _metric_formats(values: list[tuple[str, float]]) -> dict[str, Any]:
    """One number format per metric (``{metric: format}``) over ``(metric, value)`` pairs: every cell of a metric,
    on every test set and in every column, is written alike (``5807`` beside ``16180``, never ``1.618e+04``)."""
    from galaug.experiment_summary import table_format

    by_metric: dict[str, list[float]] = {}
    for m, x in values:
        by_metric.setdefault(m, []).append(float(x))
    return {m: table_format(xs) for m, xs in by_metric.items()}


def _run_metrics(path: Path) -> str:
    """A task run's evaluations (every ``metrics-*.json``, or one metrics file): summary tables and warnings."""
    files = sorted(path.glob("metrics-*.json")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"report: {str(path)!r} holds no metrics-*.json (run galaug task eval first)")
    body = []
    for file in files:
        try:
            report = json.loads(_read_text(file, "metrics file"))
            summary = report["metrics"].get("summary", report["metrics"])
        except (ValueError, KeyError, AttributeError, TypeError):
            raise ConfigError(f"report: {file} is not a galaug task evaluation") from None
        pairs = _input_pairs(summary)
        data = Path(str(report.get("data", file.stem))).name
        # the task's classical baselines (summary[test_set]["baselines"][name][metric]), a column each
        baselines = list(dict.fromkeys(b for values in summary.values() if isinstance(values, dict)
                                       for b in (values.get("baselines") or {})))

        def baseline_value(ts: str, m: str, b: str) -> Any:
            return ((summary[ts].get("baselines") or {}).get(b) or {}).get(m)

        fmt = _metric_formats([(m, x) for ts, m, v, i in pairs
                               for x in (v, i, *(baseline_value(ts, m, b) for b in baselines)) if _number(x)])

        def baseline(ts: str, m: str, b: str) -> str:
            value = baseline_value(ts, m, b)
            return fmt[m](float(value)) if _number(value) else "-"

        lines = [f"{data}, {ts}: {m} {fmt[m](v)} is worse than the input's {fmt[m](i)}"
                 for ts, m, v, i in pairs if worse_than_input(m, v, i)]
        if lines:
            body.append(_warning(lines, f"{report.get('run', path)} does worse than its own input"))
        table = ["| test set | metric | model | input |" + "".join(f" {b} |" for b in baselines),
                 "|---" * (4 + len(baselines)) + "|"]
        table += [f"| {'⚠ ' if worse_than_input(m, v, i) else ''}{ts} | {m} | {fmt[m](v)} | {fmt[m](i)} |"
                  + "".join(f" {baseline(ts, m, b)} |" for b in baselines)
                  for ts, m, v, i in pairs]
        body.append(f"<p>{html.escape(report.get('task', 'task'))} run {html.escape(str(report.get('run', path)))} "
                    f"evaluated on {html.escape(data)}</p>")
        body.append(markdown_to_html("\n".join(table)))
    return "\n".join(body)


def _quality(path: Path) -> str:
    """The quality gate's verdict on generated dataset ``path`` (its newest record in the provenance)."""
    from galaug.data import open_dataset
    from galaug.errors import GalaugError
    from galaug.quality import failed_gate, format_table, summary_line

    try:
        ds = open_dataset(path)
    except GalaugError as e:
        raise ConfigError(f"report: {e}") from None
    records = [e["quality"] for e in ds.provenance if isinstance(e, dict) and isinstance(e.get("quality"), dict)]
    record = failed_gate(ds) or (records[-1] if records else None)
    body = [f"<p><strong>{html.escape(path.name)}</strong>: {html.escape(summary_line(record))}</p>"]
    if record is not None and record.get("verdict") == "fail":
        body.insert(0, _warning([summary_line(record)], f"{path.name} failed the quality gate (overridden)"))
    if record is not None and any(r["status"] != "ok" for r in record.get("rows", [])):
        body.append(markdown_to_html(format_table(record, only=("outside", "fail"))))
    return "\n".join(body)


def _section(sec: dict[str, Any], base: Path, number: int) -> str:
    where = f"section {number}" + (f" ({sec['title']!r})" if isinstance(sec.get("title"), str) else "")
    unknown = set(sec) - _SECTION_KEYS
    if unknown:
        raise ConfigError(f"report: {where}: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(keys: {', '.join(sorted(_SECTION_KEYS))})")
    if not isinstance(sec.get("title"), str):
        raise ConfigError(f"report: {where} needs a title")
    body = [f"<h2>{html.escape(sec['title'])}</h2>"]
    if sec.get("text"):
        body.append(f'<p class="lead">{html.escape(str(sec["text"]))}</p>')
    if "table" in sec:
        body.append(markdown_to_html(_read_text(base / sec["table"], "table")))
    if "experiment" in sec:
        folder = base / sec["experiment"]
        from galaug.experiment_summary import summary_and_table

        summary, table = summary_and_table(folder, _read_text(folder / "results.md", "experiment table"))
        if summary:  # the conclusions in words first
            body.append(markdown_to_html(summary))
        lines, arms = _experiment_warnings(folder)
        if lines:
            body.append(_warning(lines, "an arm does worse than the task's own input"))
        body.append(markdown_to_html(_mark_arms(table, arms)))
        body.append(_figure(folder / "results.png", "Mean and spread over seeds of the summary metric per arm, "
                                                    "one panel per test set (lower is better for errors)."))
        if (folder / "curve.md").is_file():  # a size sweep (galaug experiment sizes): its learning curve
            body.append(markdown_to_html(_read_text(folder / "curve.md", "learning curve")))
            body.append(_figure(folder / "curve.png", "The summary metric against the number of real training "
                                                  "images, alone and with generated images (mean and spread over "
                                                  "seeds); a star where the oracle's gain exceeds the seed spread, "
                                                  "the best classical baseline dashed."))
    if "run" in sec:
        body.append(_run_metrics(base / sec["run"]))
    if "quality" in sec:
        sets = sec["quality"] if isinstance(sec["quality"], list) else [sec["quality"]]
        body += [_quality(base / str(p)) for p in sets]
    if "analysis" in sec:
        folder = base / sec["analysis"]
        try:
            report = json.loads(_read_text(folder / "report.json", "analysis report"))
            results = report["results"]
        except (ValueError, KeyError):
            raise ConfigError(f"report: {folder / 'report.json'} is not a galaug analysis report") from None
        if results.get("table"):
            body.append(markdown_to_html(results["table"]))
        captions = results.get("captions") or {}
        for name in results.get("figures") or []:
            body.append(_figure(folder / name, captions.get(name, name)))
    for item in sec.get("images") or []:
        path, caption = (item, "") if isinstance(item, str) else (item.get("path"), item.get("caption", ""))
        if not isinstance(path, str):
            raise ConfigError(f"report: {where}: an image needs a path")
        body.append(_figure(base / path, caption))
    return "<section>\n" + "\n".join(body) + "\n</section>"


def render_report(spec: dict[str, Any], base: Path) -> str:
    """The HTML page for a manifest already read into ``spec``; paths are relative to ``base``."""
    sections = spec.get("section")
    if not isinstance(sections, list) or not sections:
        raise ConfigError("report: the manifest has no [[section]]")
    title = str(spec.get("title", "galaug report"))
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if spec.get("intro"):
        parts.append(markdown_to_html(str(spec["intro"])))
    rendered = [_section(sec, base, i + 1) for i, sec in enumerate(sections)]
    flagged = [str(sec["title"]) for sec, text in zip(sections, rendered) if 'class="warning"' in text]
    if flagged:  # said at the top too, so that nobody reads the numbers without it
        parts.append(_warning([f"section {t!r}" for t in flagged], "sections with warnings", advice=True))
    parts += rendered
    parts.append("</body></html>\n")
    return _number_figures("\n".join(parts))


def build_report(manifest: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the report that ``manifest`` describes to ``out`` (atomically); returns ``out``."""
    from galaug.data.writer import check_output, commit_path, temporary_sibling

    manifest = Path(manifest)
    spec = read_toml(manifest, what="report manifest")
    page = render_report(spec, manifest.parent)
    out = check_output(out, overwrite=overwrite, what="file")
    tmp = temporary_sibling(out)
    try:
        tmp.write_text(page)
        commit_path(tmp, out, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
