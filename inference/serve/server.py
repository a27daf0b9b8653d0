"""The uvicorn settings ``stylize-serve`` runs with, in one place (the command and the tests' loopback server share
them), and the one thing uvicorn lacks: a deadline for a connection's first request.

uvicorn closes a kept-alive connection that stays idle, but not a fresh one that never finishes its request line and
headers: a client that opens sockets and sends nothing (or a byte a minute) holds each one, and with them the
server's file descriptors, for ever. :class:`DeadlineH11Protocol` closes such a connection after
:data:`REQUEST_HEAD_TIMEOUT` seconds, and answers a request that is not valid HTTP in the server's one error shape
(uvicorn's own answer is plain text).
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from inference.serve.errors import error_body

#: Seconds a new connection has to deliver its first request's line and headers (a browser needs milliseconds).
REQUEST_HEAD_TIMEOUT = 10.0
#: Largest WebSocket message, in bytes (a webcam frame is a JPEG, well under this).
WS_MAX_SIZE = 2**24


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose first request has not started within
    :data:`REQUEST_HEAD_TIMEOUT` seconds (a WebSocket that upgraded, or a request in progress, is left alone)."""

    head_timeout = REQUEST_HEAD_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_deadline = asyncio.get_running_loop().call_later(self.head_timeout, self.drop_if_no_request)

    def drop_if_no_request(self) -> None:
        """Close the connection if no request has started on it (``cycle`` is set when headers are complete)."""
        upgraded = self.transport.get_protocol() is not self
        if self.cycle is None and not upgraded and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (then the connection is closed), in the error shape."""
        body = error_body("not a valid HTTP request")
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
            self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_deadline.cancel()
        super().connection_lost(exc)


def server_config(app, log_level: str = "info", log_config: dict | None | str = uvicorn.config.LOGGING_CONFIG):
    """The :class:`uvicorn.Config` for ``app`` (serve it with ``uvicorn.Server(config).run(sockets=[sock])``)."""
    return uvicorn.Config(
        app, log_level=log_level, log_config=log_config, ws_max_size=WS_MAX_SIZE, http=DeadlineH11Protocol
    )
