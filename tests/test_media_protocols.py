"""Readers and writers declare the media protocols, so file conversion uses their attributes without probing."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from inference.core.stages import StageClock
from inference.io.gif_writer import GifSink
from inference.io.image_reader import ImageSequenceSource
from inference.io.live_io import LiveSink, LiveSource
from inference.io.protocols import Sink, Source, StreamSink, StreamSource
from inference.io.readers import open_source
from inference.io.video_reader import VideoSource
from inference.io.video_writer import VideoSink
from inference.io.writers import FolderSink, ImageSink

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cls", "protocol"),
    [
        (VideoSource, Source),
        (ImageSequenceSource, Source),
        (VideoSink, Sink),
        (GifSink, Sink),
        (FolderSink, Sink),
        (ImageSink, Sink),
        (LiveSource, StreamSource),
        (LiveSink, StreamSink),
    ],
)
def test_every_reader_and_writer_declares_its_protocol(cls, protocol):
    assert protocol in cls.__mro__


def test_convert_calls_sources_and_sinks_without_probing_them():
    tree = ast.parse((ROOT / "inference" / "app" / "convert.py").read_text())
    probes = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
    ]
    assert not probes, f"inference/app/convert.py probes attributes at lines {probes}"


def test_an_image_folder_source_has_every_source_attribute_and_times_its_decoding(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"f{i}.png")
    source = open_source(tmp_path)
    assert (source.planes, source.decoder) == (False, None)
    clock = StageClock()
    frames = list(source.frames(clock=clock))
    assert [f.array.shape for f in frames] == [(6, 8, 3)] * 3 and [f.pts for f in frames] == [0, 1, 2]
    assert clock.busy["decode"] > 0
    assert source.truncation_warning() is None
    source.close()


def test_rgb_only_sinks_say_so_and_refuse_planes(tmp_path):
    source = open_source(_one_image(tmp_path))
    sink = FolderSink(tmp_path, source.info)
    assert sink.yuv_spec is None
    with pytest.raises(TypeError, match="RGB frames only"):
        sink.write_planes(np.zeros((9, 8), np.uint8), 0)


def _one_image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "one.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(path)
    return path
