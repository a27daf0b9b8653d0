"""Whether NVDEC decodes (``inference/io/video_reader.py``, ``inference/core/devices.py``): decided from the first
decoded frame, never assumed; its threads fit its surfaces; a software decode is named as such."""

from __future__ import annotations

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
