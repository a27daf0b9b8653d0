"""The server's one error shape: ``{"error": "<one line>"}``, bounded in length, for every failure it can produce.

Routes raise :class:`~inference.core.errors.UserError` (400), :class:`NotFound` (404) or :class:`Busy` (429); the
framework's own errors (Starlette's 404, 405 and multipart refusals) and the ASGI middlewares (the upload limit, the
Host/Origin/token guard) answer through the same helpers, so a client parses one shape whatever refused it.
"""

from __future__ import annotations

import json

from inference.core.errors import UserError, one_line


class NotFound(UserError):
    """A job id that does not exist (HTTP 404)."""


class Busy(UserError):
    """The server is at its ``--max-jobs`` limit (HTTP 429: try again later)."""


def error_body(message: object) -> bytes:
    """The JSON body ``{"error": "<one line>"}`` (UTF-8), for middlewares that answer without FastAPI."""
    return json.dumps({"error": one_line(message)}).encode()


def error_json(message: object) -> str:
    """The text of a WebSocket error message: ``{"type": "error", "error": "<one line>"}``."""
    return json.dumps({"type": "error", "error": one_line(message)})


def close_reason(message: object) -> str:
    """``message`` as a WebSocket close reason: one line within the 123 bytes a close frame allows (RFC 6455 5.5)."""
    return one_line(message).encode()[:120].decode(errors="ignore")


async def send_error(send, status: int, message: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an HTTP request at the ASGI level with ``status`` and the error body (nothing read from the client)."""
    body = error_body(message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})
