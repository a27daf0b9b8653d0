"""The upload size limit, enforced on the bytes as they arrive (a missing or false Content-Length does not help).

An ASGI middleware rather than a check in each route: the multipart parser would otherwise spool the whole body to
disk before any route code runs.
"""

from __future__ import annotations

from inference.serve.errors import send_error


class _TooLarge(BaseException):
    """Raised from ``receive``; a BaseException so that no framework layer turns it into a 400 or 500 on the way."""


def too_large_message(limit: int) -> str:
    """The one-line error for a body over ``limit`` bytes."""
    return f"upload too large: the limit is {limit / 2**20:g} MB (stylize-serve --max-upload-mb)"


class UploadLimit:
    """Answer 413 with a one-line JSON error to any HTTP request whose body exceeds ``limit`` bytes.

    Args:
        app: The ASGI application.
        limit: Body bytes allowed per request.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
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
