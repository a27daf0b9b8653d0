"""``stylize-serve`` binds its port before it loads anything: a taken port is one line and a
non-zero exit, never a "ready" line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_port_taken_is_one_line_before_the_model_loads(model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "inference.serve.cli", "-m", str(model), "--port", str(port), "--device", "cpu"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert r.stdout == ""  # and so no "ready in ... at http://..." line: stderr is the one line above


def test_bind_refuses_in_one_line_in_process():
    from inference.core.errors import UserError
    from inference.serve.cli import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"^cannot listen on 127.0.0.1:{port}: address already in use$"):
            bind("127.0.0.1", port)
    with pytest.raises(UserError, match=r"^--host no-such-host.invalid: cannot listen there"):
        bind("no-such-host.invalid", 0)
    sock = bind("127.0.0.1", 0)  # port 0: a free one, known before the server starts (the printed URL uses it)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
