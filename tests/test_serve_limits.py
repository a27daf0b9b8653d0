"""The server's limits hold on a real server on the loopback: one pixel budget for every route
(image, webcam frame, video job) counted after the stroke scale and read from headers before decoding, and the
``--max-jobs`` slots counted under one lock from admission to the job's end."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) talks to the server")

from websockets.sync.client import connect  # noqa: E402

from inference.engine.options import RuntimeOptions  # noqa: E402
from inference.serve.app import ServeConfig  # noqa: E402
from inference.serve.catalog import Catalog  # noqa: E402
from inference.serve.live_socket import REPLY_HEADER, TAG  # noqa: E402
from inference.serve.pixels import check_pixels, work_pixels  # noqa: E402

from .loopback_server import loopback_server, multipart, png, port_of  # noqa: E402


def wait_for(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/videos/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_work_pixels_count_the_network_input():
    assert work_pixels(1900, 1900, 0.25) == (7600 * 7600, 7600, 7600)  # 57.8 MP from a 3.6 MP image
    assert work_pixels(800, 600, 2.0) == (800 * 600, 400, 300)  # larger strokes: the frame itself is the most
    check_pixels(800, 800, 8_294_400, "frame", 1.0)
    with pytest.raises(Exception, match=r"^frame: 800x800 at stroke_scale 0.25 \(the network runs at 3200x3200\)"):
        check_pixels(800, 800, 8_294_400, "frame", 0.25)


def test_image_budget_applies_after_the_stroke_scale(model, make_image, tmp_path):
    image = png(make_image(40, 40))
    with loopback_server(model, ServeConfig(max_pixels=2000, jobs_folder=tmp_path)) as url:
        ok = httpx.post(url + "/api/image", files={"image": ("a.png", image)}, data={"stroke_scale": "1"})
        assert ok.status_code == 200
        r = httpx.post(url + "/api/image", files={"image": ("a.png", image)}, data={"stroke_scale": "0.25"})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "a.png: 40x40 at stroke_scale 0.25 (the network runs at 160x160) is more than 0.002 megapixels"
    )


def test_webcam_budget_applies_after_the_stroke_scale(model, make_image, tmp_path):
    frame = TAG.pack(1.0) + png(make_image(40, 40))
    with loopback_server(model, ServeConfig(max_pixels=2000, jobs_folder=tmp_path)) as url:
        with connect(url.replace("http", "ws") + "/ws/live", open_timeout=10) as ws:
            ws.send(frame)
            assert len(ws.recv(timeout=30)) > REPLY_HEADER.size  # 1600 pixels: stylized
            ws.send(json.dumps({"type": "controls", "stroke_scale": 0.25}))
            ws.recv(timeout=10)
            ws.send(frame)
            message = json.loads(ws.recv(timeout=30))
    assert message == {
        "type": "error",
        "error": "frame: 40x40 at stroke_scale 0.25 (the network runs at 160x160) is more than 0.002 megapixels",
    }


def test_video_job_budget_from_the_declared_size(model, make_video, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=6, size=(64, 48), audio=False).read_bytes()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    with loopback_server(model, ServeConfig(max_pixels=2000, max_jobs=1, jobs_folder=jobs)) as url:
        for _ in range(2):  # the refused upload gives its --max-jobs slot back: the second is refused the same way
            r = httpx.post(url + "/api/videos", files={"video": ("clip.mp4", clip)})
            assert r.status_code == 400
            assert r.json()["error"] == "clip.mp4: 64x48 is more than 0.002 megapixels"
        assert list(jobs.iterdir()) == []  # the upload is removed, no job was made
        # A pixel bomb, scaled down: a .mov of PNG frames. FFmpeg's probe would decode a frame to learn its format;
        # handed the budget, it refuses to, and the size reads as unknown.
        r = httpx.post(url + "/api/videos", files={"video": ("bomb.mov", png_movie(tmp_path / "bomb.mov", 200))})
        assert r.status_code == 400
        assert r.json()["error"] == "bomb.mov: the video's frame size is unknown or more than 0.002 megapixels"
    with loopback_server(model, ServeConfig(max_pixels=10_000, max_jobs=1, jobs_folder=jobs)) as url:
        r = httpx.post(url + "/api/videos", files={"video": ("clip.mp4", clip)}, data={"stroke_scale": "0.25"})
        assert r.status_code == 400
        assert r.json()["error"] == (
            "clip.mp4: 64x48 at stroke_scale 0.25 (the network runs at 256x192) is more than 0.01 megapixels"
        )
        r = httpx.post(url + "/api/videos", files={"video": ("clip.mp4", clip)}, data={"stroke_scale": "1"})
        assert r.status_code == 202 and r.json()["total_frames"] == 6
        assert wait_for(url, r.json()["id"])["status"] == "done"


def png_movie(path, side: int) -> bytes:
    """Two ``side`` x ``side`` black frames as PNG in a .mov (tiny on disk, large once decoded)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "rgb24"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path.read_bytes()


