"""Optical flow in one place: the runtime's estimators (DIS, Farnebäck, RAFT) as training names them, the float16
disk cache, Middlebury .flo files, and the layout itself (one module imports RAFT, one defines ``warp``)."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.core.errors import UserError
from inference.engine import device_flow
from inference.engine.flow import farneback_flow, to_gray
from styletrain.temporal import flow as flow_mod
from styletrain.temporal.flow import FlowCache, estimate_flow, forward_backward, read_flo, write_flo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_raft():
    """No pretrained RAFT kept from another test, before or after this one (:func:`device_flow.pretrained_raft`
    builds each model once per process)."""
    device_flow.pretrained_raft.cache_clear()
    yield
    device_flow.pretrained_raft.cache_clear()


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


def test_farneback_finds_integer_translation_with_the_same_sign(make_clip_frames):
    a, b = make_clip_frames(2, size=(64, 96), shift=(3, 2))
    f = estimate_flow(a, b, method="farneback")
    assert f.shape == (64, 96, 2) and f.dtype == np.float32
    assert np.abs(np.median(f[8:-8, 8:-8], axis=(0, 1)) - (-3, -2)).max() < 0.2
    assert np.array_equal(f, farneback_flow(to_gray(a), to_gray(b)))  # the runtime's estimator, not a copy


def test_unknown_method_and_shape_mismatch(make_clip_frames):
    a, b = make_clip_frames(2, size=(32, 32))
    with pytest.raises(UserError, match="unknown flow method 'horn_schunck'; available: dis"):
        estimate_flow(a, b, method="horn_schunck")
    with pytest.raises(ValueError, match="differ in shape"):
        estimate_flow(a, b[:16])


def test_raft_without_weights_is_one_line_error(monkeypatch, make_clip_frames, fresh_raft):
    import torchvision.models.optical_flow as of

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(of, "raft_small", offline)  # no test builds RAFT for real, so no model is cached already
    a, b = make_clip_frames(2, size=(32, 32))
    with pytest.raises(UserError, match="use flow method 'dis'") as exc:
        estimate_flow(a, b, method="raft_small")
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith("RAFT weights Raft_Small_Weights.C_T_V2 are not available (OSError: network")


def test_training_raft_is_the_runtimes_loaded_once_at_any_frame_size(monkeypatch, make_clip_frames, fresh_raft):
    built, build = [], device_flow.build_raft

    def random_weights(variant, weights=None):  # what the download would give, without the network
        built.append((variant, str(weights)))
        torch.manual_seed(0)
        return build(variant)

    monkeypatch.setattr(device_flow, "build_raft", random_weights)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where training's RAFT runs
    raft = device_flow.pretrained_raft("raft_small", device)
    raft.updates = 2  # fewer refinement steps keep the test fast; sizes and units do not depend on them
    # 36x50: not a multiple of 8 and under RAFT's smallest side, which the runtime's sizing rule (raft_size) handles.
    a, b = make_clip_frames(2, size=(36, 50), shift=(2, 1))
    flow = estimate_flow(a, b, method="raft_small")
    assert flow.shape == (36, 50, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert raft.scale == 1.0 and device_flow.pretrained_raft("raft_small", device) is raft
    assert built == [("raft_small", "Raft_Small_Weights.C_T_V2")]  # one load per process, through the one builder


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports_raft(tree: ast.Module) -> bool:
    """Whether ``tree`` imports torchvision's optical-flow models (strings and comments are not code, so not seen)."""
    raft = {"optical_flow", "raft_large", "raft_small", "Raft_Large_Weights", "Raft_Small_Weights"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any("optical_flow" in alias.name for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (
            "optical_flow" in (node.module or "") or any(alias.name in raft for alias in node.names)
        ):
            return True
    return False


def test_the_raft_finder_sees_imports_only():
    assert _imports_raft(ast.parse("def f():\n    from torchvision.models import optical_flow as of\n"))
    assert _imports_raft(ast.parse("from torchvision.models.optical_flow import raft_small"))
    assert _imports_raft(ast.parse("import torchvision.models.optical_flow"))
    assert not _imports_raft(ast.parse("# from torchvision.models import optical_flow\nx = 'raft_small'"))


def test_one_module_imports_raft():
    importers = {
        p.relative_to(ROOT).as_posix() for p in _sources("inference", "styletrain", "bench") if _imports_raft(_tree(p))
    }
    assert importers == {"inference/engine/device_flow.py"}


def test_warp_is_defined_once_and_imported_from_its_owner():
    sources = _sources("inference", "styletrain", "bench", "tests", "docs")
    defined, borrowed = [], []
    for path in sources:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "warp":
                defined.append(path.relative_to(ROOT).as_posix())
            elif isinstance(node, ast.ImportFrom) and any(alias.name == "warp" for alias in node.names):
                if node.module != "inference.engine.flow":
                    borrowed.append(f"{path.relative_to(ROOT).as_posix()}: from {node.module}")
    assert defined == ["inference/engine/flow.py"]
    assert borrowed == []


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
