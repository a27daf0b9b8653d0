"""Cancellable FFmpeg waits: end, at once, a thread blocked opening or reading a live input.

FFmpeg's blocking calls (``avformat_open_input``, ``av_read_frame``) poll an interrupt callback about every 100 ms.
PyAV's callback only compares ``time.monotonic()`` with the container's timeout, and gives Python no other way in:
a thread waiting on a silent stream stays blocked for the whole timeout, and a process that closes the container
under it, or exits, crashes. So PyAV's callback is handed a clock that answers "the timeout has passed"
to the threads that were cancelled; every other thread sees the real clock. A cancelled call then returns
``AVERROR_EXIT`` (PyAV's ``ExitError``) within one poll, and its thread can be joined before anything closes.

The clock is only consulted by input containers opened with a ``timeout`` (live inputs); output containers and
files without a timeout never call it. Whether the hook is in place is checked (:func:`installed`), and the tests
cancel a real open, so a PyAV release that changes the callback fails a test rather than hanging a user's run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Each call of the cancelled threads' clock is this much later than the last: later than any timeout's end.
_LEAP = 1e9


class _Clock:
    """Stands for the ``time`` module inside ``av.container.core``: real time, except for cancelled threads."""

    def __init__(self, real) -> None:
        self._real = real
        self._cancelled: set[int] = set()
        self._leap = 0.0

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def monotonic(self) -> float:
        now = self._real.monotonic()
        if threading.get_ident() not in self._cancelled:
            return now
        # PyAV records a start with this clock before each read and compares it with a later reading: a reading
        # that leaps ahead each time is always past "start + timeout", however the two are ordered.
        self._leap += _LEAP
        return now + self._leap


_lock = threading.Lock()
_clock: _Clock | None = None


def _install() -> _Clock | None:
    global _clock
    with _lock:
        if _clock is None:
            try:
                import av.container.core as core
            except ImportError:
                return None
            real = getattr(core, "time", None)
            if real is None or not hasattr(real, "monotonic"):
                return None  # A PyAV whose callback reads no ``time`` global: timeouts still bound every wait.
            _clock = real if isinstance(real, _Clock) else _Clock(real)
            core.time = _clock
        return _clock


def installed() -> bool:
    """Whether FFmpeg waits can be cancelled (the hook is in place in this PyAV)."""
    return _install() is not None


class Waits:
    """One thread's FFmpeg waits (from :func:`cancellable`); :meth:`cancel` may be called from any thread."""

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.cancelled = False
        self.active = True  # False once the thread has left its ``cancellable()`` block

    def cancel(self) -> None:
        """End the thread's current and later FFmpeg waits (each returns ``ExitError`` within about 100 ms).

        A no-op for FFmpeg once the thread has left its block: its id may already belong to another thread.
        """
        self.cancelled = True
        clock = _install()
        if clock is not None:
            with _lock:
                if self.active:
                    clock._cancelled.add(self.ident)


@contextmanager
def cancellable() -> Iterator[Waits]:
    """Within the block, the current thread's FFmpeg waits can be ended by the handle's :meth:`Waits.cancel`."""
    _install()
    waits = Waits(threading.get_ident())
    try:
        yield waits
    finally:
        # The thread's id may be reused by a later thread, which must see the real clock: leave for good, so that
        # a cancel arriving after this point (a stop racing the thread's own end) cannot mark the id again.
        with _lock:
            waits.active = False
            if _clock is not None:
                _clock._cancelled.discard(waits.ident)


def wait_for(thread: threading.Thread, seconds: float) -> bool:
    """Join ``thread`` for up to ``seconds`` in short steps (signals stay prompt); whether it has ended."""
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
    return not thread.is_alive()
