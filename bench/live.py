"""Live figures: the webcam round trip through ``stylize-serve`` in a real browser, and live ``stylize-video`` on a
real-time UDP stream.

* **webcam**: ``stylize-serve`` started as a user starts it (time until the page answers: "ready"), Debian's headless
  Chromium driven by Playwright with its fake camera (``--camera``, 640x480 by default) at 30 frames/s, streaming for
  ``--seconds`` after a warm-up: stylized frames/s displayed, median round-trip latency (capture to display), the
  server's own time per frame, the frames the server dropped (latest frame wins), and the CPU time per frame of the
  server and of the browser.
* **live CLI**: a 25 frames/s 640x360 H.264 MPEG-TS stream sent over UDP on localhost, paced like a camera (frames of
  a real clip, looped), stylized by ``stylize-video udp://... -o out.mp4``: frames written and dropped, and whether
  it kept real time (the run ends within a second of the stream's duration).

Networks have untrained weights (speed does not depend on them). Everything runs on this machine, browser included;
the load average at the start is recorded, since other processes share the cores.

Usage (from the repository root)::

    python -m bench.live                       # light, both parts
    python -m bench.live --network johnson --device cuda --camera 1280x720 --parts webcam   # the GPU target

Results: a table on stdout and ``bench/results/live-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.environment import environment, shared_clip

CHROMIUM = "/usr/bin/chromium"
CLIP = shared_clip("big_buck_bunny_5s.mp4")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_artifact(folder: Path, network: str) -> Path:
    import torch

    from inference.model.artifact import save_artifact
    from inference.model.networks import build_network

    torch.manual_seed(0)
    path = folder / f"{network}.safetensors"
    return save_artifact(path, build_network(network), style_name="s", style_sha256="0" * 64, config={}, temporal=False)


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            stats[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    todo, total = [root], 0.0
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def start_server(model: Path, device: str, log: Path, threads: int | None) -> tuple[subprocess.Popen, str, float]:
    """Start ``stylize-serve``; return the process, its URL and the seconds until ``/api/info`` answered."""
    port = free_port()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "inference.serve.cli", "-m", str(model), "--port", str(port), "--device", device]
    cmd += ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2).read()
            return proc, url, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit(log.read_text()) from None
            time.sleep(0.05)


def webcam(
    model: Path,
    device: str,
    seconds: float,
    warmup: float,
    screenshot: str | None = None,
    threads: int | None = None,
    camera: tuple[int, int] = (640, 480),
) -> dict:
    """The browser round trip; returns the figures."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, ready = start_server(model, device, Path(tmp) / "server.log", threads)
        try:
            with sync_playwright() as p:
                args = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream=fps=30",
                        "--use-fake-ui-for-media-stream", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
                browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
                page = browser.new_page(viewport={"width": 1340, "height": 1000})
                page.goto(f"{url}/?width={camera[0]}&height={camera[1]}")
                page.wait_for_selector("body[data-ready='1']")
                page.click("#start")
                page.wait_for_function("window.liveStats.received >= 3", timeout=120_000)
                time.sleep(warmup)
                start = page.evaluate("[window.liveStats.received, performance.now()]")
                cpu0 = cpu_seconds(proc.pid), cpu_seconds(os.getpid()) - cpu_seconds(proc.pid)
                time.sleep(seconds)
                stats = page.evaluate("({...window.liveStats, now: performance.now(), lat: live.latencies})")
                cpu1 = cpu_seconds(proc.pid), cpu_seconds(os.getpid()) - cpu_seconds(proc.pid)
                if screenshot:
                    page.set_viewport_size({"width": 1340, "height": 1000})
                    page.screenshot(path=screenshot, clip={"x": 0, "y": 0, "width": 1340, "height": 700})
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            ready_line = next(
                (ln for ln in (Path(tmp) / "server.log").read_text().splitlines() if "ready in" in ln), ""
            )
    frames = stats["received"] - start[0]
    return {
        "camera": f"{camera[0]}x{camera[1]}",
        "ready_seconds": round(ready, 2),
        # The server's own line: wall time in main() and CPU time of the whole process (imports included), which
        # other jobs on the machine do not inflate the way they inflate wall time.
        "ready_line": ready_line,
        "frames": frames,
        "fps": round(frames / ((stats["now"] - start[1]) / 1000), 2),
        "median_latency_ms": round(float(np.median(stats["lat"])), 1),
        "server_ms_last": round(stats["serverMs"], 1),
        "dropped_by_server": stats["dropped"],
        # CPU per displayed frame: the server (decode, network, encode) and the browser (camera, capture and JPEG
        # encoding, decoding, drawing; with this script and Playwright's driver), against the 2 cores' budget.
        "server_cpu_ms_per_frame": round(1000 * (cpu1[0] - cpu0[0]) / max(1, frames), 1),
        "browser_cpu_ms_per_frame": round(1000 * (cpu1[1] - cpu0[1]) / max(1, frames), 1),
    }