def test_six_simultaneous_uploads_two_slots(model, make_video, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=4, size=(32, 24), audio=False).read_bytes()
    body = multipart([("video", "clip.mp4", clip)])
    head = (
        "POST /api/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    (tmp_path / "jobs").mkdir()
    config = ServeConfig(max_jobs=2, jobs_folder=tmp_path / "jobs")
    with loopback_server(model, config, catalog) as url:
        hold, load = threading.Event(), catalog.load
        catalog.load = lambda *args: (hold.wait(30), load(*args))[1]  # admitted jobs stay running until released
        sockets = [socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) for _ in range(6)]
        try:
            for s in sockets:  # every body but its last bytes...
                s.sendall(head + body[:-8])
            time.sleep(0.3)
            for s in sockets:  # ...then all six complete together
                s.sendall(body[-8:])
            answers = []
            for s in sockets:
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                status = int(data.split(b" ", 2)[1])
                answers.append((status, json.loads(data.partition(b"\r\n\r\n")[2])))
        finally:
            hold.set()
            for s in sockets:
                s.close()
        statuses = sorted(status for status, _ in answers)
        assert statuses == [202, 202, 429, 429, 429, 429], answers
        refusals = {doc["error"] for status, doc in answers if status == 429}
        assert refusals == {"2 video jobs are already running (the --max-jobs limit); try again later"}
        for status, doc in answers:
            if status == 202:
                assert wait_for(url, doc["id"])["status"] == "done"
        r = httpx.post(url + "/api/videos", files={"video": ("clip.mp4", clip)})  # the slots were given back
        assert r.status_code == 202 and wait_for(url, r.json()["id"])["status"] == "done"
        assert np.isfinite(r.json()["total_frames"])


def test_each_decoded_frame_is_checked_too(model, make_video, tmp_path):
    """A stream may declare one size and carry another: the job checks every frame before the network sees it (here
    the job is started without the header check, as if the header had lied)."""
    from inference.serve.catalog import Controls
    from inference.serve.video_jobs import VideoJobs

    jobs = VideoJobs(Catalog(model, RuntimeOptions(device="cpu", backend="torch")), 1, tmp_path / "j", max_pixels=2000)
    (tmp_path / "j").mkdir()
    clip = make_video(tmp_path / "clip.mp4", n_frames=4, size=(64, 48), audio=False)
    job_id, path = jobs.new_upload("clip.mp4")
    path.write_bytes(clip.read_bytes())
    job = jobs.start(job_id, "clip.mp4", path, Controls("m"))
    jobs.close()
    assert job.status == "failed" and job.error == "clip.mp4: frame: 64x48 is more than 0.002 megapixels"
    assert job.frames == 0 and jobs.active() == 0 and not (tmp_path / "j" / f"{job_id}-stylized.mp4").exists()
