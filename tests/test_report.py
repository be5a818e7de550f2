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
