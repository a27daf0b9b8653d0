"""Optical flow estimation, the float16 disk cache and Middlebury .flo files."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from inference.core.errors import UserError
from styletrain.temporal import flow as flow_mod
from styletrain.temporal.flow import FlowCache, estimate_flow, forward_backward, read_flo, write_flo


def test_dis_finds_integer_translation(make_clip_frames):
    a, b = make_clip_frames(2, size=(64, 96), shift=(3, 2))
    f = estimate_flow(a, b)
    assert f.shape == (64, 96, 2) and f.dtype == np.float32
    inner = f[8:-8, 8:-8]
    assert np.allclose(np.median(inner[..., 0]), -3, atol=0.1) and np.allclose(np.median(inner[..., 1]), -2, atol=0.1)
    fw, bw = forward_backward(a, b)
    assert np.allclose(np.median(bw[8:-8, 8:-8, 0]), 3, atol=0.1)
    # Float frames in [0, 1] are accepted too.
    assert np.allclose(estimate_flow(a / 255.0, b / 255.0), f, atol=1e-3)


def test_unknown_method_and_shape_mismatch(make_clip_frames):
    a, b = make_clip_frames(2, size=(32, 32))
    with pytest.raises(UserError, match="unknown flow method 'horn_schunck'; available: dis"):
        estimate_flow(a, b, method="horn_schunck")
    with pytest.raises(ValueError, match="differ in shape"):
        estimate_flow(a, b[:16])


def test_raft_without_weights_is_one_line_error(monkeypatch, make_clip_frames):
    import torchvision.models.optical_flow as of

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(of, "raft_small", offline)  # no test builds RAFT for real, so no model is cached already
    a, b = make_clip_frames(2, size=(32, 32))
    with pytest.raises(UserError, match="use flow method 'dis'") as exc:
        estimate_flow(a, b, method="raft_small")
    assert "\n" not in str(exc.value)


def test_cache_hits_and_recovers_from_corrupt_entries(tmp_path, make_clip_frames, monkeypatch):
    calls = []
    original = flow_mod.ESTIMATORS["dis"]
    monkeypatch.setitem(flow_mod.ESTIMATORS, "dis", lambda a, b: calls.append(1) or original(a, b))
    a, b = make_clip_frames(2, size=(48, 64), shift=(2, 1))
    cache = FlowCache(tmp_path / "flow")
    first = cache.get(a, b)
    assert len(calls) == 1 and cache.misses == 1
    again = FlowCache(tmp_path / "flow").get(a, b)  # a new run, same folder
    assert len(calls) == 1
    assert np.abs(again - first).max() < 0.01  # float16 storage
    cache.get(b, a)
    assert len(calls) == 2  # direction is part of the key
    entry = next((tmp_path / "flow").glob("*.npy"))
    entry.write_bytes(b"garbage")
    for x, y in ((a, b), (b, a)):
        cache.get(x, y)
    assert len(calls) == 3  # the corrupt entry was recomputed, the other one reused
    assert not list((tmp_path / "flow").glob(".*"))  # no temporary files left behind


def test_cache_files_get_the_usual_permissions(tmp_path, make_clip_frames):
    a, b = make_clip_frames(2, size=(32, 32))
    saved = os.umask(0o022)
    try:
        FlowCache(tmp_path / "flow").get(a, b)
    finally:
        os.umask(saved)
    (entry,) = (tmp_path / "flow").glob("*.npy")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_flo_round_trip_and_errors(tmp_path):
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    path = write_flo(tmp_path / "a.flo", flow)
    assert np.array_equal(read_flo(path), flow)
    (tmp_path / "bad.flo").write_bytes(b"JUNK" + b"\0" * 20)
    with pytest.raises(UserError, match="bad tag"):
        read_flo(tmp_path / "bad.flo")
    (tmp_path / "short.flo").write_bytes(path.read_bytes()[:-4])
    with pytest.raises(UserError, match="truncated"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(UserError, match="cannot read"):
        read_flo(tmp_path / "missing.flo")
