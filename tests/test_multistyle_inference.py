"""Choosing and blending styles at inference: the Python API, stylize-video --style, ONNX Runtime and ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.app.cli import main
from inference.core.errors import UserError
from inference.engine.stylizer import Stylizer
from inference.io.image_reader import read_image
from inference.model.artifact import load_artifact, save_artifact
from inference.model.networks import build_network
from inference.model.styles import parse_blend, style_weights

from .conftest import two_style_artifact


def _artifact(tmp_path: Path, name: str = "tiny") -> Path:
    return two_style_artifact(tmp_path / "multi.safetensors", name, ("starry", "wave"))


def test_weights_are_parsed_and_normalised() -> None:
    names = ["a", "b", "c:d"]
    assert style_weights(None, names) == [1, 0, 0] and style_weights("b", names) == [0, 1, 0]
    assert style_weights("c:d", names) == [0, 0, 1]  # an exact name wins over the blend syntax
    assert style_weights("a:0.3, b:0.9", names) == pytest.approx([0.25, 0.75, 0])
    assert style_weights({"a": 2.0, "b": 2.0}, names) == [0.5, 0.5, 0]
    assert parse_blend("a") == {"a": 1.0}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x", "unknown style 'x'; this model has: 'a', 'b'"),
        ("a:0.5,x:0.5", "unknown style 'x'"),
        ("a:-1,b:2", "weight of 'a' must be a finite number >= 0"),
        ("a:nan,b:1", "weight of 'a' must be a finite number >= 0"),
        ("a:0,b:0", "sum to zero"),
        ("a:heavy", "'heavy' of 'a' is not a number"),
        ("a:1,a:2", "'a' is given twice"),
        ("a:1,", "empty style name"),
    ],
)
def test_bad_styles_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        style_weights(spec, ["a", "b"])
    assert "\n" not in str(info.value)


def test_stylizer_picks_blends_and_switches_between_frames(tmp_path: Path, make_image) -> None:
    path = _artifact(tmp_path)
    image = make_image(48, 64, seed=3)
    first = Stylizer.from_artifact(path, device="cpu", backend="torch")
    assert first.style_names == ["starry", "wave"] and first.style_weights == [1.0, 0.0]
    a = first.image(image).astype(float)
    b = Stylizer.from_artifact(path, device="cpu", backend="torch", style="wave").image(image).astype(float)
    mix = Stylizer.from_artifact(path, device="cpu", backend="torch", style={"starry": 1, "wave": 1})
    assert mix.style_weights == [0.5, 0.5]
    m = mix.image(image).astype(float)
    apart = np.abs(a - b).mean()
    assert apart > 10  # clearly different styles (8-bit levels)
    assert np.abs(m - a).mean() < apart and np.abs(m - b).mean() < apart
    mix.update(style="wave")  # between frames
    assert np.array_equal(mix.image(image).astype(float), b)
    with pytest.raises(UserError, match="this model has: 'starry', 'wave'"):
        mix.update(style="sunflowers")
    assert mix.style_weights == [0.0, 1.0]  # a refused choice leaves the current style


def test_single_style_artifact_accepts_only_its_own_name(tmp_path: Path, make_image) -> None:
    path = save_artifact(
        tmp_path / "one.safetensors", build_network("tiny"), style_name="starry", style_sha256="", config={},
        temporal=False,
    )  # fmt: skip
    image = make_image(32, 32)
    plain = Stylizer.from_artifact(path, device="cpu", backend="torch").image(image)
    named = Stylizer.from_artifact(path, device="cpu", backend="torch", style="starry").image(image)
    assert np.array_equal(plain, named)
    with pytest.raises(UserError, match="unknown style 'wave'; this model has: 'starry'"):
        Stylizer.from_artifact(path, device="cpu", style="wave")


def test_stylize_video_style_flag(tmp_path: Path, make_image, capsys) -> None:
    path = _artifact(tmp_path)
    src = tmp_path / "in.png"
    Image.fromarray(make_image(40, 56, seed=5)).save(src)
    outs = {}
    for spec in ("starry", "wave", "starry:0.5,wave:0.5"):
        out = tmp_path / f"{spec.replace(':', '_').replace(',', '-')}.png"
        assert main([str(src), "-m", str(path), "-o", str(out), "-q", "--device", "cpu", "--style", spec]) == 0
        outs[spec] = read_image(out).astype(float)
    apart = np.abs(outs["starry"] - outs["wave"]).mean()
    assert apart > 10 and np.abs(outs["starry:0.5,wave:0.5"] - outs["wave"]).mean() < apart
    before = sorted(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exc:
        main([str(src), "-m", str(path), "-o", str(tmp_path / "x.png"), "--style", "wave:-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "'wave'" in err[0], err
    assert sorted(tmp_path.iterdir()) == before


def test_onnx_runtime_backend_blends(tmp_path: Path, make_image) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = _artifact(tmp_path, "light")
    image = make_image(48, 64, seed=4)
    ort = Stylizer.from_artifact(path, device="cpu", backend="onnxruntime", style="starry:0.3,wave:0.7")
    ref = Stylizer.from_artifact(path, device="cpu", backend="torch", style="starry:0.3,wave:0.7")
    assert ort.backend == "onnxruntime"
    assert np.abs(ort.image(image).astype(int) - ref.image(image).astype(int)).max() <= 1
    ort.update(style="wave")
    ref.update(style="wave")
    assert np.abs(ort.image(image).astype(int) - ref.image(image).astype(int)).max() <= 1


def test_onnx_export_takes_the_style_weights_as_an_input(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from styletrain.export import export

    path = _artifact(tmp_path)
    out = export(path, tmp_path / "multi.onnx")
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["image", "style"]
    assert '"name": "wave"' in {p.key: p.value for p in model.metadata_props}["styles"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net = load_artifact(path).network
    x = torch.rand(2, 3, 40, 56)
    for weights in ([1.0, 0.0], [0.5, 0.5], [0.2, 0.8]):
        style = torch.tensor(weights)
        got = session.run(None, {"image": x.numpy(), "style": style.numpy()})[0]
        with torch.no_grad():
            expected = net(x, style=style).numpy()
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_blend_matches_the_cpu(tmp_path: Path, make_image, precision: str) -> None:
    path = _artifact(tmp_path)
    frames = [make_image(72, 96, seed=i) for i in range(5)]
    cpu = Stylizer.from_artifact(path, device="cpu", backend="torch", style="starry:0.3,wave:0.7")
    gpu = Stylizer.from_artifact(path, device="cuda", precision=precision, batch_size=4, style="starry:0.3,wave:0.7")
    diff = np.concatenate(
        [
            np.abs(a.astype(int) - b.astype(int)).ravel()
            for a, b in zip(cpu.frames(frames), gpu.frames(frames), strict=True)
        ]
    )
    assert np.percentile(diff, 99.9) <= {"fp16": 2, "bf16": 4}[precision]
    gpu.update(style="wave")
    cpu.update(style="wave")
    assert np.abs(gpu.image(frames[0]).astype(int) - cpu.image(frames[0]).astype(int)).max() <= 12
