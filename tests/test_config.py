"""Typed configs: TOML files and --set, checked against the dataclass."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, strategies as st

from galaug import ConfigError
from galaug.config import config_to_toml, resolve_config


@dataclasses.dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)


@dataclasses.dataclass
class Cfg:
    steps: int = 100
    name: str = "run"
    ema: bool = True
    psi: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bands: tuple[str, ...] = ("g", "r")
    out: Path = Path("runs")
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_defaults():
    assert resolve_config(Cfg) == Cfg()


def test_set_converts_each_type():
    cfg = resolve_config(Cfg, sets=["steps=5", "ema=false", "psi=0.7", "device=cpu", "bands=g,r,i",
                                    "out=/tmp/x", "optim.lr=0.01", "optim.betas=[0.5, 0.9]"])
    assert cfg == Cfg(steps=5, ema=False, psi=0.7, device="cpu", bands=("g", "r", "i"), out=Path("/tmp/x"),
                      optim=Optim(lr=0.01, betas=(0.5, 0.9)))
    assert resolve_config(Cfg, sets=["psi=none"]).psi is None


@pytest.mark.parametrize("item", ['bands=["g", "i"]', "bands=['g','i']", "bands=g, i", "bands=(g,i)"])
def test_set_list_written_as_toml_or_plain(item):
    assert resolve_config(Cfg, sets=[item]).bands == ("g", "i")


@pytest.mark.parametrize("item, message", [
    ("stepz=3", "unknown config key 'stepz'.*did you mean 'steps'"),
    ("optim.lrr=3", "unknown config key 'optim.lrr'"),
    ("steps=ten", "config key 'steps' expects an integer, got 'ten'"),
    ("ema=maybe", "config key 'ema' expects true or false"),
    ("device=tpu", "config key 'device' must be one of"),
    ("optim.betas=1,2,3", "config key 'optim.betas' expects 2 values"),
    ("noequals", "--set expects key=value"),
])
def test_bad_set_names_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(Cfg, sets=[item])


def test_toml_file_then_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('steps = 7\nname = "a"\n[optim]\nlr = 1\n')
    cfg = resolve_config(Cfg, file=f, sets=["name=b"])
    assert (cfg.steps, cfg.name, cfg.optim.lr) == (7, "b", 1.0)


@pytest.mark.parametrize("text, message", [
    ("steps = 'x'\n", "config key 'steps' expects an integer"),
    ("ema = 1\n", "expects true or false"),
    ("[optim]\nlrate = 1\n", "unknown config key 'optim.lrate'"),
    ("optim = 3\n", "config key 'optim' is a table"),
    ("steps = = 1\n", "is not valid TOML"),
])
def test_bad_toml_names_the_problem(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve_config(Cfg, file=f)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(Cfg, file=tmp_path / "nope.toml")


def test_toml_output_reads_back(tmp_path):
    cfg = Cfg(steps=3, bands=("u",), optim=Optim(lr=0.5))
    f = tmp_path / "out.toml"
    f.write_text(config_to_toml(cfg))
    assert resolve_config(Cfg, file=f) == cfg


@given(st.text(max_size=30))
def test_any_set_string_either_parses_or_raises_config_error(text):
    try:
        resolve_config(Cfg, sets=[text])
    except ConfigError:
        pass


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_integers_round_trip_through_set(n):
    assert resolve_config(Cfg, sets=[f"steps={n}"]).steps == n
