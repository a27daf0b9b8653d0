"""Who may use the server: Host and Origin checked against the address it is bound to, and a token beyond the loopback.

A browser lets any web page send requests to ``127.0.0.1`` and open WebSockets there; with DNS rebinding a page can
even read the answers (``evil.example`` resolves to 127.0.0.1, and the browser then treats the server as that
site). So, as local notebook servers do:

- **Host**: on the loopback, only loopback names (``localhost``, ``127.x.x.x``, ``[::1]``) are served (any port:
  an SSH tunnel may change it); bound to one address, only that address; bound to every interface (``0.0.0.0``),
  any name, since the token then guards it. ``--allow-origin`` adds its hosts (a reverse proxy forwards its own).
- **Origin**: when a browser sends one, it must be the server's own (``scheme://`` + the Host header) or one given
  with ``--allow-origin``. Clients that send none (curl, scripts) are not web pages and pass.
- **Token**: required on every request (the page, its scripts, the API, the WebSocket) when one is set; always set
  when the server listens beyond the loopback. It comes from ``?token=``, an ``Authorization: token ...`` (or
  ``Bearer``) header, or the cookie that a request carrying ``?token=`` sets, so the page opened from the printed URL
  keeps working without the token in its own requests.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from inference.serve.errors import close_reason, send_error

#: Environment variable read for the token when ``--token`` is not given.
TOKEN_ENV = "STYLIZE_SERVE_TOKEN"
_WILDCARDS = {"0.0.0.0", "::", ""}


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (``localhost``, ``127.x``, ``::1``)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or URL netloc (``[::1]:8000`` -> ``::1``, ``Example.COM.`` ->
    ``example.com``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lowercased, as a browser's ``Origin`` header has it.

    Raises:
        ValueError: Not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r}: expected an origin such as https://styles.example.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"


@dataclass(frozen=True)
class Access:
    """The server's access policy (see the module docstring).

    Attributes:
        bound: The ``--host`` the server listens on.
        port: Its port (names the cookie: cookies are not kept apart by port).
        allow_origins: Extra origins (``scheme://host[:port]``) from ``--allow-origin``.
        token: Required on every request when set.
    """

    bound: str
    port: int
    allow_origins: tuple[str, ...] = ()
    token: str | None = None

    @property
    def cookie(self) -> str:
        """The name of the cookie that keeps the token for the page."""
        return f"stylize-serve-token-{self.port}"

    def host_problem(self, host: str | None) -> str | None:
        """Why the ``Host`` header ``host`` is refused, or ``None``."""
        bound = self.bound.strip("[]").lower()
        if bound in _WILDCARDS:
            return None  # Every interface: any name reaches it, and the token guards it.
        name = host_name(host or "")
        allowed = {host_name(urlsplit(o).netloc) for o in self.allow_origins}
        if name in allowed or (is_loopback(bound) and is_loopback(name)) or name == host_name(bound):
            return None
        return f"Host {(host or '')!r} is not this server's address ({self.bound}); behind a proxy use --allow-origin"

    def origin_problem(self, origin: str | None, host: str | None) -> str | None:
        """Why the ``Origin`` header ``origin`` is refused (``None``: absent, the server's own, or allowed)."""
        if origin is None:
            return None
        origin = origin.strip().lower()
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc == (host or "").strip().lower():
            return None
        if origin.rstrip("/") in self.allow_origins:
            return None
        return f"Origin {origin!r} is not this server's page; a page served elsewhere needs --allow-origin"

    def token_given(self, headers: dict[bytes, bytes], query: bytes) -> tuple[str | None, bool]:
        """The token the request carries and whether it came in the query string (then the cookie is set)."""
        try:
            values = parse_qs(query.decode("latin-1"), max_num_fields=64).get("token")
        except ValueError:  # Over 64 fields: no page of ours sends that; it carries no token we read.
            values = None
        if values:
            return values[0], True
        auth = headers.get(b"authorization", b"").decode("latin-1").split()
        if len(auth) == 2 and auth[0].lower() in ("token", "bearer"):
            return auth[1], False
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # A malformed Cookie header carries no token.
            return None, False
        return (cookie[self.cookie].value if self.cookie in cookie else None), False

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is the token (constant time); always true when none is required."""
        return self.token is None or (given is not None and hmac.compare_digest(given.encode(), self.token.encode()))


class Guard:
    """ASGI middleware: refuse HTTP requests (403/401 with the one error shape) and WebSockets (closed before the
    handshake completes, which the client sees as HTTP 403) that :class:`Access` does not allow; nothing of a refused
    request is read or run.

    Args:
        app: The ASGI application.
        access: The policy.
    """

    def __init__(self, app, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1") or None
        origin = headers[b"origin"].decode("latin-1") if b"origin" in headers else None
        status, problem = 403, self.access.host_problem(host) or self.access.origin_problem(origin, host)
        given, in_query = self.access.token_given(headers, scope.get("query_string", b""))
        if problem is None and not self.access.token_ok(given):
            status = 401 if given is None else 403
            problem = (
                "this server needs its token: open the URL it printed at start (with ?token=...), or send "
                "'Authorization: token ...'"
                if given is None
                else "wrong token"
            )
        if problem is not None:
            if scope["type"] == "http":
                await send_error(send, status, problem)
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": close_reason(problem)})
            return
        if self.access.token is None or not in_query or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = f"{self.access.cookie}={self.access.token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
