"""The ratio grammar (galaug.ratios): shares of a set and alpha; errors name the parameter."""

from __future__ import annotations

import pickle

import pytest

import galaug
from galaug.errors import GalaugError, ParamError
from galaug.mix import parse_gen, plan_mix
from galaug.ratios import Share, parse_alpha, parse_share, resolve_share

from test_cli import assert_user_error


@pytest.mark.parametrize("text, share", [
    ("300", Share("count", 300, "300")), ("0", Share("count", 0, "0")), ("1 image", Share("count", 1, "1 image")),
    ("n=1", Share("count", 1, "n=1")), (" n = 3 ", Share("count", 3, "n = 3")),
    ("300 images", Share("count", 300, "300 images")),
    (" +7 ", Share("count", 7, "+7")), ("0.1", Share("fraction", 0.1, "0.1")), (".5", Share("fraction", 0.5, ".5")),
    ("1.0", Share("fraction", 1.0, "1.0")), ("1e-3", Share("fraction", 1e-3, "1e-3")),
    ("10%", Share("fraction", 0.1, "10%")), ("12.5 %", Share("fraction", 0.125, "12.5 %")),
    (0.25, Share("fraction", 0.25, "0.25")), (40, Share("count", 40, "40")),
])
def test_shares_parse_to_counts_and_fractions(text, share):
    assert parse_share(text, param="real") == share


@pytest.mark.parametrize("text, factor", [("5x", 5.0), ("0.5x", 0.5), (" 2 X ", 2.0), ("1e1x", 10.0)])
def test_multiples_parse_only_where_allowed(text, factor):
    assert parse_share(text, param="gen", multiple=True) == Share("multiple", factor, text.strip())
    with pytest.raises(ParamError, match=r"^real must be a fraction \(0.2\), a percentage \(20%\) or a count"):
        parse_share(text, param="real")


@pytest.mark.parametrize("text, n, expected", [("10%", 40, 4), ("0.1", 40, 4), ("12.5%", 8, 1), ("7", 40, 7),
                                               ("1.0", 40, 40), ("100%", 40, 40), (1.0, 40, 40), ("1 image", 40, 1),
                                               ("n=1", 40, 1), ("0", 40, 0)])
def test_resolve_share(text, n, expected):
    assert resolve_share(text, n, param="val") == expected


@pytest.mark.parametrize("value", ["1", " 1 ", "+1", "01", 1])
def test_a_bare_one_is_refused_not_read_as_one_image(value):
    # "1" as a share reads as "all of it" to some and "one image" to others: neither is guessed
    with pytest.raises(ParamError) as info:
        resolve_share(value, 40, param="real")
    assert str(info.value) == (f"real {str(value).strip()} is ambiguous: write 1.0 or 100% for the whole set, "
                               "or '1 image' (n=1) for one image") and info.value.param == "real"
    with pytest.raises(ParamError, match=r"^gen \S*1 is ambiguous: write 1x for as many as the real set, 1.0 or 100% "
                                         r"for all of gen_data, or '1 image' \(n=1\) for one image$"):
        parse_gen(value, n_real=40, n_gen=120)
    with pytest.raises(ParamError, match=r"^gen \S*1 is ambiguous: write 1x for as many as the real set, or '1 image'"):
        parse_gen(value, n_real=40, n_gen=None)
    assert parse_gen("1x", n_real=40, n_gen=120) == 40 and parse_gen("1.0", n_real=40, n_gen=120) == 120
    assert parse_gen("1 image", n_real=40, n_gen=120) == 1 and parse_gen("n=1", n_real=40, n_gen=None) == 1


@pytest.mark.parametrize("text, message", [
    ("1.5", "val fraction must be between 0 and 1, got 1.5"),
    ("-0.1", "val fraction must be between 0 and 1, got -0.1"),
    ("150%", "val percentage must be between 0% and 100%, got 150%"),
    ("-5", "val must not be negative, got -5"),
    ("41", "val asks for 41 of 40 samples"),
    ("lots", "val must be a fraction (0.2), a percentage (20%) or a count (300), got 'lots'"),
    ("nan", "val must be a fraction"), ("inf%", "val must be a fraction"), ("1_000", "val must be a fraction"),
    ("١٢", "val must be a fraction"), ("1e400%", "val percentage must be between"),
    ("9" * 30, "val count 999"),
])
def test_bad_shares_name_the_parameter(text, message):
    with pytest.raises(ParamError) as info:
        resolve_share(text, 40, param="val")
    assert str(info.value).startswith(message) and info.value.param == "val"
    assert "--" not in str(info.value)  # the library names parameters, not command-line flags


@pytest.mark.parametrize("text, message", [
    ("0x", "gen 0x: the multiple must be a positive number"),
    ("-2x", "gen -2x: the multiple must be a positive number (below 1e12)"),
    ("abcx", "gen 'abcx': a multiple looks like 5x or 0.5x"),
    ("5y", "gen must be a multiple of the real set (5x), a fraction (0.5) or percentage (50%) of gen_data"),
    ("200", "gen 200 asks for more generated images than the 120 in gen_data (generate more, or use generator)"),
    ("4x", "gen 4x asks for 160 generated images but gen_data holds 120"),
])
def test_bad_gen_values_name_parameters(text, message):
    with pytest.raises(ParamError) as info:
        parse_gen(text, n_real=40, n_gen=120)
    assert str(info.value).startswith(message) and info.value.param == "gen"


