"""``stylize-serve``'s HTTP API and webcam WebSocket, in process through FastAPI's TestClient (no port, no browser).

The browser drives the same routes in ``test_serve_browser.py``; here every answer is checked against the Stylizer
run directly on the same pixels.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'styletrain[serve]')")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from inference.engine.options import RuntimeOptions  # noqa: E402
from inference.engine.stylizer import Stylizer  # noqa: E402
from inference.serve.app import ServeConfig, create_app  # noqa: E402
from inference.serve.catalog import Catalog, Controls  # noqa: E402
from inference.serve.frames import STREAM_JPEG_QUALITY, FrameService, encode_image  # noqa: E402
from inference.serve.live_socket import REPLY_HEADER, TAG  # noqa: E402

from .conftest import two_style_artifact  # noqa: E402


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    """A two-style tiny artifact ("dots", "waves") in a folder of its own."""
    return two_style_artifact(tmp_path / "arts" / "multi.safetensors")


@pytest.fixture
def client(model: Path, tmp_path: Path):
    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch"))
    config = ServeConfig(max_upload_bytes=200_000, max_jobs=1, jobs_folder=tmp_path / "jobs")
    (tmp_path / "jobs").mkdir()
    with TestClient(create_app(catalog, config)) as c:
        yield c


def test_info_lists_the_artifact_and_limits(client):
    info = client.get("/api/info").json()
    assert info["artifacts"] == [{"name": "m", "architecture": "tiny", "styles": ["s"], "temporal": False}]
    assert info["default"] == "m" and info["device"] == "cpu"
    assert info["max_upload_bytes"] == 200_000 and info["max_jobs"] == 1 and info["max_pixels"] == 50_000_000


def test_image_in_image_out_matches_the_stylizer(client, model, make_image):
    image = make_image(48, 64, seed=3)
    r = client.post("/api/image", files={"image": ("photo.png", png(image))}, data={"format": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    expected = Stylizer.from_artifact(model, device="cpu", backend="torch").image(image)
    np.testing.assert_array_equal(decoded(r.content), expected)
    assert np.abs(expected.astype(int) - image).mean() > 5  # The network really changed the picture.


def test_controls_apply_per_request(client, make_image):
    image = make_image(32, 32, seed=4)
    r = client.post("/api/image", files={"image": ("a.png", png(image))}, data={"format": "png", "strength": "0"})
    np.testing.assert_array_equal(decoded(r.content), image)  # strength 0: the original frame
    r = client.post("/api/image", files={"image": ("a.png", png(image))}, data={"format": "png"})
    assert np.abs(decoded(r.content).astype(int) - image).mean() > 5  # and the next request is stylized again


@pytest.mark.parametrize(
    ("files", "data", "status", "words"),
    [
        ({"image": ("notes.txt", b"hello, not a picture")}, {}, 400, "notes.txt: not an image"),
        ({"image": ("a.png", None)}, {"style": "nope"}, 400, "unknown style 'nope'; this model has: 's'"),
        ({"image": ("a.png", None)}, {"artifact": "other"}, 400, "unknown artifact 'other'; available: m"),
        ({"image": ("a.png", None)}, {"strength": "2"}, 400, "strength: must be in [0, 1], got '2'"),
        ({"image": ("a.png", None)}, {"format": "tiff"}, 400, "format: expected one of"),
        ({"image": ("a.png", None)}, {"colour": "1"}, 400, "unknown control 'colour'"),
        ({}, {"strength": "1"}, 400, "expected one file"),
    ],
)
def test_bad_input_is_one_line(client, make_image, files, data, status, words):
    files = {k: (n, b if b is not None else png(make_image(16, 16))) for k, (n, b) in files.items()}
    r = client.post("/api/image", files=files or None, data=data)
    assert r.status_code == status
    message = r.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


def test_too_large_upload_is_refused(client):
    r = client.post("/api/image", files={"image": ("big.png", b"\0" * 300_000)})
    assert r.status_code == 413
    assert r.json()["error"] == "upload too large: the limit is 0.190735 MB (stylize-serve --max-upload-mb)"

    def chunks():  # No Content-Length: the limit still holds on the bytes received.
        for _ in range(40):
            yield b"\0" * 10_000

    r = client.post("/api/image", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "upload too large" in r.json()["error"]


def wait_for(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/videos/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_video_job_with_sound(client, make_video, tmp_path):
    import av

    clip = make_video(tmp_path / "clip.mp4", n_frames=12, size=(64, 48), audio=True)
    data = {"strength": "0.7", "consistency": "0.5"}
    r = client.post("/api/videos", files={"video": ("holiday.mp4", clip.read_bytes())}, data=data)
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "running") and job["total_frames"] == 12
    job = wait_for(client, job["id"])
    assert job["status"] == "done" and job["frames"] == 12 and job["progress"] == 1.0, job
    r = client.get(job["result"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert 'filename="holiday-stylized.mp4"' in r.headers["content-disposition"]
    out = tmp_path / "out.mp4"
    out.write_bytes(r.content)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 12
    assert not any(p.name.endswith("-in.mp4") for p in (tmp_path / "jobs").iterdir())  # the upload is removed


def test_video_job_errors_are_one_line(client):
    r = client.post("/api/videos", files={"video": ("broken.mp4", b"not a video at all" * 10)})
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("broken.mp4: ") and "\n" not in job["error"] and "/tmp" not in job["error"]
    r = client.get(f"/api/videos/{job['id']}/result")
    assert r.status_code == 409 and "failed" in r.json()["error"]
    r = client.get("/api/videos/0123")
    assert r.status_code == 404 and r.json()["error"] == "unknown video job '0123'"


def test_concurrent_job_limit(client, monkeypatch):
    jobs = client.app.app.state.jobs  # UploadLimit wraps the FastAPI app
    job_id, path = jobs.new_upload("a.mp4")
    path.write_bytes(b"x")
    hold, load = threading.Event(), jobs.catalog.load
    monkeypatch.setattr(jobs.catalog, "load", lambda *args: (hold.wait(30), load(*args))[1])  # the job stays running
    jobs.start(job_id, "a.mp4", path, Controls("m"))
    r = client.post("/api/videos", files={"video": ("b.mp4", b"y")})
    hold.set()
    assert r.status_code == 429  # Too Many Requests: try again later
    assert r.json()["error"] == "1 video jobs are already running (the --max-jobs limit); try again later"


def frame_message(tag: float, array: np.ndarray) -> bytes:
    return TAG.pack(tag) + png(array)


def test_webcam_socket_stylizes_frames_and_applies_controls(client, model, make_image):
    image = make_image(40, 56, seed=5)
    expected = Stylizer.from_artifact(model, device="cpu", backend="torch").image(image)
    with client.websocket_connect("/ws/live") as ws:
        ws.send_bytes(frame_message(1.5, image))
        reply = ws.receive_bytes()
        tag, server_ms, dropped = REPLY_HEADER.unpack(reply[: REPLY_HEADER.size])
        assert tag == 1.5 and server_ms > 0 and dropped == 0
        out = decoded(reply[REPLY_HEADER.size :])
        np.testing.assert_array_equal(out, decoded(encode_image(expected, "JPEG", STREAM_JPEG_QUALITY)))
        ws.send_text(json.dumps({"type": "controls", "strength": 0}))
        assert json.loads(ws.receive_text())["controls"]["strength"] == 0
        ws.send_bytes(frame_message(2.0, image))
        out = decoded(ws.receive_bytes()[REPLY_HEADER.size :])
        np.testing.assert_array_equal(out, decoded(encode_image(image, "JPEG", STREAM_JPEG_QUALITY)))  # strength 0
        ws.send_text(json.dumps({"type": "controls", "style": "nope"}))
        assert "unknown style 'nope'" in json.loads(ws.receive_text())["error"]
        ws.send_bytes(TAG.pack(3.0) + b"garbage")
        assert json.loads(ws.receive_text()) == {
            "type": "error",
            "error": "frame: not an image Pillow can identify",
        }


def test_webcam_consistency_carries_the_previous_output(client, make_image):
    image = make_image(48, 64, seed=8)
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)  # a still camera's sensor noise

    def send(tag: float, frame: np.ndarray, **controls) -> np.ndarray:
        ws.send_text(json.dumps({"type": "controls", **controls}))
        ws.receive_text()
        ws.send_bytes(frame_message(tag, frame))
        return decoded(ws.receive_bytes()[REPLY_HEADER.size :])

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(int) - b).mean())

    with client.websocket_connect("/ws/live") as ws:
        first = send(1.0, image, consistency=1)
        still = send(2.0, noisy)  # The camera did not move: full consistency carries the stylized pixels on.
        original = send(3.0, noisy, strength=0)  # Strength 0 is the camera itself, even with a history to carry.
        plain = send(4.0, noisy, consistency=0, strength=1)  # Off: the noisy frame's own stylization.
    assert distance(still, first) < 0.6 * distance(plain, first)
    np.testing.assert_array_equal(original, decoded(encode_image(noisy, "JPEG", STREAM_JPEG_QUALITY)))


def test_webcam_socket_drops_old_frames_never_queues(client, make_image):
    image = make_image(120, 160, seed=6)
    n = 30
    with client.websocket_connect("/ws/live") as ws:
        for i in range(n):
            ws.send_bytes(frame_message(float(i), image))
        tags, dropped = [], 0
        while not tags or tags[-1] != n - 1:  # The newest frame is never dropped.
            tag, _, dropped = REPLY_HEADER.unpack(ws.receive_bytes()[: REPLY_HEADER.size])
            tags.append(int(tag))
    assert tags == sorted(tags) and len(tags) + dropped == n, (tags, dropped)


def test_concurrent_frames_share_a_batch(model, make_image, monkeypatch):
    catalog = Catalog(model, RuntimeOptions(device="cpu", backend="torch", batch_size=2))
    catalog.stylizer("m")
    service = FrameService(catalog)
    images = [make_image(24, 32, seed=s) for s in range(4)]
    hold, stylizer = threading.Event(), catalog.stylizer
    # The worker waits here with the first request while the others queue up.
    monkeypatch.setattr(catalog, "stylizer", lambda name: (hold.wait(30), stylizer(name))[1])
    futures = [service.submit(im, Controls("m")) for im in images]
    time.sleep(0.2)
    assert futures[1].cancel()  # A caller that gave up (a webcam that left) must not break the worker.
    hold.set()
    outs = [f.result(timeout=30) for f in futures[:1] + futures[2:]]
    assert service.submit(images[0], Controls("m")).result(timeout=30).shape == images[0].shape
    service.close()
    reference = Stylizer.from_artifact(model, device="cpu", backend="torch")
    for im, out in zip(images[:1] + images[2:], outs, strict=True):
        np.testing.assert_allclose(out, reference.image(im), atol=1)
    assert service.frames == 4 and service.batches == 3  # [0, (1 cancelled)], [2, 3], then the last request


def test_multi_style_artifacts_from_a_folder(multi, model, make_image):
    (multi.parent / "m.safetensors").write_bytes(model.read_bytes())
    catalog = Catalog(multi.parent, RuntimeOptions(device="cpu", backend="torch"))
    assert [a["name"] for a in catalog.describe()] == ["m", "multi"]
    with TestClient(create_app(catalog, ServeConfig(jobs_folder=None))) as c:
        image = png(make_image(32, 32, seed=7))
        outs = [
            decoded(c.post("/api/image", files={"image": ("a.png", image)},
                           data={"artifact": "multi", "style": style, "format": "png"}).content)
            for style in ("dots", "waves", "dots:0.5,waves:0.5")
        ]  # fmt: skip
    assert np.abs(outs[0].astype(int) - outs[1]).mean() > 1  # the styles differ
    assert 0 < np.abs(outs[2].astype(int) - outs[0]).mean() < np.abs(outs[1].astype(int) - outs[0]).mean() + 1


def test_cli_errors_and_binding(tmp_path, capsys):
    from inference.serve.cli import is_loopback, main

    with pytest.raises(SystemExit) as exit_info:
        main(["-m", str(tmp_path / "missing.safetensors")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.safetensors'}: no such artifact or folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main(["-m", str(tmp_path / "empty")])
    assert "no .safetensors artifacts in this folder" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_cli_help():
    from inference.serve.cli import build_parser

    text = build_parser().format_help()
    for option in ("--host", "--port", "--max-upload-mb", "--max-jobs", "--device"):
        assert option in text
    assert struct.calcsize("<dfI") == REPLY_HEADER.size == 16


def test_readme_serve_commands_parse():
    import shlex

    from inference.serve.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = [shlex.split(line, comments=True) for line in readme.splitlines() if line.startswith("stylize-serve ")]
    assert len(commands) >= 2
    for words in commands:
        build_parser().parse_args(words[1:])


def test_an_artifact_that_fails_to_load_answers_one_line(model, tmp_path, make_image):
    folder = tmp_path / "arts"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(model.read_bytes())
    (folder / "b.safetensors").write_bytes(model.read_bytes())
    catalog = Catalog(folder, RuntimeOptions(device="cpu", backend="torch"))
    (folder / "b.safetensors").write_bytes(model.read_bytes()[:200])  # truncated after the server started
    with TestClient(create_app(catalog, ServeConfig())) as c:
        image = {"image": ("a.png", png(make_image(16, 16)))}
        r = c.post("/api/image", files=image, data={"artifact": "b"})
        assert r.status_code == 400 and "b.safetensors" in r.json()["error"]
        assert c.post("/api/image", files=image, data={"artifact": "a"}).status_code == 200  # the worker lives on


def test_stopping_server_ends_running_jobs(model, make_video, tmp_path):
    from inference.serve.video_jobs import VideoJobs

    jobs = VideoJobs(Catalog(model, RuntimeOptions(device="cpu", backend="torch")), max_jobs=1)
    clip = make_video(tmp_path / "clip.mp4", n_frames=12, size=(64, 48), audio=False)
    job_id, path = jobs.new_upload("clip.mp4")
    path.write_bytes(clip.read_bytes())
    jobs.stopping.set()  # As close() does, before the job's first frame: it must end there, not run to the end.
    job = jobs.start(job_id, "clip.mp4", path, Controls("m"))
    jobs.close()
    assert job.status == "failed" and job.error == "clip.mp4: the server stopped before the video was finished"
    assert job.frames == 0 and not jobs.folder.exists()


def test_pixel_limit(make_image):
    from inference.core.errors import UserError
    from inference.serve.frames import decode_image

    data = png(make_image(20, 30))
    assert decode_image(data, "a.png", max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(UserError, match=r"^a.png: 30x20 is more than 0.000599 megapixels$"):
        decode_image(data, "a.png", max_pixels=599)
