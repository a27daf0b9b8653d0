"""``stylize-serve``: a local web page and HTTP API around one artifact or a folder of them.

Example::

    stylize-serve -m starry.safetensors            # then open http://127.0.0.1:8000
    stylize-serve -m artifacts/ --max-upload-mb 50 --max-jobs 1
    stylize-serve -m starry.safetensors --host 0.0.0.0   # prints http://...:8000/?token=...; no token, no answer

The port is bound before the model loads, so a taken port is one line and exit status 2, never a "ready" line. Who may
connect: :mod:`inference.serve.access`.

Needs the ``serve`` extra (``pip install 'styletrain[serve]'``: FastAPI, uvicorn, WebSockets).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from inference.app.argtypes import add_field, flag, from_namespace, ranged
from inference.app.console import OneLineParser, setup_logging
from inference.core.errors import UserError, exit_on_user_error
from inference.engine.options import RuntimeOptions
from inference.serve.access import TOKEN_ENV, Access, is_loopback, origin_of

log = logging.getLogger("inference")
#: The runtime options the server takes from its command line; the page's controls set the live ones per request.
_RUNTIME_FIELDS = ("device", "precision", "backend", "batch_size")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = OneLineParser(
        prog="stylize-serve",
        description="Serve a web page (webcam, image and video stylization with live controls) and an HTTP API for "
        "a style artifact or a folder of artifacts. Listens on 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("-m", "--model", required=True, help="a style artifact (.safetensors) or a folder of them")
    p.add_argument(
        "--host", default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only); 0.0.0.0 opens it to the network",
    )  # fmt: skip
    p.add_argument("--port", type=ranged(int, 0, 65535), default=8000, help="TCP port (default 8000; 0: any free)")
    p.add_argument(
        "--max-upload-mb", type=ranged(float, 0, low_open=True), default=200.0, metavar="MB",
        help="largest image or video upload accepted (default 200)",
    )  # fmt: skip
    p.add_argument(
        "--max-jobs", type=ranged(int, 1), default=2, metavar="N",
        help="video jobs queued or running at once; more are refused until one finishes (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--max-megapixels", type=ranged(float, 0, low_open=True), default=50.0, metavar="MP",
        help="largest image or video frame, counted after the stroke scale (0.25 runs the network on 16x the "
        "pixels); webcam frames: this or 4K, whichever is lower (default 50)",
    )  # fmt: skip
    p.add_argument(
        "--allow-origin", action="append", default=[], metavar="URL",
        help="also accept requests from this origin and its host (a reverse proxy, e.g. https://styles.example.com); "
        "repeatable",
    )  # fmt: skip
    p.add_argument(
        "--token", default=None,
        help=f"the token every request must carry (default: ${TOKEN_ENV}; with neither, one is made up when --host "
        "is beyond the loopback, and none is needed on the loopback)",
    )  # fmt: skip
    for name in _RUNTIME_FIELDS:
        add_field(p, RuntimeOptions, name)
    p.add_argument(
        "--threads", type=ranged(int, 1), default=None, metavar="N",
        help="CPU threads for the network (default: every core)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free one), before anything slow happens.

    Raises:
        UserError: The address cannot be used (taken, not this machine's, not resolvable), in one line.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"--host {host}: cannot listen there ({exc.strerror or exc})") from None
    try:
        # As uvicorn does: a restarted server can take over the port from connections still in TIME_WAIT (a port
        # with a live listener still refuses).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}") from None
    sock.set_inheritable(True)
    return sock


def access_policy(opts: argparse.Namespace, port: int, environ: Mapping[str, str] = os.environ) -> Access:
    """The :class:`~inference.serve.access.Access` the options ask for: the token from ``--token``, else the
    environment, else made up when listening beyond the loopback (else none).

    Raises:
        UserError: A malformed ``--allow-origin`` or token (one line).
    """
    try:
        origins = tuple(origin_of(url) for url in opts.allow_origin)
    except ValueError as exc:
        raise UserError(f"--allow-origin {exc}") from None
    token = opts.token if opts.token is not None else environ.get(TOKEN_ENV) or None
    if token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{8,256}", token):
        raise UserError("--token: expected 8 to 256 letters, digits or . _ ~ - (it goes into URLs and a cookie)")
    if token is None and not is_loopback(opts.host):
        token = secrets.token_urlsafe(24)
    return Access(opts.host, port, origins, token)


@exit_on_user_error
def main(args: Sequence[str] | None = None) -> int:
    """Start the server; returns when it is stopped (Ctrl-C or SIGTERM)."""
    started = time.perf_counter()
    opts = build_parser().parse_args(args)
    setup_logging(opts.quiet)
    try:
        import uvicorn

        from inference.serve.app import ServeConfig, create_app
        from inference.serve.server import server_config
    except ImportError as exc:
        raise UserError(
            f"stylize-serve needs the serve extra: pip install 'styletrain[serve]' ({exc.name} missing)"
        ) from None
    from inference.serve.catalog import Catalog

    _set_threads(opts.threads)
    try:
        catalog = Catalog(opts.model, runtime_options(opts))  # headers only: cheap, and names a bad -m at once
    except UserError as exc:  # The library names its fields; the flags are this command's names for them.
        raise UserError(exc.with_flags(flag)) from None
    sock = bind(opts.host, opts.port)  # Before the model loads: a taken port costs no load and prints no "ready".
    port = sock.getsockname()[1]
    access = access_policy(opts, port)
    if not is_loopback(opts.host):
        log.warning(
            "listening on %s: anyone who can reach port %d and has the token can upload files and use this "
            "machine's GPU/CPU",
            opts.host,
            port,
        )
    url = page_url(opts.host, port, access.token)

    def ready() -> None:
        if not opts.quiet:
            print(
                f"stylize-serve: {len(catalog.paths)} artifact(s) from {opts.model}, ready in "
                f"{time.perf_counter() - started:.1f}s ({time.process_time():.1f}s of CPU since the process started) "
                f"at {url}",
                file=sys.stderr,
                flush=True,
            )

    config = ServeConfig(
        max_upload_bytes=int(opts.max_upload_mb * 2**20),
        max_jobs=opts.max_jobs,
        max_pixels=int(opts.max_megapixels * 1e6),
        access=access,
        on_ready=ready,
    )
    app = create_app(catalog, config)
    uvicorn.Server(server_config(app, "warning" if opts.quiet else "info")).run(sockets=[sock])
    return 0


def page_url(host: str, port: int, token: str | None) -> str:
    """The address to open: on every interface (``0.0.0.0``, ``::``) this machine's loopback one; with the token in
    the query string (the page keeps it in a cookie)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _set_threads(threads: int | None) -> None:
    """Torch's (and so ONNX Runtime's) intra-op threads, when ``--threads`` is given; else torch's default (every
    core). On the shared 2-core CPU, bench/live.py's side-by-side runs of the two settings disagreed from run to run,
    so the default stays torch's and the option is there to tune a machine."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def runtime_options(opts: argparse.Namespace) -> RuntimeOptions:
    """The :class:`~inference.engine.options.RuntimeOptions` the command line asks for (the others: defaults)."""
    return from_namespace(RuntimeOptions, opts)


if __name__ == "__main__":
    sys.exit(main())
