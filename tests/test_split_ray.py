"""``stylize-video long.mp4 --cluster ray --split SECONDS``: the segments run on Ray actors, the output is the
single-worker run's."""

from __future__ import annotations

import av
import numpy as np
import pytest

from .conftest import run_cli, write_vfr_video

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Starting Ray and its workers takes several seconds on a small machine.


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _decoded(path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def test_split_on_ray_is_the_single_run(model, tmp_path, capsys):
    src = write_vfr_video(tmp_path / "in.mp4", [0, 1, 2, 4, 5, 7, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19], gop=4)
    common = ["-m", model, "--crf", "0", "--consistency", "0"]
    assert run_cli(src, "-o", tmp_path / "single.mp4", "--split", "off", *common) == 0
    assert run_cli(src, "-o", tmp_path / "ray.mp4", "--cluster", "ray", "--split", "0.2", *common) == 0
    err = capsys.readouterr().err
    assert "split into" in err and "on cpu@" in err and "joined without re-encoding" in err, err
    (pts_a, a), (pts_b, b) = _decoded(tmp_path / "single.mp4"), _decoded(tmp_path / "ray.mp4")
    assert pts_a == pts_b and len(a) == 16
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.safetensors", "ray.mp4", "single.mp4"]
