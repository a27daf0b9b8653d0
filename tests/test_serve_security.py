"""Who may use ``stylize-serve``, on a real server on the loopback: Host and Origin checked
against the bound address, ``--allow-origin`` for a reverse proxy, and a token on every request beyond the loopback
(taken from the URL once, then kept by the page in a cookie)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) talks to the server")

from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from inference.core.errors import UserError  # noqa: E402
from inference.serve.access import TOKEN_ENV, Access  # noqa: E402
from inference.serve.app import ServeConfig  # noqa: E402
from inference.serve.cli import access_policy, build_parser  # noqa: E402

from .loopback_server import loopback_server, png, port_of, raw_request  # noqa: E402

TOKEN = "s3cret-token-for-tests"


def status(url: str, path: str = "/api/info", **headers: str) -> tuple[int, dict | None]:
    head = f"GET {path} HTTP/1.1\r\n" + "\r\n".join(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())
    code, body = raw_request(url, head)
    return code, (json.loads(body) if code >= 400 else None)


def ws_status(url: str, **headers: str) -> int:
    """101 when the webcam socket opens (and answers a controls message), else the handshake's HTTP status."""
    try:
        with connect(url.replace("http", "ws") + "/ws/live", additional_headers=headers, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "controls", "strength": 0.5}))
            json.loads(ws.recv(timeout=10))
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_foreign_host_and_origin_are_refused_on_the_loopback(model, make_image, tmp_path):
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path), access=lambda p: Access("127.0.0.1", p)) as url:
        own = f"127.0.0.1:{port_of(url)}"
        assert status(url, Host=own)[0] == 200
        assert status(url, Host="localhost:9999")[0] == 200  # an SSH tunnel changes the port, not the name
        assert status(url, Host="[::1]")[0] == 200
        code, body = status(url, Host="evil.example")  # DNS rebinding: evil.example resolved to 127.0.0.1
        assert code == 403 and body["error"].startswith("Host 'evil.example' is not this server's address")
        assert status(url, Host=own, Origin=f"http://{own}")[0] == 200
        code, body = status(url, Host=own, Origin="http://evil.example")
        assert code == 403 and body == {
            "error": "Origin 'http://evil.example' is not this server's page; a page served elsewhere needs "
            "--allow-origin"
        }
        assert status(url, Host=own, Origin="null")[0] == 403
        r = httpx.post(url + "/api/image", files={"image": ("a.png", png(make_image(16, 16)))},
                       headers={"origin": "http://evil.example"})  # fmt: skip
        assert r.status_code == 403
        assert ws_status(url, Origin="http://evil.example") == 403
        assert ws_status(url, Origin=f"http://{own}") == 101


def test_allow_origin_admits_a_reverse_proxy(model, tmp_path):
    proxy = "https://styles.example.com"
    access = lambda p: Access("127.0.0.1", p, (proxy,))  # noqa: E731
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path), access=access) as url:
        assert status(url, Host="styles.example.com", Origin=proxy)[0] == 200
        assert ws_status(url, Origin=proxy) == 101
        assert status(url, Host="styles.example.com", Origin="https://other.example.com")[0] == 403
        assert status(url, Host="other.example.com")[0] == 403


