"""The report's figures and tables read alone: axis labels with units on every panel, a legend where lines need
one, each role (held-out, generated) in one colour everywhere, one number format per table, captions from facts.

The figure functions are called on tiny synthetic results, and every figure they save is looked at through
matplotlib's own objects (``Axes.get_xlabel``, legends, artist colours).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import galaug_analyses
from galaug.sources.sersic import PARAM_NAMES
from galaug.viz import role_colour
from galaug_analyses import editing, latent, realism
from galaug_analyses.condition import ConditionCheck
from galaug_analyses.latent import LatentStructure, LatentStructureConfig, order_latents

from conftest import galaxy_images

#: A unit at the end of an axis label: ``r_half [arcsec]``, ``pixel value [nJy]``.
UNIT = re.compile(r"\[[^\]]+\]$")


@pytest.fixture
def saved(monkeypatch):
    """Every matplotlib figure saved while the test runs, in order."""
    from matplotlib.figure import Figure

    figures, original = [], Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def panels(fig):
    """The axes of ``fig`` that plot data (not image tiles, not the spare axes that hold a legend)."""
    return [ax for ax in fig.axes if ax.axison and (ax.lines or ax.collections or ax.patches)]


def assert_labelled(fig, units: dict[str, str | None] | None = None) -> list:
    """Every data panel of ``fig`` has an x and a y label; a label that starts with a key of ``units`` ends with
    that unit in brackets, or has none where the unit is None (a quantity without one)."""
    found = panels(fig)
    assert found, "a figure without a data panel"
    for ax in found:
        x, y = ax.get_xlabel(), ax.get_ylabel()
        assert x.strip() and y.strip(), f"panel {ax.get_title()!r}: x {x!r}, y {y!r}"
        for label in (x, y):
            for quantity, unit in (units or {}).items():
                if label == quantity or label.startswith(quantity + " "):
                    assert (label.endswith(f"[{unit}]") if unit else not UNIT.search(label)), (label, unit)
    return found


def colours_of(fig, label: str) -> set[tuple[float, ...]]:
    """The colours of every line, histogram, step or scatter drawn with ``label`` (a legend entry) in ``fig``."""
    out = set()
    for ax in panels(fig):
        for artist in [*ax.lines, *ax.patches, *ax.collections]:
            if artist.get_label().startswith(label):
                if hasattr(artist, "get_xydata"):  # a line
                    out.add(rgba(artist.get_color()))
                elif hasattr(artist, "get_offsets"):  # a scatter
                    out.update(rgba(c) for c in artist.get_facecolor())
                else:  # a histogram's outline
                    out.add(rgba(artist.get_edgecolor()))
    return out


def rgba(colour) -> tuple[float, ...]:
    return tuple(float(c) for c in np.round(to_rgba(colour), 3))


# -- the experiment ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric, unit", [("model.mse", "nJy²"), ("psnr", "dB"), ("ssim", None)])
def test_experiment_bars_name_both_axes_on_every_panel(saved, tmp_path, metric, unit):
    from galaug.experiment import _plot

    table = {arm: {ts: {"mean": 5.0 + k, "std": 0.5, "n": 2} for ts in ("nominal", "lowres")}
             for k, arm in enumerate(("100% real", "5x gen"))}
    _plot(tmp_path / "results.png", table, ["nominal", "lowres"], metric, flux_unit="nJy")
    assert len(assert_labelled(saved[0], {metric: unit, "arm": None})) == 2


# -- latent structure ----------------------------------------------------------------------------------------


def test_latent_figures_label_every_panel_with_units_and_the_walk_has_a_legend(saved, tmp_path):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(60, 4))
    values = np.column_stack([latents @ rng.normal(size=4) + k for k in range(len(PARAM_NAMES))])
    orderings = {name: order_latents(latents, values[:, i], folds=3) for i, name in enumerate(PARAM_NAMES)}
    analysis = LatentStructure(LatentStructureConfig(n=20, strip=3))
    images = galaxy_images(60, bands=1, size=8)
    units = {"x": "arcsec", "y": "arcsec", "r_half": "arcsec", "n": None, "q": None, "beta": "rad", "flux": "adu"}
    fitted = {f"fitted {name}": unit for name, unit in units.items()}

    analysis._figures(images, values, orderings, tmp_path, flux_unit="adu")
    projection = saved[0]
    assert len(assert_labelled(projection, {**fitted, "projection on": "w units"})) == len(PARAM_NAMES)
    assert sum(bool(UNIT.search(ax.get_ylabel())) for ax in panels(projection)) == 5  # n and q have no unit

    t = np.linspace(-2, 2, 5)
    curves = {name: rng.normal(size=(3, len(t))) for name in PARAM_NAMES}
    model = SimpleNamespace(layout=SimpleNamespace(flux_unit="adu"))
    analysis._walk_figures(t, curves, [images[:5]] * len(PARAM_NAMES), model, tmp_path)
    walk = next(f for f in saved if f.get_suptitle().startswith("Latents moved"))
    assert len(assert_labelled(walk, {**fitted, "step along": "std of projection"})) == len(PARAM_NAMES)
    legends = [ax.get_legend() for ax in walk.axes if ax.get_legend() is not None]
    assert len(legends) == 1 and [t.get_text() for t in legends[0].get_texts()] == ["latent 1", "latent 2", "latent 3"]
    for k in (1, 2, 3):  # a latent is one colour in every panel, the legend's
        assert len(colours_of(walk, f"latent {k}")) == 1

    analysis._control_figure(values, values, tmp_path / "control.png", flux_unit="adu")
    assert_labelled(saved[-1], {**fitted, **{f"true {name}": unit for name, unit in units.items()}})


# -- realism: held-out orange everywhere, even where another set has no values --------------------------------


def _set(role: str, shift: float, *, size: int = 16, n: int = 30, seed: int = 0) -> realism._Set:
    rng = np.random.default_rng(seed)
    values = {name: rng.normal(1 + shift, 0.3, n) for name in realism.STATISTICS}
    k = len(realism._rings(size, size)[1])
    morphology = realism._Morphology(values, rng.normal(shift, 0.2, n), Counter())
    return realism._Set(role, Path(f"{role}.zarr"), n, morphology,
                        np.abs(rng.normal(1 + shift, 0.1, (n, k))), rng.normal(shift, 1, (3, 300)))


def test_realism_figures_label_every_panel_and_keep_each_set_in_its_colour(saved, tmp_path):
    generated, heldout, train = _set("generated", 0.5), _set("heldout", 0.0, seed=1), _set("train", 0.1, seed=2)
    generated.morphology.values["gini"][:] = np.nan  # statmorph measured nothing: the panel has two sets only
    sets, bands = [generated, heldout, train], ("g", "r", "i")
    frequency = realism._rings(16, 16)[1]
    results = {"band": "r", "morphology": realism._compare_morphology(sets),
               "power_spectrum": realism._compare_power(sets, frequency, realism._frequency_bands(len(frequency), 3)),
               "colours": realism._compare_colours(sets), "pixels": realism._compare_pixels(sets, bands)}
    names = realism._plot(sets, results, frequency, bands, 10, tmp_path, flux_unit="nJy")
    assert names == ["morphology.png", "power_spectrum.png", "pixels.png", "colours.png"] and len(saved) == 4
    units = {"pixel value": "nJy", "rhalf": "pixels", "orientation": "rad", "gini": None, "g - i": "mag",
             "frequency": "cycles / pixel"}
    for fig in saved:
        assert_labelled(fig, units)
        assert colours_of(fig, "held-out") == {rgba("C1")}  # in every panel, whoever else is drawn there
        assert colours_of(fig, "generated") <= {rgba("C0")} and colours_of(fig, "training") <= {rgba("C2")}
    # without gini, the generated set is in no colour figure and not in the gini panel: held-out stays orange there
    gini = next(ax for ax in saved[0].axes if ax.get_title().startswith("gini"))
    assert [p.get_label() for p in gini.patches] == ["held-out", "training"] and not colours_of(saved[3], "generated")


# -- memorisation, condition-check, attribute editing ----------------------------------------------------------


def test_memorisation_distances_label_both_panels_and_colour_held_out_as_realism_does(saved, galaug_plugins, tmp_path):
    import galaug
    from galaug.data.provenance import make_entry

    galaug_plugins.register(galaug_analyses)
    paths = []
    for name, n, seed in (("gen", 20, 1), ("train", 30, 2), ("held", 30, 3)):
        with galaug.create_dataset(tmp_path / f"{name}.zarr", bands=("g", "r", "i"), image_size=16,
                                   provenance=make_entry("test")) as w:
            w.append(galaxy_images(n, seed=seed))
        paths.append(tmp_path / f"{name}.zarr")
    result = galaug_plugins.invoke("analyze", "memorisation", *paths, tmp_path / "out")
    assert result.exit_code == 0, result.output
    distances = saved[-1]
    assert len(assert_labelled(distances)) == 2
    assert colours_of(distances, "held-out") == {rgba("C1")} and colours_of(distances, "generated") == {rgba("C0")}


def test_condition_check_labels_requested_and_measured_with_the_parameters_units(saved, tmp_path):
    rng = np.random.default_rng(0)
    requested = np.repeat([0.5, 1.0, 2.0], 4)
    panel = ("r_half", requested, requested * rng.normal(1, 0.1, 12), requested, requested, 0.9, 0.95)
    ConditionCheck._figure([panel, ("n", *panel[1:])], tmp_path / "c.png", "sersic",
                           units={"r_half": "arcsec", "n": ""})
    assert len(assert_labelled(saved[0], {"requested / true r_half": "arcsec", "measured r_half": "arcsec",
                                          "requested / true n": None, "measured n": None})) == 2
    assert colours_of(saved[0], "control") == {rgba(role_colour("control"))}  # grey, as in latent-structure


def test_attribute_editing_matrix_names_both_axes(saved, tmp_path):
    per = {m: 0.1 * (i + 1) for i, m in enumerate(PARAM_NAMES)}
    results = {"parameters": {name: {"per_sigma": per, "per_sigma_standardised": per, "spearman_rho": 0.8}
                              for name in ("r_half", "n")}}
    editing.AttributeEditing(editing.AttributeEditingConfig())._entanglement_figure(results, tmp_path / "e.png")
    ax = saved[0].axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()


# -- tables: one number format per table (per column, per statistic) ------------------------------------------


def one_format(*numbers: str) -> bool:
    """Whether written numbers share one format: all fixed point with the same decimals, or all scientific with
    the same digits (``5807`` and ``16180``, never ``5807`` beside ``1.618e+04``)."""
    def form(text: str) -> tuple[bool, int]:
        mantissa = text.lstrip("+-").lower().split("e")[0]
        return "e" in text.lower(), len(mantissa.split(".")[1]) if "." in mantissa else 0

    return len({form(n) for n in numbers}) == 1 and all(re.fullmatch(r"[+-]?\d+(\.\d+)?(e[+-]\d+)?", n)
                                                          for n in numbers)


def test_the_quality_table_writes_each_statistic_in_one_format():
    from galaug.quality import format_table

    record = {"verdict": "pass", "rows": [
        {"statistic": "flux p99", "band": "r", "generated": 556100.4, "training": 8638.2, "low": 5000.0,
         "high": 600000.0, "status": "outside"},
        {"statistic": "pixel p1", "band": "r", "generated": -0.0123, "training": -0.5, "low": -1.0, "high": 0.0,
         "status": "ok"}]}
    rows = [line.split(" | ") for line in format_table(record).splitlines() if line.startswith("| flux p99")
            or line.startswith("| pixel p1")]
    flux, pixel = ([r[2], r[3], *r[4].split(" to ")] for r in rows)
    assert one_format(*flux) and flux[:2] == ["556100", "8638"]  # never 5.561e+05 beside 8638
    assert one_format(*pixel) and pixel[0] == "-0.012"  # the small ones keep their digits


def test_the_editing_table_writes_each_column_in_one_format():
    steps = [-1.0, 0.0, 1.0]
    parameters = {name: {"spearman_rho": 0.9, "sign_ok": True, "sign_required": True,
                         "per_sigma": {m: None for m in PARAM_NAMES},
                         "median_change": {name: [-(10.0 ** k), 0.0, 10.0 ** k]}}
                  for k, name in enumerate(("n", "flux"))}
    parameters["n"]["per_sigma"].update(flux=1234.5, n=0.0123)
    parameters["flux"]["per_sigma"].update(flux=-12.5, n=0.5)
    text = editing.table({"parameters": parameters, "steps": steps})
    header, _, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines())
    column = {name: [row[header.index(name)] for row in rows] for name in ("Δflux", "Δn")}
    assert column["Δflux"][0] == "+1234" and one_format(*column["Δflux"])  # not +1.23e+03 above -12.5
    assert column["Δn"][0] == "+0.0123" and one_format(*column["Δn"])
    steps_rows = editing.steps_table({"parameters": parameters, "steps": steps}).splitlines()
    flux_row = next(r for r in steps_rows if r.startswith("| flux |")).strip("|").split("|")[1:]
    assert one_format(*(c.strip() for c in flux_row)) and flux_row[0].strip().startswith("-10")


# -- captions: measured or neutral, never a fixed judgement of the images ---------------------------------------

#: Words that judge how images look: a fixed caption cannot know them (the 600-step run's saturated blobs were
#: once captioned "blurry galaxies").
JUDGEMENTS = re.compile(r"\b(blurry|sharp|crisp|realistic|unrealistic|convincing|good|bad|poor|nice|excellent|"
                        r"saturated|clean|smooth|smoothly|beautiful|ugly)\b", re.IGNORECASE)


def test_captions_of_the_analyses_and_the_demo_do_not_judge_the_images():
    from galaug_analyses import condition, memorisation

    captions = {**latent.CAPTIONS, **editing.CAPTIONS, **memorisation._CAPTIONS, **realism._CAPTIONS,
                "condition_check.png": condition.CAPTION}
    demo = (Path(__file__).parents[1] / "examples" / "demo.sh").read_text()
    captions.update((f"demo.sh {path}", text)
                    for path, text in re.findall(r'path = "([^"]+)", caption = "([^"]+)"', demo))
    assert len(captions) > 20 and any(k.startswith("demo.sh gen-demo-run") for k in captions)
    judged = {name: JUDGEMENTS.findall(text) for name, text in captions.items() if JUDGEMENTS.search(text)}
    assert not judged
    # the generator's long description ("... (the same tiny ALAE trained on this training set for N steps)") is
    # said once, in the report's introduction, not in every section that uses its images
    start = demo.index('cat > "$OUT/report.toml"')
    manifest = demo[start:demo.index("\nTOML\n", start)]
    assert manifest.count("$GEN_FROM") == 1 and manifest.count("$GEN_NAME") >= 5
