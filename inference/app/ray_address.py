"""Joining a Ray cluster within seconds, or one line saying why not (``stylize-video --cluster ray``).

Ray's own join waits on the cluster's control store (GCS) for minutes when nothing answers at the address (over
400 s for ``127.0.0.1:1``) and prints its C++ warnings meanwhile. So before ``ray.init``:

* the address is checked (:func:`check_reachable`, a few seconds at most): a refused, silent or unresolvable
  address, or one where something answers that does not speak gRPC (a Ray cluster's control store does), fails at
  once with one line naming it and the way out. (Ray's own retry knobs cannot bound this: Ray reads them from the
  environment when it is imported.)
* Ray's messages on stderr during the join are kept out of the terminal (:func:`ray_messages_hidden`) unless
  ``STYLIZE_RAY_LOGS=1`` asks for them.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from inference.core.errors import OptionError

#: Seconds a TCP connection to the cluster's address may take before it counts as "nothing answers".
CONNECT_TIMEOUT = 3.0
#: Environment variable that lets Ray's own log lines through to the terminal while joining.
LOGS_ENV = "STYLIZE_RAY_LOGS"
_WAY_OUT = "start one there (ray start --head), or run on this machine with `cluster` local"


def target(address: str | None) -> tuple[str, str, int] | None:
    """``(what the user gave, host, port)`` for an address to join, or ``None`` when Ray starts or finds its own.

    ``None`` and ``"auto"`` read ``$RAY_ADDRESS`` as Ray does; ``"local"`` (or nothing) starts a local instance;
    ``ray://host[:port]`` is Ray Client (port 10001 by default).
    """
    given = address or os.environ.get("RAY_ADDRESS") or None
    if given in (None, "auto", "local"):
        return None
    where = given.split("://", 1)[1] if "://" in given else given
    host, sep, port = where.rstrip("/").rpartition(":")
    if not sep:
        host, port = where, "10001" if given.startswith("ray://") else ""
    if not port.isdigit():
        return None  # Ray's own parser gives the one line for a malformed address.
    return given, host.strip("[]"), int(port)


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise one line unless a gRPC server (what a Ray cluster's control store is) answers at the cluster's address.

    A TCP connection is made and HTTP/2's opening exchange tried (a gRPC server answers it with its SETTINGS frame),
    each within ``timeout`` seconds. With ``RAY_USE_TLS`` set, only the connection is checked.

    Raises:
        OptionError: On ``ray_address``, naming the address (and ``$RAY_ADDRESS`` when it came from there), what
            happened, and the way out.
    """
    found = target(address)
    if found is None:
        return
    given, host, port = found
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0") in ("", "0") and not _speaks_http2(conn):
                problem = "something answers, but not a Ray cluster's gRPC"
            else:
                return
    except TimeoutError:
        problem = f"nothing answered in {timeout:g} s"
    except socket.gaierror:
        problem = f"unknown host {host!r}"
    except ConnectionRefusedError:
        problem = "connection refused"
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    source = "" if address else " (from $RAY_ADDRESS)"
    raise OptionError(
        "ray_address", f"{given}{source}: no Ray cluster answers there ({problem}); {_WAY_OUT}", mentions=("cluster",)
    )


#: HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, section 3.4).
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _speaks_http2(conn: socket.socket) -> bool:
    """Whether the peer answers HTTP/2's preface with a SETTINGS frame (its first frame must be one)."""
    try:
        conn.sendall(_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # A timeout included: a Ray control store answers at once.
        return False
    return head[3] == 0x04


def join_failed(address: str | None, reason: str) -> OptionError:
    """The line for a join that Ray gave up on although the address accepted a connection."""
    given = address or os.environ.get("RAY_ADDRESS", "")
    why = " ".join(reason.split())[:160]
    return OptionError(
        "ray_address",
        f"{given}: no Ray cluster answered there ({why}); {_WAY_OUT} (Ray's own messages: {LOGS_ENV}=1)",
        mentions=("cluster",),
    )


@contextmanager
def ray_messages_hidden() -> Iterator[None]:
    """Within the block, what Ray's C++ core writes to stderr goes to a discarded file (not with ``LOGS_ENV=1``).

    Ray writes from native code straight to file descriptor 2, so ``sys.stderr`` cannot catch it: the descriptor
    itself is redirected for the block, and restored after it.
    """
    if os.environ.get(LOGS_ENV, "") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
