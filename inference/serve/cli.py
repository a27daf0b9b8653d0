"""``stylize-serve``: a local web page and HTTP API around one artifact or a folder of them.

Example::

    stylize-serve -m starry.safetensors            # then open http://127.0.0.1:8000
    stylize-serve -m artifacts/ --max-upload-mb 50 --max-jobs 1

Needs the ``serve`` extra (``pip install 'styletrain[serve]'``: FastAPI, uvicorn, WebSockets).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
from collections.abc import Sequence

from inference.app.argtypes import add_field, flag, from_namespace, ranged
from inference.app.cli import _Parser
from inference.app.console import setup_logging
from inference.core.errors import UserError, exit_on_user_error
from inference.engine.options import RuntimeOptions

log = logging.getLogger("inference")
#: The runtime options the server takes from its command line; the page's controls set the live ones per request.
_RUNTIME_FIELDS = ("device", "precision", "backend", "batch_size")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = _Parser(
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
    for name in _RUNTIME_FIELDS:
        add_field(p, RuntimeOptions, name)
    p.add_argument(
        "--threads", type=ranged(int, 1), default=None, metavar="N",
        help="CPU threads for the network (default: every core)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    return p


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (``localhost``, ``127.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@exit_on_user_error
def main(args: Sequence[str] | None = None) -> int:
    """Start the server; returns when it is stopped (Ctrl-C or SIGTERM)."""
    started = time.perf_counter()
    opts = build_parser().parse_args(args)
    setup_logging(opts.quiet)
    try:
        import uvicorn

        from inference.serve.app import ServeConfig, create_app
    except ImportError as exc:
        raise UserError(
            f"stylize-serve needs the serve extra: pip install 'styletrain[serve]' ({exc.name} missing)"
        ) from None
    from inference.serve.catalog import Catalog

    _set_threads(opts.threads)
    try:
        catalog = Catalog(opts.model, runtime_options(opts))
    except UserError as exc:  # The library names its fields; the flags are this command's names for them.
        raise UserError(exc.with_flags(flag)) from None
    if not is_loopback(opts.host):
        log.warning(
            "listening on %s: anyone who can reach port %d can upload files and use this machine's GPU/CPU",
            opts.host,
            opts.port,
        )

    def ready() -> None:
        if not opts.quiet:
            print(
                f"stylize-serve: {len(catalog.paths)} artifact(s) from {opts.model}, ready in "
                f"{time.perf_counter() - started:.1f}s ({time.process_time():.1f}s of CPU since the process started) "
                f"at http://{opts.host}:{opts.port}",
                file=sys.stderr,
                flush=True,
            )

    config = ServeConfig(max_upload_bytes=int(opts.max_upload_mb * 2**20), max_jobs=opts.max_jobs, on_ready=ready)
    app = create_app(catalog, config)
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning" if opts.quiet else "info", ws_max_size=2**24)
    return 0


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
