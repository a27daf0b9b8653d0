"""A minimal progress bar on stderr (frames, frames/s, ETA), so that the runtime does not depend on tqdm."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Report ``done/total frames, fps, ETA`` on one refreshed line.

    Args:
        total: Expected number of frames, or ``None`` when unknown (no percentage or ETA then).
        enabled: ``False`` makes every method a no-op (``--quiet``).
        stream: Where to write; stderr by default so that stdout stays clean for pipes.
        interval: Minimum seconds between refreshes.
    """

    def __init__(
        self, total: int | None, *, enabled: bool = True, stream: TextIO | None = None, interval: float = 0.25
    ) -> None:
        self.total = total if total and total > 0 else None
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        # A file or a pipe gets no carriage-return animation, only the final summary.
        self._live = enabled and getattr(self.stream, "isatty", lambda: False)()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished frames and refresh the line if enough time has passed."""
        self.done += n
        now = time.perf_counter()
        if self._live and now - self._last >= self.interval:
            self._last = now
            self.stream.write("\r" + self._line(now) + "\033[K")
            self.stream.flush()

    def close(self, message: str | None = None) -> None:
        """Finish the bar with a summary line (``message`` replaces the default one)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        line = message or f"{self.done} frames in {now - self.start:.1f}s ({self.rate(now):.1f} frames/s)"
        self.stream.write(("\r" if self._live else "") + line + ("\033[K" if self._live else "") + "\n")
        self.stream.flush()

    def rate(self, now: float | None = None) -> float:
        """Frames per second since the start."""
        elapsed = (now or time.perf_counter()) - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _line(self, now: float) -> str:
        fps = self.rate(now)
        if self.total is None:
            return f"{self.done} frames | {fps:.1f} fps"
        pct = 100.0 * self.done / self.total
        eta = (self.total - self.done) / fps if fps > 0 else float("inf")
        eta_text = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta != float("inf") else "?"
        width = 24
        filled = min(width, int(width * self.done / self.total))
        bar = "#" * filled + "." * (width - filled)
        return f"{pct:3.0f}% |{bar}| {self.done}/{self.total} | {fps:.1f} fps | ETA {eta_text}"
