"""Slow, idle and odd clients of a real server on the loopback: very long
request targets, connections that never send a request, a slow upload, a result fetched while it is being written,
and many small jobs. The server answers in the one error shape, stays up, and keeps nothing without bound."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) talks to the server")

from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from inference.engine.options import RuntimeOptions  # noqa: E402
from inference.serve import video_jobs  # noqa: E402
from inference.serve.app import ServeConfig  # noqa: E402
from inference.serve.catalog import Catalog  # noqa: E402
from inference.serve.limits import MAX_TARGET_BYTES  # noqa: E402
from inference.serve.server import DeadlineH11Protocol  # noqa: E402

from .loopback_server import loopback_server, port_of, raw_request  # noqa: E402


def wait_for(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/videos/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_long_request_target_is_refused_and_not_logged_whole(model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path)) as url:
        code, body = raw_request(url, f"GET /api/info?x={'a' * 100_000} HTTP/1.1\r\nHost: 127.0.0.1")
        assert code == 414
        assert json.loads(body) == {"error": f"request target too long: 100011 bytes, the limit is {MAX_TARGET_BYTES}"}
        with pytest.raises(InvalidStatus) as refused:
            connect(url.replace("http", "ws") + "/ws/live?" + "b" * 5000, open_timeout=10)
        assert refused.value.response.status_code == 403
        assert raw_request(url, f"GET /api/info?x={'a' * 3000} HTTP/1.1\r\nHost: 127.0.0.1")[0] == 200
    assert max(len(r.getMessage()) for r in caplog.records) < MAX_TARGET_BYTES + 200


def test_bytes_that_are_not_http_get_the_error_shape(model, tmp_path):
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path)) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as s:
            s.sendall(b"\x16\x03\x01 hello, this is not HTTP\r\n\r\n")  # e.g. a TLS client on the plain port
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 ")
        assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"error": "not a valid HTTP request"}
        assert httpx.get(url + "/api/info").status_code == 200


def test_connections_without_a_request_are_closed(model, tmp_path, monkeypatch, make_video):
    monkeypatch.setattr(DeadlineH11Protocol, "head_timeout", 1.0)
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path)) as url:
        address = ("127.0.0.1", port_of(url))
        idle = [socket.create_connection(address) for _ in range(30)]
        half = socket.create_connection(address)
        half.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        slow = socket.create_connection(address)  # an upload whose headers are complete, trickling its body
        slow.sendall(b"POST /api/image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x"
                     b"\r\nContent-Length: 40\r\n\r\n--x\r\n")  # fmt: skip
        with connect(url.replace("http", "ws") + "/ws/live", open_timeout=10) as ws:
            assert httpx.get(url + "/api/info", timeout=10).status_code == 200  # served meanwhile
            time.sleep(1.5)
            assert all(closed_by_server(s, 5) for s in [*idle, half])
            ws.send(json.dumps({"type": "controls", "strength": 0.5}))  # an upgraded socket is not "idle"
            assert json.loads(ws.recv(timeout=10))["type"] == "controls"
        assert not closed_by_server(slow, 0.2)  # a request in progress is left to finish
        slow.sendall(b"\r\n--x--\r\n".ljust(40 - 5, b" "))
        for s in [*idle, half, slow]:
            s.close()


def test_result_while_the_job_is_being_written_is_a_409(model, make_video, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=6, size=(32, 24), audio=False).read_bytes()
    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    (tmp_path / "jobs").mkdir()
    with loopback_server(model, ServeConfig(jobs_folder=tmp_path / "jobs"), catalog) as url:
        hold, load = threading.Event(), catalog.load
        catalog.load = lambda *args: (hold.wait(30), load(*args))[1]
        try:
            job = httpx.post(url + "/api/videos", files={"video": ("clip.mp4", clip)}).json()
            r = httpx.get(f"{url}/api/videos/{job['id']}/result")
            assert r.status_code == 409 and r.json()["error"] in (
                "clip.mp4: the job is queued",
                "clip.mp4: the job is running",
            )
        finally:
            hold.set()
        assert wait_for(url, job["id"])["status"] == "done"
        r = httpx.get(f"{url}/api/videos/{job['id']}/result")
        assert r.status_code == 200 and r.content[4:8] == b"ftyp"


def test_many_small_jobs_keep_the_table_and_folder_bounded(model, make_video, tmp_path, monkeypatch):
    monkeypatch.setattr(video_jobs, "KEEP_FINISHED", 2)
    clip = make_video(tmp_path / "clip.mp4", n_frames=2, size=(32, 24), audio=False).read_bytes()
    folder = tmp_path / "jobs"
    folder.mkdir()
    ids = []
    with loopback_server(model, ServeConfig(max_jobs=1, jobs_folder=folder)) as url:
        for i in range(8):
            data = clip if i % 4 == 0 else b"not a video %d" % i
            r = httpx.post(url + "/api/videos", files={"video": (f"{i}.mp4", data)})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
            assert wait_for(url, ids[-1])["status"] == ("done" if i % 4 == 0 else "failed")
        known = [job_id for job_id in ids if httpx.get(f"{url}/api/videos/{job_id}").status_code == 200]
        assert known == ids[-3:]  # the two kept and the newest
        assert len(list(folder.iterdir())) <= 3  # results of forgotten jobs are deleted; uploads never stay
