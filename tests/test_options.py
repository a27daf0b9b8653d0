"""Typed options (``RuntimeOptions``, ``TrimOptions``, ``EncodeOptions``): each default, range and choice is written
once, in the dataclass; a bad value fails where the options are made, naming the field; the command lines build their
arguments from the same fields and the dataclasses from the parsed flags."""

from __future__ import annotations

import argparse
import dataclasses
import re

import numpy as np
import pytest
import torch
from torch import nn

from inference.app import cli
from inference.app.argtypes import flag
from inference.app.file_options import FileOptions
from inference.core.errors import OptionError, UserError, exit_on_user_error
from inference.core.option_fields import option_fields, spec_of, value_from_text
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.io.encode_options import EncodeOptions
from inference.io.trim import TrimOptions
from inference.serve import cli as serve_cli

OPTION_CLASSES = (RuntimeOptions, TrimOptions, EncodeOptions, FileOptions)

BAD_VALUES = [
    (RuntimeOptions, "strength", 1.5),
    (RuntimeOptions, "strength", float("nan")),
    (RuntimeOptions, "consistency", -0.1),
    (RuntimeOptions, "stroke_scale", 0.2),
    (RuntimeOptions, "stroke_scale", float("inf")),
    (RuntimeOptions, "batch_size", 0),
    (RuntimeOptions, "batch_size", 257),
    (RuntimeOptions, "batch_size", 2.0),
    (RuntimeOptions, "precision", "fp8"),
    (RuntimeOptions, "backend", "tensorrt"),
    (RuntimeOptions, "stroke_detail", "sharp"),
    (RuntimeOptions, "compile", "fastest"),
    (TrimOptions, "start", -1.0),
    (TrimOptions, "duration", 0.0),
    (TrimOptions, "fps", 0.0),
    (TrimOptions, "fps", 2000.0),
    (TrimOptions, "max_side", 1),
    (TrimOptions, "size", (0, 10)),
    (TrimOptions, "size", (100000, 100000)),
    (TrimOptions, "size", (64.5, 10)),
    (EncodeOptions, "crf", 64),
    (EncodeOptions, "crf", True),
    (EncodeOptions, "gif_fps", 0.001),
    (EncodeOptions, "gif_width", 0),
]


