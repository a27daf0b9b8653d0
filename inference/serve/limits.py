"""The request size limits: the upload's bytes, enforced as they arrive (a missing or false Content-Length does not
help), and the length of the request target (path and query string).

An ASGI middleware rather than a check in each route: the multipart parser would otherwise spool the whole body to
disk before any route code runs. No route takes a long path or a query string, yet uvicorn accepts 100 KB of them and
its access log would copy every one into the server's log.
"""

from __future__ import annotations

from inference.serve.errors import close_reason, send_error

#: Longest request target (path plus query string) served, in bytes; the page's longest is under 100.
MAX_TARGET_BYTES = 4096


class _TooLarge(BaseException):
    """Raised from ``receive``; a BaseException so that no framework layer turns it into a 400 or 500 on the way."""


def too_large_message(limit: int) -> str:
    """The one-line error for a body over ``limit`` bytes."""
    return f"upload too large: the limit is {limit / 2**20:g} MB (stylize-serve --max-upload-mb)"


class UploadLimit:
    """Answer 413 with a one-line JSON error to any HTTP request whose body exceeds ``limit`` bytes, and 414 to one
    whose target exceeds :data:`MAX_TARGET_BYTES` (a WebSocket: closed before the handshake completes).

    Args:
        app: The ASGI application.
        limit: Body bytes allowed per request.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if target > MAX_TARGET_BYTES:
            # The server logs the request after this answer, from this same scope: keep the log line short too.
            scope["query_string"], scope["path"] = b"", scope["path"][:100] + "..."
            message = f"request target too long: {target} bytes, the limit is {MAX_TARGET_BYTES}"
            if scope["type"] == "http":
                await send_error(send, 414, message)
            else:
                await send({"type": "websocket.close", "code": 1009, "reason": close_reason(message)})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        await send_error(send, 413, too_large_message(self.limit))
