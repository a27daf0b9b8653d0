"""The webcam WebSocket: JPEG frames in, stylized JPEG frames out, the latest frame always winning.

Protocol (``/ws/live``):

- client -> server, binary: an 8-byte little-endian float64 tag (the page sends its capture time in ms) followed by
  a JPEG (or PNG) frame.
- client -> server, text: ``{"type": "controls", "strength": 0.5, ...}`` (any :class:`Controls` field); applies to
  the next frame. Answered by ``{"type": "controls", "controls": {...}}`` or ``{"type": "error", "error": "..."}``.
- server -> client, binary: the 8-byte tag echoed, a float32 server time in ms (decode + stylize + encode), a uint32
  count of frames dropped so far, then the stylized JPEG.
- server -> client, text: ``{"type": "error", "error": "<one line>"}`` for a frame that is not an image.
- server -> client, close 1009 (too big) or 1008 (policy) with a one-line reason for a controls message over
  :data:`MAX_CONTROLS_CHARS` or nested too deeply to parse: such a client is broken or hostile, so it is closed.

A frame that arrives while the previous one is still being stylized waits in a one-frame slot; a newer frame
replaces it (and counts as dropped). Nothing queues, so latency stays one frame's work however slow the model is.
"""

from __future__ import annotations

import asyncio
import json
import struct

from fastapi import WebSocket, WebSocketDisconnect

from inference.core.errors import UserError
from inference.engine.device_flow import flow_for_stream
from inference.serve.catalog import Catalog, Controls
from inference.serve.errors import close_reason, error_json
from inference.serve.frames import STREAM_JPEG_QUALITY, FrameService, decode_image, encode_image
from inference.serve.pixels import MAX_FRAME_PIXELS

TAG = struct.Struct("<d")
REPLY_HEADER = struct.Struct("<dfI")
#: Longest controls message, in characters: the page's are under 300; this leaves room for long blends.
MAX_CONTROLS_CHARS = 16_384


