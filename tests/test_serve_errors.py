"""Every failure of a real ``stylize-serve`` on the loopback answers the one error shape, ``{"error": "<one line>"}``,
bounded in length, with no traceback in the server's log: broken uploads, framework refusals, clients that leave,
hostile WebSocket messages."""

from __future__ import annotations

import io
import json
import logging
import socket
import struct
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) talks to the server")

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from inference.core.errors import MAX_MESSAGE_CHARS  # noqa: E402
from inference.serve.app import ServeConfig  # noqa: E402

from .loopback_server import loopback_server, multipart, png, port_of, raw_request  # noqa: E402


@pytest.fixture
def server(model, tmp_path):
    (tmp_path / "jobs").mkdir()
    with loopback_server(model, ServeConfig(max_upload_bytes=4 * 2**20, jobs_folder=tmp_path / "jobs")) as url:
        yield url


@pytest.fixture(autouse=True)
def inference_log_reaches_caplog(monkeypatch):
    """In-process CLI tests (``setup_logging``) stop the ``inference`` logger from propagating; caplog needs it."""
    logger = logging.getLogger("inference")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.INFO)


def one_error(response: httpx.Response | tuple[int, bytes], status: int) -> str:
    """The message of a ``status`` answer in the one error shape (nothing else in the body)."""
    code, body = (response.status_code, response.content) if isinstance(response, httpx.Response) else response
    assert code == status, (code, body[:300])
    document = json.loads(body)
    assert list(document) == ["error"], document
    message = document["error"]
    assert "\n" not in message and "Traceback" not in message and len(message) <= MAX_MESSAGE_CHARS
    return message


def no_trace(caplog) -> None:
    """The server logged no traceback, no error and no 500."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or " 500" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


def truncated_png(make_image) -> bytes:
    """A PNG whose IDAT is cut short (its length and CRC made to match) and followed by a zero chunk header: Pillow
    raises SyntaxError on it, not OSError."""
    data = png(make_image(64, 64, seed=1))
    at, n = data.index(b"IDAT"), 500
    body = data[at + 4 : at + 4 + n]
    return (
        data[: at - 4]
        + struct.pack(">I", n)
        + b"IDAT"
        + body
        + struct.pack(">I", zlib.crc32(b"IDAT" + body))
        + b"\0" * 8
    )


def test_truncated_png_is_a_400(server, make_image, caplog):
    from PIL import Image

    data = truncated_png(make_image)
    with pytest.raises(SyntaxError):  # the decoder's path this test covers
        Image.open(io.BytesIO(data)).convert("RGB")
    r = httpx.post(server + "/api/image", files={"image": ("cut.png", data)})
    assert one_error(r, 400).startswith("cut.png: not a readable image (SyntaxError: broken PNG file")
    no_trace(caplog)


@pytest.mark.parametrize(
    ("request_head", "body", "status", "words"),
    [
        ("POST /api/image HTTP/1.1\r\nContent-Type: multipart/form-data", b"--x\r\n\r\n", 400, "boundary"),
        ("GET /no/such/page HTTP/1.1", b"", 404, "Not Found"),
        ("DELETE /api/info HTTP/1.1", b"", 405, "Method Not Allowed"),
        ("GET /static/nothing.js HTTP/1.1", b"", 404, "Not Found"),
    ],
)
def test_framework_errors_have_the_error_shape(server, request_head, body, status, words, caplog):
    head = f"{request_head}\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}"
    assert words in one_error(raw_request(server, head, body), status)
    no_trace(caplog)


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ([(f"f{i}", None, b"1") for i in range(3000)], "Too many fields"),
        ([(f"f{i}", f"{i}.png", b"1") for i in range(1200)], "Too many files"),
        ([("style", None, b"a" * (1536 * 1024)), ("image", "a.png", b"1")], "exceeded maximum size"),
    ],
)
def test_multipart_limits_have_the_error_shape(server, parts, words, caplog):
    body = multipart(parts)
    r = httpx.post(
        server + "/api/image", content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"}
    )
    assert words in one_error(r, 400)
    no_trace(caplog)


def test_messages_are_bounded(server, make_image, caplog):
    image = png(make_image(16, 16))
    r = httpx.post(server + "/api/image", files={"image": ("a.png", image)}, data={"style": "x" * 100_000})
    message = one_error(r, 400)
    assert message.startswith("style: unknown style 'xxxx") and message.endswith("'; this model has: 's'")
    r = httpx.post(server + "/api/image", files={"image": ("n" * 600 + ".txt", b"text")})
    message = one_error(r, 400)  # the name is cut in its middle; the problem stays whole
    assert message.startswith("nnnn") and message.endswith("n.txt: not an image Pillow can identify")
    assert one_error(httpx.get(server + "/api/videos/" + "z" * 3000), 404).startswith("unknown video job 'zzz")
    no_trace(caplog)


def test_client_leaving_mid_upload_is_no_server_error(server, make_image, caplog):
    caplog.set_level(logging.INFO)
    body = multipart([("image", "a.png", png(make_image(64, 64)) * 40)])
    head = (
        "POST /api/image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port_of(server))) as s:
        s.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.3)  # the route is reading the form
    deadline = time.monotonic() + 10
    while not any("disconnected" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.05)
    assert httpx.get(server + "/api/info").status_code == 200  # the server is still up
    no_trace(caplog)


@pytest.mark.parametrize(
    ("depth", "code", "words"),
    [(100_000, 1009, "controls message too long"), (5_000, 1008, "controls message nested too deeply")],
)
def test_hostile_controls_message_closes_the_socket_with_a_reason(server, depth, code, words, caplog):
    with connect(server.replace("http", "ws") + "/ws/live", open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps({"type": "controls", "strength": 0.5}))
        assert json.loads(ws.recv(timeout=10))["controls"]["strength"] == 0.5
        ws.send("[" * depth + "]" * depth)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "no close frame"
    assert closed.value.rcvd.code == code and closed.value.rcvd.reason.startswith(words)
    assert httpx.get(server + "/api/info").status_code == 200
    no_trace(caplog)


def test_bad_json_controls_keep_the_socket(server):
    with connect(server.replace("http", "ws") + "/ws/live", open_timeout=10) as ws:
        ws.send("{not json")
        message = json.loads(ws.recv(timeout=10))
        assert message["type"] == "error" and message["error"].startswith("controls: not JSON")
        ws.send(json.dumps({"type": "controls", "strength": 0.25}))
        assert json.loads(ws.recv(timeout=10))["controls"]["strength"] == 0.25


def test_uploaded_frame_of_noise_has_an_error_not_a_trace(server, caplog):
    r = httpx.post(server + "/api/image", files={"image": ("noise.png", np.random.default_rng(0).bytes(5000))})
    assert one_error(r, 400) == "noise.png: not an image Pillow can identify"
    no_trace(caplog)
