"""galaug report: one self-contained HTML page from figures, an experiment and analyses."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from galaug.report import markdown_to_html
from galaug.viz import save_grid

from test_cli import assert_user_error


class Page(HTMLParser):
    """Headings, images and table cells of a page (parsing fails loudly on broken markup)."""

    def __init__(self):
        super().__init__()
        self.h2, self.images, self.cells, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.h2.append(data)
        elif self._in in ("td", "th"):
            self.cells.append(data)


@pytest.fixture
def study(tmp_path):
    """A folder with a figure, an experiment output and an analysis output, as a demo leaves them."""
    images = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    save_grid(images, tmp_path / "real.png", channels=[0])
    exp = tmp_path / "experiment"
    exp.mkdir()
    (exp / "results.md").write_text("mse, mean ± std over seeds\n\n| arm | nominal |\n|---|---|\n| 100% real | 12.5 |\n")
    save_grid(images, exp / "results.png", channels=[0])
    ana = tmp_path / "latent"
    ana.mkdir()
    save_grid(images, ana / "projection.png", channels=[0])
    (ana / "report.json").write_text(json.dumps({"results": {
        "table": "| parameter | rho |\n|---|---|\n| n | 0.97 |", "figures": ["projection.png"],
        "captions": {"projection.png": "Fitted n against the projection."}}}))
    (tmp_path / "report.toml").write_text("""
title = "A study"
intro = "What was run."

[[section]]
title = "Galaxies"
text = "Real galaxies."
images = [{path = "real.png", caption = "Real ones"}, "real.png"]

[[section]]
title = "Experiment"
experiment = "experiment"

[[section]]
title = "Latent <structure>"
analysis = "latent"
""")
    return tmp_path


def test_the_report_holds_every_section_table_and_embedded_figure(galaug_plugins, study):
    out = study / "report.html"
    result = galaug_plugins.invoke("report", str(study / "report.toml"), str(out))
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed(out.read_text())
    page.close()
    assert page.h2 == ["Galaxies", "Experiment", "Latent <structure>"]  # escaped in the HTML, intact here
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert base64.b64decode(page.images[0].split(",", 1)[1]) == (study / "real.png").read_bytes()
    assert {"100% real", "12.5", "0.97"} <= set(page.cells)
    assert "Fitted n against the projection." in out.read_text()
    assert "&lt;structure&gt;" in out.read_text()


def test_report_errors_are_one_line_and_leave_nothing(galaug_plugins, study):
    out = study / "report.html"
    (study / "real.png").unlink()
    assert_user_error(galaug_plugins.invoke("report", str(study / "report.toml"), str(out)), "real.png")
    (study / "bad.toml").write_text('[[section]]\ntitle = "x"\nimage = ["a.png"]\n')
    assert_user_error(galaug_plugins.invoke("report", str(study / "bad.toml"), str(out)), "image")
    (study / "empty.toml").write_text('title = "x"\n')
    assert_user_error(galaug_plugins.invoke("report", str(study / "empty.toml"), str(out)), "no [[section]]")
    assert not out.exists() and not list(study.glob(".report.html*"))
    out.write_text("keep")
    (study / "ok.toml").write_text('[[section]]\ntitle = "x"\ntext = "y"\n')
    assert_user_error(galaug_plugins.invoke("report", str(study / "ok.toml"), str(out)), "--overwrite")
    assert out.read_text() == "keep"


def test_markdown_tables_and_paragraphs():
    h = markdown_to_html("Some <b>text</b>\nwraps.\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n")
    assert h == ("<p>Some &lt;b&gt;text&lt;/b&gt; wraps.</p>\n"
                 "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>")


class Sentences(HTMLParser):
    """The sentences of a page's running text: paragraphs, captions, warnings (not tables, headings or styles)."""

    SKIPPED = {"td", "th", "style", "title", "h1", "h2"}

    def __init__(self):
        super().__init__()
        self.open, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data):
        if not self.SKIPPED & set(self.open):
            self.text.append(data)

    def sentences(self) -> list[str]:
        import re

        parts = (re.split(r"(?<=[.!?])\s+", " ".join(node.split())) for node in self.text)  # a node a block
        return [s for part in parts for s in part if len(s.split()) >= 4]


def test_a_report_says_each_sentence_once(galaug_plugins, study):
    import shutil
    from collections import Counter

    for copy in ("latent-2", "latent-3"):  # the same analysis three times: the same captions
        shutil.copytree(study / "latent", study / copy)
    (study / "experiment" / "results.json").write_text(json.dumps({"rows": [
        {"arm": "100% real", "test_set": "nominal", "metric": "mse", "value": 30.0},
        {"arm": "100% real", "test_set": "nominal", "metric": "input_mse", "value": 10.0}]}))
    run = study / "run"
    run.mkdir()
    (run / "metrics-val.json").write_text(json.dumps({"task": "denoise", "run": "run", "data": "val.zarr", "metrics": {
        "summary": {"nominal": {"mse": 40.0, "input_mse": 10.0}}}}))
    (study / "report.toml").write_text((study / "report.toml").read_text() + "".join(
        f'\n[[section]]\ntitle = "Again {k}"\nanalysis = "{copy}"\n' for k, copy in enumerate(("latent-2", "latent-3")))
        + '\n[[section]]\ntitle = "A run"\nrun = "run"\n')
    out = study / "report.html"
    result = galaug_plugins.invoke("report", str(study / "report.toml"), str(out))
    assert result.exit_code == 0, result.output
    page = Sentences()
    page.feed(out.read_text())
    said = Counter(page.sentences())
    assert said and said.most_common(1)[0][1] == 1, [s for s, n in said.items() if n > 1]
    text = out.read_text()
    assert text.count("Fitted n against the projection.") == 1 and "as figure" in text  # later copies point back
    assert text.count('class="warning"') == 3 and text.count("check the training data") == 1


def test_a_run_table_writes_each_metric_in_one_format(galaug_plugins, tmp_path):
    from test_figures import one_format

    run = tmp_path / "run"
    run.mkdir()
    summary = {"nominal": {"mse": 5807.31, "input_mse": 16180.2, "ssim": 0.91234, "input_ssim": 0.45,
                           "baselines": {"tv": {"mse": 9000.5, "ssim": 0.8}}},
               "noise5x": {"mse": 120.5, "input_mse": 98000.25, "ssim": 0.5, "input_ssim": 0.1,
                           "baselines": {"tv": {"mse": 45000.0, "ssim": 0.3}}}}
    (run / "metrics-val.json").write_text(json.dumps({"task": "denoise", "run": "run", "data": "val.zarr",
                                                      "metrics": {"summary": summary}}))
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "A run"\nrun = "run"\n')
    result = galaug_plugins.invoke("report", str(tmp_path / "report.toml"), str(tmp_path / "report.html"))
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed((tmp_path / "report.html").read_text())
    cells = page.cells[5:]  # test set, metric, model, input, tv
    rows = [cells[i:i + 5] for i in range(0, len(cells), 5)]
    by_metric = {m: [c for r in rows if r[1] == m for c in r[2:]] for m in ("mse", "ssim")}
    assert len(by_metric["mse"]) == len(by_metric["ssim"]) == 6
    assert all(one_format(*cells) for cells in by_metric.values()), by_metric  # not 9.8e+04 beside 5807
    assert float(by_metric["mse"][1]) == pytest.approx(16180, abs=1) and "0.9123" in by_metric["ssim"]