class _Closing(Exception):
    """A message after which the socket is closed with ``code`` and a one-line ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Slot:
    """The newest frame not yet taken; putting over an untaken frame drops it."""

    def __init__(self) -> None:
        self.item: tuple[bytes, Controls] | None = None
        self.dropped = 0
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, item: tuple[bytes, Controls]) -> None:
        self.dropped += self.item is not None
        self.item = item
        self.ready.set()

    async def take(self) -> tuple[bytes, Controls] | None:
        await self.ready.wait()
        self.ready.clear()
        item, self.item = self.item, None
        return item


async def serve_live(
    websocket: WebSocket, catalog: Catalog, frames: FrameService, max_pixels: int = MAX_FRAME_PIXELS
) -> None:
    """Run one webcam connection until the client goes away; frames over ``max_pixels`` of work (after the stroke
    scale, :func:`~inference.serve.pixels.check_pixels`) are refused with one line."""
    await websocket.accept()
    slot = _Slot()
    worker = asyncio.create_task(_stylize_loop(websocket, slot, frames, max_pixels))
    controls = catalog.controls({})
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                slot.put((message["bytes"], controls))
            elif message.get("text") is not None:
                controls = await _controls_message(websocket, catalog, message["text"], controls)
    except WebSocketDisconnect:
        pass
    except _Closing as exc:
        try:
            await websocket.close(exc.code, close_reason(exc.reason))
        except (WebSocketDisconnect, RuntimeError):
            pass  # The client left first.
    finally:
        slot.closed = True
        slot.ready.set()
        worker.cancel()


async def _controls_message(websocket: WebSocket, catalog: Catalog, text: str, controls: Controls) -> Controls:
    """Apply a ``controls`` message; on a bad one keep the old controls and answer one line.

    Raises:
        _Closing: The message is too long, or nested too deeply for the JSON parser (RecursionError).
    """
    if len(text) > MAX_CONTROLS_CHARS:
        raise _Closing(1009, f"controls message too long: {len(text)} characters, the limit is {MAX_CONTROLS_CHARS}")
    try:
        message = json.loads(text)
    except RecursionError:
        raise _Closing(1008, "controls message nested too deeply") from None
    except ValueError as exc:
        await websocket.send_text(error_json(f"controls: not JSON ({exc})"))
        return controls
    try:
        if not isinstance(message, dict) or message.pop("type", None) != "controls":
            raise UserError('expected {"type": "controls", ...}')
        controls = catalog.controls(message, base=controls)
        await websocket.send_text(json.dumps({"type": "controls", "controls": controls.describe()}))
    except (UserError, ValueError) as exc:
        await websocket.send_text(error_json(exc))
    return controls


class _History:
    """One connection's consistency state (:class:`inference.engine.consistency.ConsistencyStage`): the previous output
    and input, kept while consistency is on."""

    def __init__(self) -> None:
        self.stage, self.look = None, None

    def reset(self) -> None:
        self.stage = None

    def consistent(self, frame, out, controls: Controls, flow=lambda: None):
        """``uint8 [H, W, 3]`` input and its per-frame stylization at strength 1 -> the consistent output mixed with
        the input by the controls' strength (same shape). Another artifact or style starts a new history (its first
        frame is taken as it is)."""
        from inference.engine.consistency import ConsistencyStage, mix_frames

        options = controls.options
        look = (controls.artifact, options.style)
        if self.stage is None or look != self.look:
            self.stage, self.look = ConsistencyStage(options.consistency, flow=flow()), look
        self.stage.strength = options.consistency
        # ``out`` is the network's output at strength 1; the user's strength mixes the input in after the stage, as
        # in stylize-video, so strength 0 gives back the input frame exactly.
        return mix_frames(self.stage.step(frame, out), frame, options.strength)


async def _stylize_loop(websocket: WebSocket, slot: _Slot, frames: FrameService, max_pixels: int) -> None:
    """Take the newest frame, stylize it, send it; encoding and sending overlap the next frame's work."""
    sending: asyncio.Task | None = None
    loop = asyncio.get_running_loop()
    history = _History()
    while not slot.closed:
        item = await slot.take()
        if item is None:
            continue
        data, controls = item
        t0 = loop.time()
        if len(data) <= TAG.size:
            await websocket.send_text(json.dumps({"type": "error", "error": "frame: empty message"}))
            continue
        tag = data[: TAG.size]
        try:
            frame = data[TAG.size :]
            array = await asyncio.to_thread(decode_image, frame, "frame", max_pixels, controls.options.stroke_scale)
            # With the stage on, the network runs at strength 1 and the strength is mixed in after the stage.
            consistent = controls.options.consistency > 0
            per_frame = controls.with_live(strength=1.0) if consistent else controls
            out = await asyncio.wrap_future(frames.submit(array, per_frame))
            if consistent:
                flow = lambda c=controls: flow_for_stream(frames.catalog.stylizer(c.artifact).flow)  # noqa: E731 - RAFT on a GPU
                out = await asyncio.to_thread(history.consistent, array, out, controls, flow)
            else:
                history.reset()
        except UserError as exc:
            await websocket.send_text(error_json(exc))
            continue
        if sending is not None:
            await sending  # Frames go out in order.
        sending = asyncio.create_task(_send(websocket, tag, out, t0, slot))


async def _send(websocket: WebSocket, tag: bytes, out, t0: float, slot: _Slot) -> None:
    jpeg = await asyncio.to_thread(encode_image, out, "JPEG", STREAM_JPEG_QUALITY)
    server_ms = (asyncio.get_running_loop().time() - t0) * 1000.0
    (client_tag,) = TAG.unpack(tag)
    try:
        await websocket.send_bytes(REPLY_HEADER.pack(client_tag, server_ms, slot.dropped) + jpeg)
    except (WebSocketDisconnect, RuntimeError):
        slot.closed = True  # The client left while this frame was in flight.