@pytest.mark.parametrize(("cls", "field", "value"), BAD_VALUES, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_a_bad_value_fails_where_the_options_are_made_naming_the_field(cls, field, value):
    with pytest.raises(OptionError) as err:
        cls(**{field: value})
    assert err.value.field == field and str(err.value).startswith(f"{field} must be"), str(err.value)
    assert "--" not in str(err.value) and "\n" not in str(err.value)
    # The same check guards a changed copy: frozen options change only through replace(), which checks again.
    with pytest.raises(OptionError):
        dataclasses.replace(cls(), **{field: value})


def test_edges_and_none_are_accepted_and_whole_numbers_become_floats():
    low, high = (spec_of(option_fields(RuntimeOptions)["stroke_scale"]).low, 4)
    assert RuntimeOptions(stroke_scale=low).stroke_scale == low and RuntimeOptions(stroke_scale=high).stroke_scale == 4
    assert RuntimeOptions(strength=0).strength == 0.0 and isinstance(RuntimeOptions(strength=1).strength, float)
    assert RuntimeOptions(batch_size=256, compile="reduce-overhead").batch_size == 256
    assert TrimOptions(start=0, size=[640, 360]).size == (640, 360)
    assert TrimOptions() == TrimOptions(start=None, duration=None, size=None, max_side=None, fps=None)
    with pytest.raises(TypeError):
        RuntimeOptions.build(None, strenght=0.5)  # a misspelt field is a programming error, not a user's
    with pytest.raises(TypeError, match="expected RuntimeOptions options, got dict"):
        Stylizer(nn.Identity(), {"device": "cpu"})  # the keyword dicts of old: one line saying what to pass
    assert TrimOptions.build(TrimOptions(start=1.0), fps=12) == TrimOptions(start=1.0, fps=12.0)


BASE = ["in.mp4", "-m", "m.safetensors", "-o", "out.mp4"]


def _parses(parser: argparse.ArgumentParser, *args: str) -> argparse.Namespace | None:
    """The namespace, or ``None`` when the parser refuses the arguments (one ``error:`` line, exit status 2, as
    ``stylize-video``'s main reports it)."""
    try:
        return exit_on_user_error(parser.parse_args)([*BASE, *args])
    except SystemExit as exc:
        assert exc.code == 2
        return None


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_stylize_video_arguments_come_from_the_dataclass_fields(cls, capsys):
    """Change detector: every flag that carries a field has that field's default (or the command's documented
    override), choices and range; changing a dataclass changes the command line, and nothing else has to."""
    parser = cli.build_parser()
    for name, item in option_fields(cls).items():
        spec, option = spec_of(item), flag(name)
        if name == "audio":  # --no-audio: the command line's negated switch for EncodeOptions.audio
            assert item.default is True and _parses(parser, "--no-audio").no_audio is True
            continue
        assert parser.get_default(name) == cli.CLI_DEFAULTS.get(name, item.default), name
        if item.default is False:  # a switch
            assert getattr(_parses(parser, option), name) is True, name
            continue
        for choice in spec.choices or ():
            assert getattr(_parses(parser, f"{option}={choice}"), name) == choice, name
        if spec.choices:
            assert _parses(parser, f"{option}=bogus") is None, name
        if spec.kind is None:
            continue
        for bound in (spec.low, spec.high):
            if bound is not None and not (bound == spec.low and spec.low_open):
                assert getattr(_parses(parser, f"{option}={spec.kind(bound)!r}"), name) == bound, name
        outside = spec.low - 1 if spec.low is not None else spec.high + 1
        assert _parses(parser, f"{option}={spec.kind(outside)!r}") is None, name
        assert f"argument {option}: must be {spec.range_text().removesuffix(' ' + spec.unit).strip()}" in (
            capsys.readouterr().err
        ), name


def test_the_help_text_shows_each_field_help_and_the_command_line_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in OPTION_CLASSES:
        for name, item in option_fields(cls).items():
            if name != "audio":
                assert flag(name) in text and " ".join(spec_of(item).help.split()) in text, name
    assert f"default {cli.DEFAULT_CONSISTENCY:g}" in text  # stylize-video's own default, not the API's 0


def test_parsed_flags_become_the_dataclasses():
    opts = cli.build_parser().parse_args(
        ["in.mp4", "-m", "m.safetensors", "-o", "out.mp4", "--strength", "0.5", "--stroke-scale", "2", "--start",
         "1.5", "--max-side", "64", "--crf", "20", "--no-audio", "--device", "cpu", "--compile"]
    )  # fmt: skip
    runtime_options = cli.runtime_options_from(opts)
    assert runtime_options == RuntimeOptions(
        device="cpu", strength=0.5, stroke_scale=2.0, compile=True, consistency=cli.DEFAULT_CONSISTENCY
    )
    file_options = cli.file_options_from(opts)
    assert file_options == FileOptions(TrimOptions(start=1.5, max_side=64), EncodeOptions(crf=20, audio=False))
    served = serve_cli.build_parser().parse_args(["-m", "x", "--batch-size", "4", "--backend", "torch"])
    assert serve_cli.runtime_options(served) == RuntimeOptions(batch_size=4, backend="torch")


class _Zero(nn.Module):
    """A network that paints every pixel black: strength blends towards the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0


def test_stylizer_takes_runtime_options_and_changes_the_live_ones():
    image = np.full((8, 8, 3), 200, np.uint8)
    stylizer = Stylizer(_Zero(), RuntimeOptions(device="cpu", strength=0.5, backend="torch"))
    assert stylizer.options.strength == 0.5 and stylizer.options.strength == 0.5
    assert np.abs(stylizer.image(image).astype(int) - 100).max() <= 1  # half way from black to the input
    assert Stylizer(_Zero(), options=None).options == RuntimeOptions()
    stylizer.update(strength=0.0)
    assert np.array_equal(stylizer.image(image), image)
    with pytest.raises(OptionError, match="^strength must be in"):
        stylizer.update(strength=2)
    assert stylizer.options.strength == 0.0  # a refused change changes nothing
    with pytest.raises(TypeError, match="device cannot change"):
        stylizer.update(device="cpu")
    with pytest.raises(UserError, match="unknown style"):
        stylizer.update(style="nosuch", strength=1.0)
    assert stylizer.options.style is None and stylizer.options.strength == 0.0  # nothing changed


def test_from_artifact_fields_are_a_shorthand_for_the_options(model):
    given = RuntimeOptions(device="cpu", backend="torch", strength=0.25, stroke_scale=2.0)
    by_fields = Stylizer.from_artifact(model, device="cpu", backend="torch", strength=0.25, stroke_scale=2.0)
    by_options = Stylizer.from_artifact(model, given)
    over = Stylizer.from_artifact(model, given, strength=1.0)
    assert by_fields.options == by_options.options == given and over.options == dataclasses.replace(given, strength=1)
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    assert np.array_equal(by_fields.image(image), by_options.image(image))


def test_server_controls_use_the_runtime_ranges(model):
    pytest.importorskip("fastapi")
    from inference.serve.catalog import Catalog

    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    with pytest.raises(UserError, match=r"stroke_scale: must be in \[0.25, 4\], got '5'"):
        catalog.controls({"stroke_scale": "5"})
    with pytest.raises(UserError, match="stroke_detail: must be one of none, guided, got 'sharp'"):
        catalog.controls({"stroke_detail": "sharp"})
    with pytest.raises(UserError, match="preserve_color: expected true or false, got 'maybe'"):
        catalog.controls({"preserve_color": "maybe"})
    controls = catalog.controls({"strength": "0.5", "consistency": "1", "preserve_color": "on", "style": " "})
    assert controls.live() == {
        "strength": 0.5,
        "preserve_color": True,
        "consistency": 1.0,
        "stroke_scale": 1.0,
        "stroke_detail": "none",
        "style": None,
    }
    # The server's own options (device, backend) travel with the controls; the live ones come from the request.
    assert controls.options == dataclasses.replace(catalog.options, strength=0.5, consistency=1.0, preserve_color=True)


def test_one_text_parser_reads_every_kind_of_field():
    fields = option_fields(RuntimeOptions)
    assert value_from_text(fields["strength"], " 0.25") == 0.25 and value_from_text(fields["batch_size"], 4) == 4
    assert value_from_text(fields["channels_last"], "Yes") is True
    assert value_from_text(fields["channels_last"], "") is False
    assert value_from_text(fields["style"], "") is None and value_from_text(fields["style"], "a:1") == "a:1"
    for name, text, phrase in [
        ("strength", "abc", "expected a number, got 'abc'"),
        ("strength", "nan", "must be a finite number"),
        ("strength", True, "expected a number, got True"),
        ("batch_size", "1.5", "expected an integer, got '1.5'"),
        ("batch_size", "0", "must be in [1, "),
        ("stroke_detail", "", "must be one of none, guided, got ''"),
    ]:
        with pytest.raises(ValueError, match=re.escape(phrase)):
            value_from_text(fields[name], text)


def test_applying_controls_changes_only_the_live_fields_that_differ(model):
    pytest.importorskip("fastapi")
    from inference.serve.catalog import Catalog, apply_controls

    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    stylizer = catalog.load(catalog.default)
    calls = []
    update = stylizer.update
    stylizer.update = lambda **changes: (calls.append(changes), update(**changes))
    apply_controls(stylizer, catalog.controls({"strength": "0.5"}))
    apply_controls(stylizer, catalog.controls({"strength": "0.5"}))  # nothing differs: no update
    apply_controls(stylizer, catalog.controls({"strength": "0.5", "stroke_scale": "2"}))
    assert calls == [{"strength": 0.5}, {"stroke_scale": 2.0}]
    assert stylizer.options.strength == 0.5 and stylizer.options.stroke_scale == 2.0
    assert not any("controls" in name for name in vars(stylizer))  # nothing pinned on the Stylizer