def test_gen_on_the_fly_takes_multiples_and_counts_only():
    assert parse_gen("0.5x", n_real=40, n_gen=None) == 20 and parse_gen("500", n_real=40, n_gen=None) == 500
    with pytest.raises(ParamError, match="gen '50%': with generator give a multiple"):
        parse_gen("50%", n_real=40, n_gen=None)


@pytest.mark.parametrize("value, expected", [(0, 0.0), (1, 1.0), (0.8, 0.8), ("0.5", 0.5), (" 1e-1 ", 0.1)])
def test_alpha_is_a_probability(value, expected):
    assert parse_alpha(value) == expected


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), "nan", "80%", "lots", True])
def test_bad_alpha(value):
    with pytest.raises(ParamError, match="^alpha must be a probability between 0 and 1"):
        parse_alpha(value)
    with pytest.raises(ParamError, match="^alpha must be a probability"):
        plan_mix(n_real=10, n_gen=10, alpha=value, size=5)


def test_param_errors_spell_parameters_for_a_front_end_and_pickle():
    exc = ParamError("alpha", "{alpha} needs {size}, got {text!r}", text="{size}")
    assert str(exc) == "alpha needs size, got '{size}'"  # user text is never read as a template
    assert exc.spelled(lambda name: f"--{name}") == "--alpha needs --size, got '{size}'"
    again = pickle.loads(pickle.dumps(exc))
    assert isinstance(again, ParamError) and str(again) == str(exc) and again.param == "alpha"
    assert isinstance(exc, GalaugError) and isinstance(exc, ValueError)


def test_the_cli_names_its_options(galaug_plugins, make_dataset, tmp_path):
    real, gen = make_dataset(6, name="real.zarr"), make_dataset(6, name="gen.zarr", seed=1)
    mix = ("mix", tmp_path / "m.zarr", "--real-data", real.path)
    assert_user_error(galaug_plugins.invoke(*mix, "--real", "lots"), "--real must be a fraction (0.2)")
    assert_user_error(galaug_plugins.invoke(*mix, "--gen-data", gen.path, "--gen", "5y"),
                      "--gen must be a multiple of the real set (5x), a fraction (0.5) or percentage (50%) of --gen-data")
    assert_user_error(galaug_plugins.invoke(*mix, "--gen-data", gen.path, "--gen", "2x"),
                      "--gen 2x asks for 12 generated images but --gen-data holds 6 (generate more, or use --generator)")
    assert_user_error(galaug_plugins.invoke(*mix, "--gen-data", gen.path, "--alpha", "1.5", "--size", "4"),
                      "--alpha must be a probability between 0 and 1, got 1.5")
    assert_user_error(galaug_plugins.invoke(*mix, "--gen-data", gen.path, "--alpha", "0.5", "--gen", "1x"),
                      "--alpha with --size replaces --real and --gen")
    assert_user_error(galaug_plugins.invoke(*mix, "--real", "12", "--replace"), "--real asks for 12 of 6 samples")
    assert_user_error(galaug_plugins.invoke("split", real.path, "--val", "7"), "--val asks for 7 of 6 samples")
    assert_user_error(galaug_plugins.invoke("split", real.path, "--val", "6"), "--val 6 leaves an empty split of 6")
    assert not list(tmp_path.glob("m.zarr*"))


def test_the_cli_refuses_a_bare_one_and_takes_the_whole_set_or_one_image(galaug_plugins, make_dataset, tmp_path):
    real, gen = make_dataset(6, name="real.zarr"), make_dataset(6, name="gen.zarr", seed=1)
    mix = ("mix", tmp_path / "m.zarr", "--real-data", real.path)
    assert_user_error(galaug_plugins.invoke(*mix, "--real", "1"),
                      "--real 1 is ambiguous: write 1.0 or 100% for the whole set, or '1 image' (n=1) for one image")
    assert_user_error(galaug_plugins.invoke(*mix, "--gen-data", gen.path, "--gen", "1"),
                      "--gen 1 is ambiguous: write 1x for as many as the real set, 1.0 or 100% for all of "
                      "--gen-data, or '1 image' (n=1) for one image")
    assert_user_error(galaug_plugins.invoke("split", real.path, "--val", "1"), "--val 1 is ambiguous")
    assert not list(tmp_path.glob("m.zarr*")) and not list(tmp_path.glob("real-*"))
    for real_share, gen_share, counts in [("1.0", None, (6, 0)), ("100%", "1 image", (6, 1)),
                                          ("1 image", "n=1", (1, 1)), ("n=1", "1x", (1, 6))]:
        extra = ("--gen-data", gen.path, "--gen", gen_share) if gen_share else ()
        result = galaug_plugins.invoke(*mix, "--real", real_share, *extra, "--overwrite")
        assert result.exit_code == 0, result.output
        assert galaug.open_dataset(tmp_path / "m.zarr").origin_counts() == {"real": counts[0], "generated": counts[1]}
