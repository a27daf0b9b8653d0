"""Stage accounting: how long each stage of the video pipeline was busy, and which stage bounds the run.

Stages run concurrently (decode and encode in their own threads, device work asynchronously), so busy times add up
to more than the wall-clock time; the stage with the largest busy time is the one that bounds the run. Device stages
on CUDA are timed with CUDA events by the :class:`~inference.engine.stylizer.Stylizer`; host stages with
``perf_counter``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# In data-flow order. "colour" is YUV -> RGB (on the host when swscale does it, else on the device); "colour back" is
# RGB -> YUV for the encoder. "flow" (input motion, in its own thread beside the network) and "consistency" (carrying
# the previous output along it) are busy only with --consistency.
STAGES = ("decode", "colour", "flow", "upload", "network", "download", "colour back", "consistency", "encode", "mux")


class StageClock:
    """Thread-safe accumulator of busy seconds per stage.

    Attributes:
        busy: Seconds each stage spent working, keyed by the names in :data:`STAGES`.
        frames: Frames that went through the pipeline.
        notes: What ran in a stage, by stage name (``notes["flow"]``: which optical flow); printed under the table.
    """

    def __init__(self) -> None:
        self.busy: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.frames = 0
        self.notes: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` of busy time to ``stage`` (one of :data:`STAGES`)."""
        if stage not in self.busy:
            raise KeyError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        with self._lock:
            self.busy[stage] += float(seconds)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the body of a ``with`` block as busy time of ``stage`` (host work only)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def timed(self, items: Iterable[T], stage: str) -> Iterator[T]:
        """Iterate ``items``, counting the time spent producing each one as busy time of ``stage``."""
        it = iter(items)
        done = object()
        while True:
            with self.time(stage):
                item = next(it, done)
            if item is done:
                return
            yield item

    def count(self, frames: int = 1) -> None:
        """Count frames that completed the pipeline."""
        with self._lock:
            self.frames += frames

    def bound(self) -> str:
        """The stage with the largest busy time: the one that limits throughput."""
        return max(self.busy, key=lambda s: self.busy[s])

    def table(self, wall_seconds: float) -> str:
        """A plain-text table: per stage its busy seconds, ms per frame, share of the wall-clock time and the
        frames/s it could sustain alone; then the bounding stage.

        Args:
            wall_seconds: Wall-clock duration of the whole run.
        """
        n = max(self.frames, 1)
        lines = [f"{'stage':<12} {'busy s':>8} {'ms/frame':>9} {'% of wall':>9} {'alone fps':>10}"]
        for stage in STAGES:
            busy = self.busy[stage]
            alone = f"{n / busy:10.1f}" if busy > 0 else f"{'-':>10}"
            share = 100.0 * busy / wall_seconds if wall_seconds > 0 else 0.0
            lines.append(f"{stage:<12} {busy:8.3f} {1000 * busy / n:9.2f} {share:9.1f} {alone}")
        fps = self.frames / wall_seconds if wall_seconds > 0 else 0.0
        lines.append(f"{'wall':<12} {wall_seconds:8.3f} {1000 * wall_seconds / n:9.2f} {100.0:9.1f} {fps:10.1f}")
        lines.append(f"bound by: {self.bound()} ({self.frames} frames)")
        lines.extend(f"{stage}: {note}" for stage, note in self.notes.items())
        return "\n".join(lines)

    def as_dict(self, wall_seconds: float) -> dict:
        """The same figures as :meth:`table`, for JSON (benchmarks)."""
        return {
            "frames": self.frames,
            "wall_s": wall_seconds,
            "busy_s": dict(self.busy),
            "bound": self.bound(),
            "notes": dict(self.notes),
        }