def test_beyond_the_loopback_no_request_without_the_token(model, tmp_path):
    access = lambda p: Access("0.0.0.0", p, (), TOKEN)  # noqa: E731
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path), access=access) as url:
        cookie = f"stylize-serve-token-{port_of(url)}"
        for path in ("/", "/api/info", "/static/app.js", "/api/docs", "/api/videos/x", "/nothing"):
            code, body = status(url, path, Host="127.0.0.1")
            assert code == 401 and body["error"].startswith("this server needs its token"), path
        assert status(url, "/api/info?token=wrong", Host="127.0.0.1")[0] == 403
        assert ws_status(url) == 403
        # The printed URL: the page is served and keeps the token in a cookie for its own requests and socket.
        r = httpx.get(f"{url}/?token={TOKEN}")
        assert r.status_code == 200 and "<html" in r.text.lower()
        assert r.cookies[cookie] == TOKEN and "httponly" in r.headers["set-cookie"].lower()
        assert status(url, "/static/app.js", Host="127.0.0.1", Cookie=f"{cookie}={TOKEN}")[0] == 200
        assert status(url, Host="127.0.0.1", Cookie=f"{cookie}=wrong")[0] == 403
        assert status(url, Host="127.0.0.1", Authorization=f"token {TOKEN}")[0] == 200
        assert ws_status(url, Cookie=f"{cookie}={TOKEN}") == 101
        # Every interface: the machine's names are not known, so any Host is served, but only with the token.
        assert status(url, Host="192.0.2.7:8000", Authorization=f"Bearer {TOKEN}")[0] == 200
        # A rebinding page has no token: the cookie belongs to the address the user opened, not to evil.example.
        assert status(url, Host="evil.example", Origin="http://evil.example", Cookie=f"x={TOKEN}")[0] == 401


def test_token_from_flag_environment_or_made_up():
    parse = build_parser().parse_args
    assert access_policy(parse(["-m", "x"]), 8000, {}).token is None  # the loopback needs none
    made = access_policy(parse(["-m", "x", "--host", "0.0.0.0"]), 8000, {}).token
    assert made and len(made) >= 32 and made != access_policy(parse(["-m", "x", "--host", "0.0.0.0"]), 8000, {}).token
    assert access_policy(parse(["-m", "x", "--host", "0.0.0.0"]), 1, {TOKEN_ENV: TOKEN}).token == TOKEN
    assert access_policy(parse(["-m", "x", "--token", TOKEN]), 1, {TOKEN_ENV: "other-token"}).token == TOKEN
    with pytest.raises(UserError, match=r"^--token: expected 8 to 256 letters"):
        access_policy(parse(["-m", "x", "--token", "a b;c=d"]), 1, {})
    with pytest.raises(UserError, match=r"^--allow-origin 'styles.example.com': expected an origin"):
        access_policy(parse(["-m", "x", "--allow-origin", "styles.example.com"]), 1, {})
    origins = access_policy(parse(["-m", "x", "--allow-origin", "HTTPS://Styles.Example.com/"]), 1, {}).allow_origins
    assert origins == ("https://styles.example.com",)


@pytest.mark.slow
def test_cli_on_every_interface_prints_the_token_url_and_requires_it(model, tmp_path):
    from .test_serve_startup import free_port

    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, TOKEN_ENV: TOKEN}
    cmd = [sys.executable, "-m", "inference.serve.cli", "-m", str(model), "--host", "0.0.0.0", "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd + ["--device", "cpu"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while "ready in" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"at http://127.0.0.1:{port}/?token={TOKEN}" in log.read_text()
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/api/info").status_code == 401
        assert httpx.get(f"{url}/api/info?token={TOKEN}").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_host_rules_by_bound_address():
    one = Access("192.168.1.4", 8000, (), TOKEN)  # one interface: its address only
    assert one.host_problem("192.168.1.4:8000") is None
    assert one.host_problem("evil.example:8000") is not None and one.host_problem("127.0.0.1:8000") is not None
    assert one.host_problem(None) is not None  # HTTP/1.0 without a Host header
    loop = Access("localhost", 8000)
    assert loop.host_problem("127.0.0.2") is None and loop.host_problem("LOCALHOST.:8000") is None
    assert loop.host_problem("localhost.evil.example") is not None
    assert Access("::", 8000, (), TOKEN).host_problem("anything.example") is None  # every interface: the token guards
    assert loop.origin_problem("http://localhost:8000", "localhost:8000") is None
    assert loop.origin_problem("https://localhost:8000.evil.example", "localhost:8000") is not None
