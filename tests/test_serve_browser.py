"""``stylize-serve`` in a real browser: Debian's headless Chromium, driven by Playwright, with Chromium's fake camera.

Skips (one reason) without ``/usr/bin/chromium`` or the ``playwright`` package; never downloads a browser. Set
``STYLETRAIN_SERVE_SCREENSHOT=docs/serve.png`` to save the README's screenshot of the page.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from .conftest import two_style_artifact

CHROMIUM = os.environ.get("STYLETRAIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import fastapi  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[serve,dev]')"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``light`` artifact (the real-time CPU network; untrained, fixed weights), shared by the module's tests (one
    server, one browser)."""
    import torch

    from inference.model.artifact import save_artifact
    from inference.model.networks import build_network

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("serve-browser") / "light.safetensors"
    return save_artifact(path, build_network("light"), style_name="s", style_sha256="0" * 64, config={}, temporal=False)


@pytest.fixture(scope="module")
def multi(model: Path) -> Path:
    """A two-style ``light`` artifact ("dots", "waves") beside ``model``: the server offers both."""
    return two_style_artifact(model.parent / "multi.safetensors", "light")


@contextmanager
def serving(folder: Path, log_path: Path, *args: str, env: dict[str, str] | None = None, query: str = ""):
    """``stylize-serve -m folder ARGS`` in its own process, as a user starts it; yields its URL (port 127.0.0.1, with
    ``query`` to reach it) once it answers, and stops it with SIGTERM."""
    port = free_port()
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "inference.serve.cli", "-m", str(folder), "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd + list(args), stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # Generous: CI machines are shared; bench/live.py measures the start.
        while True:
            try:
                urllib.request.urlopen(url + "/api/info" + query, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log_path.read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("stylize-serve did not stop within 30 s of SIGTERM") from None
        finally:
            log.close()


@pytest.fixture(scope="module")
def server(model: Path, multi: Path, tmp_path_factory: pytest.TempPathFactory):
    """``stylize-serve`` on the folder of both artifacts; yields its URL once it answers."""
    with serving(model.parent, tmp_path_factory.mktemp("serve-log") / "server.log", "--max-upload-mb", "5") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1340, "height": 1000})
    context.grant_permissions(["camera"], origin=server)
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield page
    context.close()


def rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


_LAST_PAIR = """async () => {
  const tag = live.shown;
  const shown = document.getElementById("stylized").toDataURL("image/png");
  const blob = live.sent.get(tag);
  const sent = blob ? new Uint8Array(await blob.arrayBuffer()) : null;
  let binary = "";
  if (sent) for (const b of sent) binary += String.fromCharCode(b);
  return { shown: shown.split(",")[1], sent: sent ? btoa(binary) : null };
}"""


