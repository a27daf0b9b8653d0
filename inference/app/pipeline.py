"""Overlap decoding, inference and encoding: a reader thread and a writer thread around the caller's loop.

``decode (thread) -> bounded queue -> process (calling thread) -> bounded queue -> encode (thread)``. Stage busy
times are measured by the stages themselves (:class:`~inference.core.stages.StageClock`), not here.
PyAV and libx264 release the GIL while they work, so the three stages really run at the same time; the bounded
queues keep memory flat whichever stage is slowest. An error (or Ctrl-C) in any stage stops the other two and is
re-raised in the calling thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_END = object()


class _Stop(Exception):
    """Raised inside a stage when another stage has failed."""


class _SharedStop:
    """A pipeline's shared stop flag and its first error (what every stage checks and sets)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: Any) -> None:
        # A timeout loop instead of a blocking put, so a stage never waits forever on a dead neighbour.
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stop

    def feed(self, produce: Iterable[Any], q: queue.Queue) -> None:
        """Reader thread: put every produced item, then the end marker, into ``q``."""
        try:
            for item in produce:
                self.put(q, item)
            self.put(q, _END)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread.
            self.fail(exc)

    def drain(self, q: queue.Queue, consume: Callable[[Any], None]) -> None:
        """Writer thread: consume every item of ``q`` up to the end marker."""
        try:
            while (item := self.get(q)) is not _END:
                consume(item)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread.
            self.fail(exc)


def run_pipeline(
    produce: Iterable[Any],
    process: Callable[[Iterator[Any]], Iterator[Any]],
    consume: Callable[[Any], None],
    *,
    depth: int = 16,
) -> None:
    """Run ``consume(y) for y in process(iter(produce))`` with producing and consuming in their own threads.

    Args:
        produce: Iterable evaluated in the reader thread (e.g. decoded frames).
        process: Generator function run in the calling thread (e.g. batched inference); it receives an iterator
            over the produced items and yields results in order.
        consume: Called in the writer thread for every result (e.g. encode and mux).
        depth: Capacity of each queue, in items.

    Raises:
        BaseException: The first error of any stage (including ``KeyboardInterrupt`` in the calling thread).
    """
    state = _SharedStop()
    q_in: queue.Queue = queue.Queue(maxsize=depth)
    q_out: queue.Queue = queue.Queue(maxsize=depth)

    def inputs() -> Iterator[Any]:
        while (item := state.get(q_in)) is not _END:
            yield item

    threads = [
        threading.Thread(target=state.feed, args=(produce, q_in), daemon=True),
        threading.Thread(target=state.drain, args=(q_out, consume), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        for result in process(inputs()):
            state.put(q_out, result)
        state.put(q_out, _END)
        threads[1].join()
    except _Stop:
        pass
    except BaseException as exc:
        state.fail(exc)
    finally:
        # Stops the reader too when processing ended early (e.g. an image output needs only one frame).
        state.stop.set()
        for t in threads:
            t.join()
    if state.error is not None:
        raise state.error
