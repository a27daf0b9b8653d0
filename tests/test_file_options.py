"""``FileOptions``: the per-file options travel typed from ``stylize-video``'s flags through every executor (worker
processes, Ray actors) to ``stylize_file``; the split path changes a copy, never the original."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from inference.app import cli
from inference.app.convert import stylize_file
from inference.app.file_options import FileOptions
from inference.app.split_cli import segment_file_options
from inference.core.errors import OptionError
from inference.io.encode_options import EncodeOptions
from inference.io.trim import TrimOptions

BASE = ["in.mp4", "-m", "m.safetensors", "-o", "out.webm"]


def _parsed(*flags: str) -> FileOptions:
    return cli.file_options_from(cli.build_parser().parse_args([*BASE, *flags]))


def test_the_command_line_becomes_one_file_options():
    file_options = _parsed(
        "--start", "1", "--duration", "2.5", "--size", "64x48", "--fps", "12", "--codec", "h264", "--crf", "23",
        "--preset", "fast", "--pix-fmt", "yuv444p", "--gif-width", "96", "--no-audio", "--overwrite", "--stats",
    )  # fmt: skip
    assert file_options.trim == TrimOptions(start=1.0, duration=2.5, size=(64, 48), fps=12.0)
    assert file_options.encode == EncodeOptions(
        codec="h264", crf=23, preset="fast", pix_fmt="yuv444p", gif_width=96, audio=False
    )
    assert file_options.overwrite is True and file_options.stats is True
    assert _parsed() == FileOptions()  # no flag: the library's defaults, audio copied, nothing replaced


def test_file_options_are_frozen_and_survive_a_pickle():
    file_options = FileOptions(TrimOptions(max_side=64), EncodeOptions(crf=20), overwrite=True, stats=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        file_options.overwrite = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        file_options.encode.crf = 0  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(file_options))  # what a spawned worker and a Ray actor receive
    assert copy == file_options and copy is not file_options


def test_the_split_path_replaces_the_codec_of_a_copy():
    file_options = _parsed("--crf", "30", "--max-side", "64")
    segments = segment_file_options(file_options, Path("out.webm"))
    assert segments.encode.codec == "vp9" and file_options.encode.codec is None  # the original is untouched
    assert dataclasses.replace(segments.encode, codec=None) == file_options.encode
    assert (segments.trim, segments.overwrite) == (file_options.trim, file_options.overwrite)
    assert segment_file_options(_parsed("--codec", "hevc"), Path("out.mp4")).encode.codec == "hevc"
    with pytest.raises(OptionError) as err:
        segment_file_options(_parsed("--start", "1"), Path("out.mp4"))
    assert err.value.field == "split"


def test_build_takes_its_own_fields_and_the_parts_fields_as_a_shorthand():
    base = FileOptions(TrimOptions(start=1.0), EncodeOptions(crf=20))
    built = FileOptions.build(base, crf=23, max_side=64, overwrite=True)
    assert built == FileOptions(TrimOptions(start=1.0, max_side=64), EncodeOptions(crf=23), overwrite=True)
    assert base.encode.crf == 20 and not base.overwrite
    assert FileOptions.build(encode=EncodeOptions(crf=5), preset="fast").encode == EncodeOptions(crf=5, preset="fast")
    assert FileOptions.build(base) is base
    with pytest.raises(OptionError) as err:
        FileOptions.build(crf=99)
    assert err.value.field == "crf"


def test_untyped_options_fail_where_they_are_made():
    with pytest.raises(TypeError, match="unknown FileOptions field 'crff'"):
        FileOptions.build(crff=23)
    with pytest.raises(TypeError, match="expected FileOptions options, got dict"):
        FileOptions.build({"encode": EncodeOptions()})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FileOptions.encode: expected EncodeOptions, got dict"):
        FileOptions(encode={"crf": 20})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FileOptions.trim: expected TrimOptions, got NoneType"):
        FileOptions(trim=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected FileOptions options, got dict"):
        stylize_file(object(), "in.mp4", "out.mp4", {"crf": 20})  # type: ignore[arg-type]