def test_webcam_stream_in_the_browser(page, model, multi):
    from inference.engine.stylizer import Stylizer
    from inference.serve.frames import STREAM_JPEG_QUALITY, encode_image

    page.click("#start")
    page.wait_for_function("window.liveStats.received >= 10", timeout=60_000)
    stats = page.evaluate("window.liveStats")
    assert float(page.inner_text("#fps")) > 0 and stats["fps"] > 0 and stats["medianLatency"] > 0
    pair = page.evaluate(_LAST_PAIR)
    assert pair["sent"] is not None, "the shown frame's camera frame was not kept"
    camera, shown = rgb(base64.b64decode(pair["sent"])), rgb(base64.b64decode(pair["shown"]))
    assert camera.shape == shown.shape == (480, 640, 3)
    stylizer = Stylizer.from_artifact(model, device="cpu")
    expected = rgb(encode_image(stylizer.image(camera.astype(np.uint8)), "JPEG", STREAM_JPEG_QUALITY))
    # What the artifact makes of the camera frame, up to the browser's JPEG decoder; far from the camera frame.
    assert np.abs(shown - expected).mean() < 2.0
    assert np.abs(shown - camera).mean() > 10 * np.abs(shown - expected).mean()
    # A control changes the next frames without a restart: strength 0 shows the camera frame itself.
    page.eval_on_selector("#strength", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }")
    seen = page.evaluate("window.liveStats.received")
    page.wait_for_function(f"window.liveStats.received >= {seen + 6}", timeout=30_000)
    pair = page.evaluate(_LAST_PAIR)
    camera, shown = rgb(base64.b64decode(pair["sent"])), rgb(base64.b64decode(pair["shown"]))
    assert np.abs(shown - camera).mean() < 3.0
    screenshot = os.environ.get("STYLETRAIN_SERVE_SCREENSHOT")
    page.eval_on_selector("#strength", "e => { e.value = 1; e.dispatchEvent(new Event('input')); }")
    page.wait_for_function(f"window.liveStats.received >= {seen + 12}", timeout=30_000)
    if screenshot:
        page.screenshot(path=screenshot, clip={"x": 0, "y": 0, "width": 1340, "height": 700})
    # Another artifact and one of its styles, chosen on the page, apply to the next frames.
    assert page.is_hidden("#style-row")
    page.select_option("#artifact", "multi")
    assert page.is_visible("#style-row")
    page.select_option("#style", "waves")
    seen = page.evaluate("window.liveStats.received")
    page.wait_for_function(f"window.liveStats.received >= {seen + 6}", timeout=60_000)
    pair = page.evaluate(_LAST_PAIR)
    page.click("#stop")
    camera, shown = rgb(base64.b64decode(pair["sent"])), rgb(base64.b64decode(pair["shown"]))
    waves = Stylizer.from_artifact(multi, device="cpu", style="waves")
    expected = rgb(encode_image(waves.image(camera.astype(np.uint8)), "JPEG", STREAM_JPEG_QUALITY))
    assert np.abs(shown - expected).mean() < 2.0


def test_uploads_and_errors_in_the_browser(page, make_image, make_video, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(make_image(96, 128, seed=2)).save(photo)
    page.set_input_files("#image-file", str(photo))
    page.wait_for_function("document.getElementById('image-result').naturalWidth === 128", timeout=30_000)
    assert page.is_hidden("#error")

    clip = make_video(tmp_path / "clip.mp4", n_frames=10, size=(64, 48), audio=True)
    page.set_input_files("#video-file", str(clip))
    page.wait_for_selector("#video-download", state="visible", timeout=60_000)
    assert page.inner_text("#video-status") == "done: 10 frames"
    href = page.get_attribute("#video-download", "href")
    data = page.evaluate(f"fetch('{href}').then(r => r.arrayBuffer()).then(b => b.byteLength)")
    assert data > 1000

    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#image-file", str(notes))
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    message = page.inner_text("#error")
    assert message == "notes.txt: not an image Pillow can identify"

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (6 * 2**20))
    page.set_input_files("#image-file", str(big))
    page.wait_for_function("document.getElementById('error').textContent.startsWith('upload too large')")
    assert page.inner_text("#error") == "upload too large: the limit is 5 MB (stylize-serve --max-upload-mb)"


def test_page_with_a_token_beyond_the_loopback(browser, model, make_image, tmp_path):
    """Listening on every interface, the server answers nothing without its token; the page opened from the printed
    URL (``?token=``) keeps it in a cookie, so its own requests, image upload and webcam socket work."""
    from PIL import Image

    token = "browser-test-token-0123"
    env = {**os.environ, "STYLIZE_SERVE_TOKEN": token}
    with serving(model, tmp_path / "server.log", "--host", "0.0.0.0", env=env, query=f"?token={token}") as url:
        assert f"at {url}/?token={token}" in (tmp_path / "server.log").read_text()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/", timeout=10)
        assert refused.value.code == 401
        context = browser.new_context()
        context.grant_permissions(["camera"], origin=url)
        page = context.new_page()
        try:
            page.goto(f"{url}/?token={token}")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            photo = tmp_path / "photo.png"
            Image.fromarray(make_image(48, 64, seed=2)).save(photo)
            page.set_input_files("#image-file", str(photo))
            page.wait_for_function("document.getElementById('image-result').naturalWidth === 64", timeout=30_000)
            page.click("#start")
            page.wait_for_function("window.liveStats.received >= 3", timeout=60_000)
            page.click("#stop")
            assert page.is_hidden("#error")
        finally:
            context.close()
