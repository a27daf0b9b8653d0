"""A real ``stylize-serve`` application on 127.0.0.1 (uvicorn on a free port, in a thread of the test process), and
raw-socket helpers for requests no well-behaved client sends."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from inference.engine.options import RuntimeOptions
from inference.serve.access import Access
from inference.serve.app import ServeConfig, create_app
from inference.serve.catalog import Catalog
from inference.serve.server import server_config


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def loopback_server(
    model: Path,
    config: ServeConfig | None = None,
    catalog: Catalog | None = None,
    access: Callable[[int], Access] | None = None,
) -> Iterator[str]:
    """Serve ``model`` with ``config`` on 127.0.0.1 (and the access policy ``access(port)`` makes, when given);
    yields ``http://127.0.0.1:PORT``; stops the server at exit."""
    import uvicorn

    catalog = catalog or Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = config or ServeConfig()
    if access is not None:
        config = replace(config, access=access(port))
    # log_config=None: uvicorn's records reach the root logger, so caplog sees every traceback it would print.
    app = create_app(catalog, config)
    server = uvicorn.Server(server_config(app, "info", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body of ``(field, filename or None, data)`` parts."""
    out = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


def raw_request(url: str, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body``; return the status and body."""
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
