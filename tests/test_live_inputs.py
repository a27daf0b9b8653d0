"""Live inputs and outputs that misbehave: silent, half-open, garbage, stalled mid-stream, a sink that takes nothing.

Each gives one line naming the input or output and what did not arrive or could not be written, within a bounded
time, and never a library message ('utf-8' codec, "Immediate exit requested") or a traceback. Timeouts are shortened
through the public module constants so the tests wait a second, not fifteen.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

import inference.app.live as live
import inference.io.live_io as live_io
from inference.app.cli import main
from inference.core.errors import MediaError

FPS = 25


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def send_udp(port: int, payload: bytes, stop: threading.Event, delay: float = 0.3) -> None:
    """Send ``payload`` in 1316-byte datagrams, over and over, until ``stop`` (after ``delay``)."""

    def loop() -> None:
        time.sleep(delay)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.is_set():
                for i in range(0, len(payload), 1316):
                    s.sendto(payload[i : i + 1316], ("127.0.0.1", port))
                    time.sleep(0.001)

    threading.Thread(target=loop, daemon=True).start()


def send_stream(port: int, seconds: float) -> threading.Thread:
    """A paced 25 frames/s H.264 MPEG-TS stream over UDP for ``seconds``, then silence (the sender stalls)."""

    def loop() -> None:
        import av

        ramp = np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (64, 1, 3))
        with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", mode="w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            stream.options = {"tune": "zerolatency", "preset": "ultrafast"}
            stream.codec_context.gop_size = 5
            t0 = time.monotonic()
            for i in range(int(seconds * FPS)):
                time.sleep(max(0.0, t0 + i / FPS - time.monotonic()))
                frame = av.VideoFrame.from_ndarray(np.roll(ramp, 2 * i, axis=1), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def id3_with_bad_utf8() -> bytes:
    """An MP3 whose ID3 title claims UTF-8 but is not: PyAV used to fail decoding it ('utf-8' codec ...)."""
    text = b"\x03\xff\xfe\xc3(bad"
    frame = b"TIT2" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    size = bytes((len(frame) >> s) & 127 for s in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + size + frame + (b"\xff\xfb\x90\x64" + b"\x00" * 413) * 40


def test_a_silent_udp_input_says_nothing_arrived_and_where(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(live_io, "OPEN_TIMEOUT", 1.0)
    port = free_udp_port()
    t0 = time.monotonic()
    code = run([f"udp://127.0.0.1:{port}", "-m", str(model), "-o", str(tmp_path / "o.mkv"), "--backend", "torch"])
    assert code == 2 and time.monotonic() - t0 < 5
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: no stream arrived on udp://127.0.0.1:{port} in 1 s (is the sender running, and sending to that "
        "address?)"
    )
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))


def test_a_half_open_tcp_input_times_out_with_one_line(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(live_io, "OPEN_TIMEOUT", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        code = run([url, "-m", str(model), "-o", str(tmp_path / "o.mkv"), "--backend", "torch"])
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: no stream arrived on {url} in 1 s")


@pytest.mark.slow  # FFmpeg probes random bytes for several seconds before it gives up
@pytest.mark.parametrize("garbage", ["random", "id3"])
def test_garbage_on_the_udp_port_is_one_line_not_a_codec_message(model, tmp_path, capsys, garbage):
    port = free_udp_port()
    payload = np.random.default_rng(0).bytes(200_000) if garbage == "random" else id3_with_bad_utf8()
    stop = threading.Event()
    send_udp(port, payload, stop)
    try:
        code = run([f"udp://127.0.0.1:{port}", "-m", str(model), "-o", str(tmp_path / "o.mkv"), "--backend", "torch"])
    finally:
        stop.set()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "codec" not in err and "Traceback" not in err and "Immediate exit" not in err, err
    if garbage == "random":
        assert err.startswith(f"error: udp://127.0.0.1:{port}: what arrived is not a stream FFmpeg can read ("), err
    if garbage == "id3":  # Opened as an MP3 (its bad title replaced): there is no picture in it.
        assert err == f"error: udp://127.0.0.1:{port}: no video stream"


@pytest.mark.slow  # a real-time stream of a second, then a one-second read timeout
def test_a_stream_that_stalls_mid_run_keeps_the_frames_so_far(model, tmp_path, capsys, monkeypatch):
    import av

    monkeypatch.setattr(live_io, "READ_TIMEOUT", 1.0)
    port = free_udp_port()
    timer = threading.Timer(1.0, send_stream, (port, 1.0))
    timer.start()
    out = tmp_path / "o.mkv"
    assert run([f"udp://127.0.0.1:{port}", "-m", str(model), "-o", str(out), "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert f"warning: udp://127.0.0.1:{port}: nothing arrived for 1 s after" in err, err
    assert "taking the stream as ended" in err
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) >= 10


@pytest.mark.slow  # a real-time stream of a second and a reader that must be ended from outside
def test_close_ends_and_joins_a_reader_waiting_for_packets(monkeypatch):
    monkeypatch.setattr(live_io, "READ_TIMEOUT", 30.0)
    port = free_udp_port()
    threading.Timer(0.5, send_stream, (port, 1.0)).start()
    source = live_io.LiveSource(live_io.LiveInput(f"udp://127.0.0.1:{port}", None, "stream"))
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(1 for _ in source.frames()), daemon=True)
    reader.start()
    time.sleep(2.5)  # the sender has stopped: the reader waits for a packet that will not come (30 s timeout)
    assert reader.is_alive() and got
    t0 = time.monotonic()
    source.close()  # must end the wait and join the reader before the container closes
    assert not reader.is_alive() and time.monotonic() - t0 < 2.0


class FakeStylizer:
    """Passes frames through (``process`` is the Stylizer's contract: an iterable of (frame, seconds) in and out)."""

    batch_size = 1

    def process(self, items):
        yield from items


class FakeSource:
    width, height, rate = 8, 8, Fraction(25)

    def __init__(self, times) -> None:
        self.times, self.stopped = times, False

    def frames(self):
        for t in self.times:
            if self.stopped:
                return
            yield np.zeros((8, 8, 3), np.uint8), t

    def interrupt(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass


class StuckSink:
    """A sink whose receiver stopped reading: every write blocks."""

    target = "tcp://127.0.0.1:9"

    def __init__(self) -> None:
        self.frames, self.release, self.closed = 0, threading.Event(), False

    def write(self, array, seconds) -> None:
        self.release.wait()

    def close(self) -> None:
        self.closed = True


def test_a_sink_that_takes_nothing_ends_the_run_with_one_line(monkeypatch):
    monkeypatch.setattr(live, "WRITE_TIMEOUT", 0.3)
    sink = StuckSink()
    t0 = time.monotonic()
    with pytest.raises(MediaError, match=r"^tcp://127.0.0.1:9: the output took nothing for 0.3 s"):
        live.stylize_live(FakeStylizer(), FakeSource([i / FPS for i in range(100)]), sink, pace=False, drop=False)
    assert time.monotonic() - t0 < 2.0
    assert not sink.closed  # never closed under a write still inside it
    sink.release.set()


def test_a_timestamp_jump_does_not_stall_a_paced_input():
    sink = FakeSink()
    t0 = time.monotonic()
    times = [0.0, 0.04, 3600.0, 3600.04]  # a sender restarted with a clock an hour ahead
    result = live.stylize_live(FakeStylizer(), FakeSource(times), sink, pace=True, drop=False)
    assert result.written == 4 and time.monotonic() - t0 < 1.5


class FakeSink:
    target = "out.ts"

    def __init__(self) -> None:
        self.frames = 0

    def write(self, array, seconds) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


def test_a_refused_stream_output_is_one_line(model, make_video, tmp_path, capsys):
    clip = make_video(tmp_path / "clip.mp4", n_frames=4, size=(32, 32), fps=25, audio=False)
    code = run([str(clip), "-m", str(model), "-o", "tcp://127.0.0.1:1", "--realtime", "--backend", "torch"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: tcp://127.0.0.1:1: cannot write (Connection refused)", err
    assert len(err.splitlines()) == 1
