"""``stylize-video --cluster ray``: the same planner as the local batch, with the files run on Ray actors.

One local Ray instance with 2 CPUs serves the whole module (starting Ray costs seconds); the executor uses an
already initialised Ray as it is, which is also how a notebook would call it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

from .conftest import run_cli

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Starting Ray and its workers takes several seconds on a small machine.


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # No GPUs even where there are some: these tests compare with the local executor on the CPU.
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def clips(tmp_path, make_video) -> Path:
    """A folder with two good clips and a broken file."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "a.mp4", n_frames=5, size=(64, 48))
    make_video(folder / "b.mkv", n_frames=7, size=(48, 32), audio=False)
    (folder / "broken.mp4").write_bytes(b"not a video " * 100)
    return folder


def test_three_clips_one_broken_then_skip_existing(clips, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray") == 2
    err = capsys.readouterr().err.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mkv"]  # nothing partial, nothing hidden
    assert len(_decoded(out / "a.mp4")) == 5 and len(_decoded(out / "b.mkv")) == 7
    progress = [line for line in err if line.startswith("[")]
    assert len(progress) == 3 and all("on cpu@" in line for line in progress if "->" in line), err
    assert any(f"{clips / 'broken.mp4'}: failed: " in line for line in progress), err
    assert err[-2].endswith(": 2 written, 0 skipped, 1 failed") and err[-1].startswith(f"error: {clips / 'broken.mp4'}")

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray", "--skip-existing") == 2  # the broken one again
    assert capsys.readouterr().err.splitlines()[-2].endswith(": 0 written, 2 skipped, 1 failed")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_ray_and_local_executors_write_identical_frames(clips, model, tmp_path, monkeypatch):
    (clips / "broken.mp4").unlink()
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert run_cli(clips, "-m", model, "-o", local, "--device", "cpu", "-q") == 0
    monkeypatch.chdir(tmp_path)  # Relative paths mean this folder, not the one the Ray workers started in.
    assert run_cli("in", "-m", model, "-o", "ray", "--cluster", "ray", "-q") == 0
    for name in ("a.mp4", "b.mkv"):
        ours, theirs = _decoded(local / name), _decoded(remote / name)
        assert len(ours) == len(theirs) > 0
        assert all(np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True)), name


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--precision=fp16", "precision fp16 needs a GPU"),  # found by the workers, before the folder is made
        ("--style=nope", "unknown style 'nope'"),
        ("--cpus-per-worker=64", "--cpus-per-worker 64: no node of the Ray cluster has that many (largest: 2)"),
        ("--workers=2", "with --cluster ray use --cpus-per-worker"),
    ],
)
def test_a_refused_ray_batch_leaves_no_folder(clips, model, tmp_path, capsys, option, message):
    out = tmp_path / "styled"
    assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray", option) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_without_ray_the_error_names_the_extra(clips, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError, as when it is not installed
    assert run_cli(clips, "-m", model, "-o", tmp_path / "o", "--cluster", "ray") == 2
    assert capsys.readouterr().err == "error: --cluster ray needs Ray: pip install 'styletrain[cluster]'\n"
    assert not (tmp_path / "o").exists()


def test_ray_actors_name_their_device_for_binding():
    """A GPU actor names ``cuda`` (Ray makes its GPU the first visible one), so that it binds its GPU and its share of
    host threads (``bind_worker``) as the local pool's workers do; an actor without a GPU names ``cpu``."""
    from inference.app.ray_executor import actor_device

    assert actor_device([]) == "cpu"
    assert actor_device(["0"]) == "cuda"
