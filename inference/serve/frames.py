"""One thread that owns the stylizers: webcam frames and uploaded images queue here and come back as futures.

A :class:`~inference.engine.stylizer.Stylizer` is not thread-safe (its controls change between frames), so every frame
runs on this one thread. Requests waiting at the same time that share the artifact, the controls and the frame size run
as one batch, up to the stylizer's batch size (8 on CUDA, 1 on the CPU, where wider batches gain nothing), so several
webcams on one GPU share its forward passes.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from inference.core.errors import UserError, one_line
from inference.io.image_reader import read_image
from inference.serve.catalog import Catalog, Controls, apply_controls
from inference.serve.pixels import MAX_IMAGE_PIXELS, check_pixels

log = logging.getLogger("inference")

#: JPEG quality of stylized webcam frames: the page shows them at once and drops them; 80 halves the bytes of 95
#: at no visible cost on painted textures.
STREAM_JPEG_QUALITY = 80


@dataclass
class _Request:
    array: np.ndarray
    controls: Controls
    future: Future


class FrameService:
    """Stylize frames on one worker thread, batching requests that can share a forward pass.

    Args:
        catalog: Where the stylizers come from.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.batches = 0  # Forward passes run (a batch counts once): how much batching happened.
        self.frames = 0
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="stylize-frames", daemon=True)
        self._thread.start()

    def submit(self, array: np.ndarray, controls: Controls) -> Future:
        """Queue ``uint8 [H, W, 3]`` RGB; the future gives ``uint8 [H, W, 3]`` RGB, or raises :class:`UserError`."""
        future: Future = Future()
        self._queue.put(_Request(array, controls, future))
        return future

    def close(self) -> None:
        """Finish the queued requests and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        pending: list[_Request] = []
        while True:
            first = pending.pop(0) if pending else self._queue.get()
            if first is None:
                return
            try:
                batch, pending = self._gather(first, pending)
            except Exception as exc:  # The artifact failed to load: this request fails, the thread goes on.
                self._fail([first], exc)
                continue
            # A request whose caller gave up (a webcam that disconnected) is skipped; the rest can no longer be
            # cancelled, so setting their results below cannot fail.
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _gather(self, first: _Request, pending: list[_Request]) -> tuple[list[_Request], list[_Request]]:
        """``first`` and the waiting requests that can share its forward pass; the rest stay pending in order."""
        limit = self.catalog.stylizer(first.controls.artifact).batch_size
        while True:  # Take everything already waiting; never wait for more (latency first).
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # Stop after these.
                break
            pending.append(item)
        batch, rest = [first], []
        for item in pending:
            fits = item.controls == first.controls and item.array.shape == first.array.shape
            (batch if fits and len(batch) < limit else rest).append(item)
        return batch, rest

    def _run(self, batch: list[_Request]) -> None:
        try:
            stylizer = self.catalog.stylizer(batch[0].controls.artifact)
            # Frames from several callers share this stylizer, so it keeps no history: a webcam's consistency is
            # applied per connection (inference.serve.live_socket).
            apply_controls(stylizer, batch[0].controls.with_live(consistency=0.0))
            outputs = list(stylizer.frames(r.array for r in batch))
        except Exception as exc:
            self._fail(batch, exc)
            return
        self.batches += 1
        self.frames += len(batch)
        for r, out in zip(batch, outputs, strict=True):
            r.future.set_result(out)

    @staticmethod
    def _fail(batch: list[_Request], exc: Exception) -> None:
        """Answer every request of ``batch`` with one line; never let the exception end the thread."""
        if not isinstance(exc, UserError):
            log.error("stylizing a frame failed", exc_info=exc)
            exc = UserError(f"internal error while stylizing ({type(exc).__name__}: {one_line(exc, 160)})")
        for r in batch:
            if r.future.running() or r.future.set_running_or_notify_cancel():  # skip callers that gave up
                r.future.set_exception(exc)


def decode_image(
    data: bytes, name: str = "upload", max_pixels: int = MAX_IMAGE_PIXELS, stroke_scale: float = 1.0
) -> np.ndarray:
    """Decode an uploaded image (any format Pillow reads) to ``uint8 [H, W, 3]`` RGB, EXIF orientation applied.

    Args:
        data: The file's bytes.
        name: The file's name, for messages.
        max_pixels: The pixel budget (:func:`~inference.serve.pixels.check_pixels`), checked on the header's size at
            ``stroke_scale`` before anything is decoded.
        stroke_scale: The stroke scale the image will run at (< 1 enlarges the network's input).

    Raises:
        UserError: Not an image, an empty or truncated one, or one over the budget (a small, well-compressed file can
            hold a huge picture), in one line naming ``name``.
    """
    if not data:
        raise UserError(f"{name}: empty upload")
    return read_image(
        data, name=name, check_size=lambda width, height: check_pixels(width, height, max_pixels, name, stroke_scale)
    )


def encode_image(array: np.ndarray, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """``uint8 [H, W, 3]`` RGB -> JPEG (or PNG, WEBP) bytes."""
    from PIL import Image

    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {"compress_level": 3}
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()
