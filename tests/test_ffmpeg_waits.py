"""Cancellable FFmpeg waits (inference/io/ffmpeg_waits.py): a cancel ends only the waits of the thread it was made
for, and a late cancel (a stop racing the thread's own end) never leaks into a later thread with the same id."""

from __future__ import annotations

import threading

import av.container.core as core
import pytest

from inference.io.ffmpeg_waits import cancellable, installed


@pytest.fixture(autouse=True)
def _hook():
    assert installed()


def _in_thread(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()))
    thread.start()
    thread.join(10)
    return result["value"]


def _clock_leaps() -> bool:
    """Whether PyAV's clock, read twice by this thread, jumps far ahead (a cancelled thread's view)."""
    first = core.time.monotonic()
    return core.time.monotonic() - first > 1e6


def test_a_cancelled_thread_sees_its_waits_end_and_others_do_not():
    def cancelled_inside():
        with cancellable() as waits:
            waits.cancel()
            return _clock_leaps(), waits.cancelled

    assert _in_thread(cancelled_inside) == (True, True)
    assert not _clock_leaps()


def test_a_cancel_after_the_block_does_not_mark_the_id_for_the_next_thread():
    def leave():
        with cancellable() as waits:
            pass
        return waits

    late = _in_thread(leave)
    late.cancel()  # the stop arrives after the reader already finished
    assert late.cancelled
    # The same id in a later thread (here: this very thread's id, marked as the late cancel would have marked it).
    with cancellable() as mine:
        late.ident = mine.ident
        late.cancel()
        assert not _clock_leaps()
    assert not _clock_leaps()
