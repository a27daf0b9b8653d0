"""Whether NVDEC decodes (``inference/io/video_reader.py``, ``inference/core/devices.py``): decided from the first
decoded frame, never assumed; its threads fit its surfaces; a software decode is named as such; on a GPU (marker
``gpu``), a real NVDEC decode."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import fake_hwaccel_opens


def test_nvdec_is_decided_from_the_first_frame_not_from_the_request(monkeypatch, tmp_path, make_video):
    from inference.io.video_reader import VideoSource, decoded_on_nvdec

    # A hardware device attached, but the software decoder produced the frame: not NVDEC.
    assert not decoded_on_nvdec(True, "yuv420p", "yuv420p")
    assert decoded_on_nvdec(True, "cuda", "nv12") and decoded_on_nvdec(True, "cuda", "cuda")
    assert not decoded_on_nvdec(False, "cuda", "nv12")
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    asked = fake_hwaccel_opens(monkeypatch, decode_on_hw=True)  # NVDEC asked for, software frames out
    source = VideoSource(clip)
    source.close()
    assert len(asked) == 1 and source.decoder == "h264 (software, auto threads)"


def test_nvdec_decoder_threads_keep_surfaces_within_32(monkeypatch, unbound):
    from inference.core import devices

    monkeypatch.setattr(devices.os, "cpu_count", lambda: 64)
    assert devices.decoder_threads(nvdec=True) + 16 + 2 <= devices.NVDEC_MAX_SURFACES
    assert devices.decoder_threads(nvdec=False) == 0  # software outside a pool: FFmpeg's automatic count


def test_a_software_decode_is_named_software(tmp_path, make_video, caplog):
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=4, audio=False)
    with caplog.at_level("INFO", logger="inference.io.video_reader"):
        source = VideoSource(clip)
    try:
        # No GPU here: whether or not FFmpeg has CUDA, the log names the path that really decoded.
        assert "software" in source.decoder and "NVDEC" not in caplog.text
        assert len(list(source.frames())) == 4
    finally:
        source.close()


@pytest.mark.gpu
def test_nvdec_decodes_on_cuda_and_matches_the_software_decode(tmp_path, make_video):
    av_hw = pytest.importorskip("av.codec.hwaccel")
    if "cuda" not in av_hw.hwdevices_available():
        pytest.skip("this FFmpeg build has no CUDA hwaccel")
    from inference.core.devices import NVDEC_MAX_THREADS
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=12, size=(1920, 1080), audio=False)
    source = VideoSource(clip, planes=True)
    try:
        assert "NVDEC" in source.decoder, source.decoder  # really decoded there (the first frame says so)
        assert source.stream.codec_context.thread_count <= NVDEC_MAX_THREADS
        gpu = [f.array.astype(int) for f in source.frames()]
    finally:
        source.close()
    soft = VideoSource(clip, planes=True, hwaccel=False)
    try:
        cpu = [f.array.astype(int) for f in soft.frames()]
    finally:
        soft.close()
    assert len(gpu) == len(cpu) == 12 and max(np.abs(a - b).max() for a, b in zip(gpu, cpu, strict=True)) <= 2
