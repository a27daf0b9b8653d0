"""ONNX Runtime backend: same output as PyTorch, chosen automatically on the CPU, clear errors, end to end."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from inference.app.cli import main  # noqa: E402
from inference.core.errors import UserError  # noqa: E402
from inference.engine import onnx_backend  # noqa: E402
from inference.engine.onnx_backend import OrtNetwork  # noqa: E402
from inference.engine.options import RuntimeOptions  # noqa: E402
from inference.engine.stylizer import Stylizer  # noqa: E402
from inference.model.artifact import save_artifact  # noqa: E402
from inference.model.networks import build_network  # noqa: E402


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network(name).eval()
    with torch.no_grad():  # move away from the initialisation so that any mismatch shows
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("name", ["tiny", "light"])
def test_ort_matches_torch(name):
    net = _net(name)
    ort_net = OrtNetwork(net)
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        for height, width in ((37, 53), (71, 45)):
            x = torch.rand(batch, 3, height, width, generator=generator)
            before = x.clone()
            with torch.no_grad():
                expected = net(x)
            got = ort_net(x)
            assert got.shape == expected.shape and got.dtype == torch.float32
            assert (got - expected).abs().max().item() < 1e-4
            assert torch.equal(x, before)


def test_small_input_falls_back_to_torch():
    net = _net("light")  # stride 8: below 16 px the network pads by replication, which the graph does not
    x = torch.rand(1, 3, 9, 30)
    with torch.no_grad():
        assert torch.allclose(OrtNetwork(net)(x), net(x), atol=1e-6)


def test_stylizer_auto_picks_ort_on_cpu(make_image):
    net = _net("tiny")
    stylizer = Stylizer(net, RuntimeOptions(device="cpu", strength=0.7, preserve_color=True))
    assert stylizer.backend == "onnxruntime"
    reference = Stylizer(net, RuntimeOptions(device="cpu", strength=0.7, preserve_color=True, backend="torch"))
    assert reference.backend == "torch"
    image = make_image(40, 56, seed=2)
    diff = np.abs(stylizer.image(image).astype(int) - reference.image(image).astype(int))
    assert diff.max() <= 1  # rounding of values within 1e-4 of each other


def test_auto_falls_back_when_export_fails(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_backend, "onnx_bytes", broken)
    with caplog.at_level("WARNING", logger="inference"):
        stylizer = Stylizer(_net("tiny"), RuntimeOptions(device="cpu"))
    assert stylizer.backend == "torch" and "ONNX export failed" in caplog.text
    assert stylizer.image(np.zeros((20, 20, 3), np.uint8)).shape == (20, 20, 3)


def test_explicit_ort_without_package_is_user_error(monkeypatch):
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    with pytest.raises(UserError, match="needs the onnxruntime"):
        Stylizer(_net("tiny"), RuntimeOptions(device="cpu", backend="onnxruntime"))
    assert Stylizer(_net("tiny"), RuntimeOptions(device="cpu")).backend == "torch"  # auto quietly uses torch
    with pytest.raises(UserError, match="^backend must be one of auto, torch, onnxruntime"):
        Stylizer(_net("tiny"), RuntimeOptions(device="cpu", backend="tensorrt"))


def test_stylize_video_with_onnxruntime(tmp_path, make_video, capsys):
    model = save_artifact(
        tmp_path / "m.safetensors", _net("light"), style_name="s", style_sha256="0" * 64, config={}, temporal=False
    )
    src = make_video(tmp_path / "in.mp4", n_frames=9, size=(96, 64))
    out = tmp_path / "out.mp4"
    rc = main([str(src), "-m", str(model), "-o", str(out), "-q", "--backend", "onnxruntime", "--device", "cpu"])
    assert rc == 0
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 9 and (frames[0].width, frames[0].height) == (96, 64)
    assert Path(src).exists()


def _artifact(tmp_path: Path, name: str = "tiny") -> Path:
    return save_artifact(
        tmp_path / f"{name}.safetensors", _net(name), style_name="s", style_sha256="0" * 64, config={}, temporal=False
    )


def _count_exports(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = onnx_backend.onnx_bytes

    def counting(net):
        calls.append(1)
        return real(net)

    monkeypatch.setattr(onnx_backend, "onnx_bytes", counting)
    return calls


def test_export_is_cached_per_artifact(tmp_path, monkeypatch, make_image):
    monkeypatch.setenv("STYLETRAIN_ONNX_CACHE", str(tmp_path / "cache"))
    calls = _count_exports(monkeypatch)
    model = _artifact(tmp_path)
    first = Stylizer.from_artifact(model, device="cpu")
    assert first.backend == "onnxruntime" and len(calls) == 1
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".onnx"
    assert entries[0].stat().st_mode & 0o044 == 0o044  # readable like any other output, not 0600
    second = Stylizer.from_artifact(model, device="cpu")
    assert second.backend == "onnxruntime" and len(calls) == 1  # no second export
    image = make_image(40, 56)
    assert np.array_equal(first.image(image), second.image(image))
    # Other weights, other key; a bare network (no artifact) is exported in memory and never cached.
    Stylizer.from_artifact(_artifact(tmp_path / "b", "light"), device="cpu")
    Stylizer(_net("tiny"), RuntimeOptions(device="cpu"))
    assert len(calls) == 3 and len(list((tmp_path / "cache").iterdir())) == 2


def test_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch, make_image, caplog):
    monkeypatch.setenv("STYLETRAIN_ONNX_CACHE", str(tmp_path / "cache"))
    model = _artifact(tmp_path)
    Stylizer.from_artifact(model, device="cpu")
    (entry,) = (tmp_path / "cache").iterdir()
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 2])  # truncated by a full disk, say
    calls = _count_exports(monkeypatch)
    with caplog.at_level("WARNING", logger="inference"):
        st = Stylizer.from_artifact(model, device="cpu")
    assert st.backend == "onnxruntime" and len(calls) == 1 and "unreadable" in caplog.text
    assert entry.read_bytes() == good
    reference = Stylizer.from_artifact(model, device="cpu", backend="torch")
    image = make_image(40, 56)
    assert np.abs(st.image(image).astype(int) - reference.image(image).astype(int)).max() <= 1


def test_unwritable_cache_still_runs(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("STYLETRAIN_ONNX_CACHE", str(blocker / "cache"))
    with caplog.at_level("WARNING", logger="inference"):
        st = Stylizer.from_artifact(_artifact(tmp_path), device="cpu")
    assert st.backend == "onnxruntime" and "cannot cache" in caplog.text


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("STYLETRAIN_ONNX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert onnx_backend.cache_dir() == tmp_path / "styletrain" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert onnx_backend.cache_dir() == Path.home() / ".cache" / "styletrain" / "onnx"
    with pytest.raises(ValueError, match="hex digest"):
        onnx_backend.cached_session(_net("tiny"), "../../etc/passwd")


def test_identity_runs_under_onnxruntime():
    x = torch.rand(2, 3, 20, 30)
    ort_net = OrtNetwork(build_network("identity"))
    assert torch.allclose(ort_net(x), x)
