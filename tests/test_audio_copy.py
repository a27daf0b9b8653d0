"""Audio passthrough with a cut: only the packets around the cut are read, and the copied ones are exact."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from inference.io.audio import AudioCopier

RATE = 8000  # AAC frames hold 1024 samples: 7.8 packets per second keeps a long track cheap to make.


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory) -> Path:
    """A 120 s mono AAC track (a 440 Hz tone) in an .m4a file."""
    path = tmp_path_factory.mktemp("audio") / "long.m4a"
    t = np.arange(120 * RATE, dtype=np.float32) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=RATE)
        stream.layout = "mono"
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def _packets(path: Path, lo: float = -1.0, hi: float = float("inf")) -> list[bytes]:
    with av.open(str(path)) as c:
        tb = c.streams.audio[0].time_base
        return [bytes(p) for p in c.demux(audio=0) if p.size and lo - 1e-9 <= float(p.pts * tb) < hi - 1e-9]


def _copy(src: Path, dst: Path, **kwargs) -> AudioCopier:
    with av.open(str(dst), "w") as out:
        copier = AudioCopier(src, out, **kwargs)
        copier.copy_until()
        copier.close()
    return copier


@pytest.mark.parametrize(("origin", "end", "trim"), [(0.0, 2.0, False), (90.0, 92.0, True)])
def test_cut_reads_only_around_the_cut(tmp_path, long_audio, origin, end, trim):
    total = len(_packets(long_audio))
    copier = _copy(long_audio, tmp_path / "cut.mka", origin=origin, end=end, trim=trim)
    kept = _packets(long_audio, origin if trim else -1.0, end)
    assert copier.copied == len(kept) > 0
    assert _packets(tmp_path / "cut.mka") == kept  # the same packets, not re-encoded
    # Reading stops at the first packet past the end, and a cut deep into the file seeks instead of reading the head
    # (within the one-second seek margin: 8 packets at this rate).
    assert copier.demuxed <= len(kept) + 10 < total // 4


def test_no_end_copies_everything(tmp_path, long_audio):
    copier = _copy(long_audio, tmp_path / "all.mka")
    assert copier.copied == copier.demuxed == len(_packets(long_audio))


def test_a_failing_constructor_closes_the_audio_input(long_audio, monkeypatch):
    opened = []

    class Tracked:
        """Delegates to the real input container and records whether it was closed."""

        def __init__(self, container) -> None:
            self.container, self.closed = container, False

        def __getattr__(self, name):
            return getattr(self.container, name)

        def close(self) -> None:
            self.closed = True
            self.container.close()

    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(Tracked(real_open(*a, **k))) or opened[-1])

    class BrokenOutput:
        supported_codecs = None

        def add_stream_from_template(self, stream):
            raise RuntimeError("muxer refused the stream")

    with pytest.raises(RuntimeError, match="muxer refused"):
        AudioCopier(long_audio, BrokenOutput())
    assert len(opened) == 1 and opened[0].closed