def send_stream(port: int, frames: list[np.ndarray], seconds: float, fps: int = 25) -> None:
    """Send ``seconds`` of ``frames`` (looped) as H.264 MPEG-TS over UDP, one frame every ``1 / fps`` s."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", mode="w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"tune": "zerolatency", "preset": "ultrafast"}
        stream.codec_context.gop_size = fps
        t0 = time.monotonic()
        for i in range(int(seconds * fps)):
            time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)


def clip_frames(size: tuple[int, int], limit: int = 125) -> list[np.ndarray]:
    import av

    with av.open(str(CLIP)) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"))
            if len(out) == limit:
                return out
    return out


def live_cli(model: Path, device: str, seconds: float, size: tuple[int, int]) -> dict:
    """A 25 frames/s UDP stream through ``stylize-video``; returns the figures."""
    port = free_port(socket.SOCK_DGRAM)
    frames = clip_frames(size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "live.mp4"
        cmd = ["stylize-video", f"udp://127.0.0.1:{port}", "-m", str(model), "-o", str(out), "--device", device,
               "--duration", str(seconds), "--preset", "veryfast"]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        time.sleep(15.0)  # The receiver loads and listens before the camera starts (slow on a busy machine).
        sender = threading.Thread(target=send_stream, args=(port, frames, seconds + 5.0), daemon=True)
        t0 = time.monotonic()
        sender.start()
        _, err = proc.communicate(timeout=seconds + 120)
        wall = time.monotonic() - t0
        sender.join()
    line = err.strip().splitlines()[-1]
    written = int(line.split(": ")[1].split(" frames")[0])
    read = int(line.split(" of ")[1].split(" input")[0]) if " of " in line else written
    return {
        "summary": line.split(": ", 1)[1],
        "stream_seconds": seconds,
        "wall_seconds_after_stream_start": round(wall, 2),
        "frames_read": read,
        "frames_written": written,
        "frames_dropped": read - written,
        # Real time kept: the run took the stream's duration, plus the encoder's flush and the first packets' wait.
        "stylize_seconds": float(line.split(" frames in ")[1].split("s")[0]),
        "kept_real_time": float(line.split(" frames in ")[1].split("s")[0]) < seconds + 2.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", default="light")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parts", default="webcam,cli")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument(
        "--compare-threads", type=lambda t: [int(v) for v in t.split(",") if v], default=[],
        help="also run the webcam with stylize-serve --threads N for each N, e.g. 2",
    )  # fmt: skip
    p.add_argument(
        "--screenshot", default=None, help="save the page (e.g. docs/serve.png) at the end of the webcam run"
    )
    p.add_argument("--size", default="640x360", help="live CLI stream size")
    p.add_argument("--camera", default="640x480", help="webcam size asked of Chromium's fake camera")
    opts = p.parse_args()
    size = tuple(int(v) for v in opts.size.split("x"))
    camera = tuple(int(v) for v in opts.camera.split("x"))
    result = {
        **environment(opts.device),
        "command": "python -m bench.live " + " ".join(sys.argv[1:]),
        "network": opts.network,
        "weights": "untrained (speed does not depend on them)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = make_artifact(Path(tmp), opts.network)
        if "webcam" in opts.parts:
            key = f"webcam_{opts.camera}"
            result[key] = webcam(model, opts.device, opts.seconds, opts.warmup, opts.screenshot, camera=camera)
            print("webcam:", result[key], flush=True)
        for threads in opts.compare_threads:  # The server's default against other thread counts, same run.
            key = f"webcam_{opts.camera}_threads_{threads}"
            result[key] = webcam(model, opts.device, opts.seconds, opts.warmup, threads=threads, camera=camera)
            print(f"webcam, --threads {threads}:", result[key], flush=True)
        if "cli" in opts.parts:
            result[f"live_cli_{opts.size}_25fps"] = live_cli(model, opts.device, opts.seconds, size)
            print("live CLI:", result[f"live_cli_{opts.size}_25fps"], flush=True)
    out = Path(__file__).parent / "results" / f"live-{opts.device.split(':')[0]}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
