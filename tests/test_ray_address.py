"""``--cluster ray --ray-address`` where no Ray cluster answers: one line within seconds, no Ray log lines.

Before the fix, ``--ray-address 127.0.0.1:1`` waited over 400 s on Ray's control store and printed Ray's C++
warnings ("Failed to get cluster ID from GCS server ...") instead of one line.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray")

from inference.app.ray_address import check_reachable, target  # noqa: E402
from inference.core.errors import OptionError  # noqa: E402

RAY_LINES = ("gcs_client", "rpc_client", "Failed to get cluster ID", "Failed to connect to GCS")


@pytest.fixture
def folder(tmp_path, make_video):
    videos = tmp_path / "in"
    videos.mkdir()
    for name in ("a", "b"):
        make_video(videos / f"{name}.mp4", n_frames=2, size=(32, 32), audio=False)
    return videos


def refused_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_addresses_that_name_a_cluster_are_checked_the_others_left_to_ray(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert target(None) is None and target("auto") is None and target("local") is None
    assert target("127.0.0.1:6379") == ("127.0.0.1:6379", "127.0.0.1", 6379)
    assert target("ray://127.0.0.1") == ("ray://127.0.0.1", "127.0.0.1", 10001)
    assert target("notahost:abc") is None  # Ray's parser words that one
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:7000")
    assert target(None) == ("127.0.0.1:7000", "127.0.0.1", 7000)


def test_a_refused_address_is_one_line_naming_it_and_the_way_out(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = refused_port()
    t0 = time.monotonic()
    with pytest.raises(OptionError) as info:
        check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 3.5
    message = str(info.value)
    assert message.startswith(f"ray_address 127.0.0.1:{port}: no Ray cluster answers there (connection refused)")
    assert "(ray start --head)" in message and "`cluster` local" in message and "\n" not in message
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(OptionError, match=r"from \$RAY_ADDRESS"):
        check_reachable(None)


@pytest.mark.slow  # a second process that imports torch and Ray
def test_stylize_video_with_a_dead_address_ends_in_seconds_with_one_line(folder, model, tmp_path):
    cmd = [sys.executable, "-m", "inference.app.cli", str(folder), "-m", str(model), "-o", str(tmp_path / "out")]
    t0 = time.monotonic()
    done = subprocess.run(
        cmd + ["--cluster", "ray", "--ray-address", "127.0.0.1:1"], capture_output=True, text=True, timeout=60
    )
    seconds = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: --ray-address 127.0.0.1:1: no Ray cluster answers there (connection refused); start one there "
        "(ray start --head), or run on this machine with --cluster local"
    ], done.stderr
    assert seconds < 30, seconds
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # loads the model and imports Ray: over the quick budget
def test_an_address_where_something_else_answers_ends_in_seconds_without_ray_lines(folder, model, tmp_path, capfd):
    from inference.app.cli import main

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:  # A port that accepts connections and never speaks Ray's protocol.
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    t0 = time.monotonic()
    try:
        with pytest.raises(SystemExit) as info:
            main(
                [
                    str(folder),
                    "-m",
                    str(model),
                    "-o",
                    str(tmp_path / "out"),
                    "--cluster",
                    "ray",
                    "--ray-address",
                    address,
                ]
            )
    finally:
        server.close()
        for conn in held:
            conn.close()
    seconds = time.monotonic() - t0
    err = capfd.readouterr().err
    assert info.value.code == 2 and seconds < 10, (seconds, err)  # was 41 s with Ray's own retries
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"error: --ray-address {address}: no Ray cluster answers there (something answers"), err
    assert len(lines) == 1, err
    assert "ray start --head" in lines[0] and "--cluster local" in lines[0]
    assert not any(word in err for word in RAY_LINES), err


@pytest.mark.slow  # starts a real Ray head (its control store) on this machine
def test_a_live_local_cluster_passes_the_check():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    try:
        t0 = time.monotonic()
        check_reachable(cluster.address)  # raises on anything but a gRPC server
        assert time.monotonic() - t0 < 3
    finally:
        cluster.shutdown()


def test_native_writes_to_stderr_are_hidden_while_joining_unless_asked_for(capfd, monkeypatch):
    import os

    from inference.app.ray_address import LOGS_ENV, ray_messages_hidden

    monkeypatch.delenv(LOGS_ENV, raising=False)
    with ray_messages_hidden():
        os.write(2, b"[W gcs_client.cc:210] Failed to get cluster ID\n")  # what Ray's C++ core does
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"
    monkeypatch.setenv(LOGS_ENV, "1")
    with ray_messages_hidden():
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"
