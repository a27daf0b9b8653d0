"""Stroke scale (``inference/engine/strokes.py``, ``Stylizer(stroke_scale=...)``, ``stylize-video --stroke-scale``)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.core.colour import rgb_to_ycbcr
from inference.core.errors import OptionError
from inference.engine.options import RuntimeOptions
from inference.engine.strokes import guided_coefficients, luminance, stroke_scaled, stylize_at_scale
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network

from .conftest import run_cli

BAD_SCALES = ("0", "-1", "nan", "inf", "10")


def _frame(make_image, height: int = 256, width: int = 256) -> torch.Tensor:
    """A textured float frame ``[1, 3, H, W]`` in [0, 1]."""
    return torch.from_numpy(make_image(height, width, seed=3)).permute(2, 0, 1)[None].float() / 255.0


def _blur_network(x: torch.Tensor) -> torch.Tensor:
    """Stand-in for a style network that loses fine detail: 4x4 average pooling, enlarged back."""
    return F.interpolate(F.avg_pool2d(x, 4, ceil_mode=True), size=x.shape[-2:], mode="bilinear").clamp(0, 1)


def _stripes_network(x: torch.Tensor) -> torch.Tensor:
    """Stand-in whose "strokes" are vertical stripes with a fixed period of 8 pixels, whatever the input size."""
    columns = torch.arange(x.shape[-1], dtype=x.dtype)
    stripes = 0.5 + 0.4 * torch.sign(torch.sin(2 * math.pi * (columns + 0.5) / 8))
    return stripes.expand_as(x).clone()


def _laplacian_energy(rgb: torch.Tensor) -> float:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(luminance(rgb.float()), kernel).pow(2).mean().item()


# ------------------------------------------------------------------------------------------------ the function
@pytest.mark.parametrize(("scale", "seen"), [(2.0, (128, 96)), (4.0, (64, 48)), (0.5, (512, 384)), (3.0, (85, 64))])
def test_network_runs_at_one_over_scale_and_output_keeps_the_size(make_image, scale, seen):
    x = _frame(make_image, 256, 192)
    shapes = []

    def network(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape[-2:]))
        return t

    y = stylize_at_scale(x, network, scale)
    assert shapes == [seen]
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0.0 <= y.min() and y.max() <= 1.0


def test_strokes_grow_by_the_scale():
    x = torch.rand(1, 3, 64, 256)
    for scale, period in ((1.0, 8), (2.0, 16), (4.0, 32)):
        row = stylize_at_scale(x, _stripes_network, scale)[0, 0, 32] - 0.5
        spectrum = torch.fft.rfft(row).abs()
        spectrum[0] = 0
        assert int(spectrum.argmax()) == 256 // period, scale


def test_scale_one_is_the_network_itself(make_image):
    net = build_network("tiny")
    assert stroke_scaled(net, 1.0, "guided") is net
    x = _frame(make_image, 64, 64)
    with torch.no_grad():
        assert torch.equal(stylize_at_scale(x, net, 1.0, "guided"), net(x))


def test_input_is_not_modified(make_image):
    x = _frame(make_image, 64, 96)
    before = x.clone()
    stylize_at_scale(x, _blur_network, 2.0, "guided")
    assert torch.equal(x, before)


# ----------------------------------------------------------------------------------------------- guided detail
def test_the_guided_model_of_a_constant_image_is_that_constant(make_image):
    guide = luminance(_frame(make_image, 48, 64))
    src = torch.full((1, 3, 48, 64), 0.3)
    a, b = guided_coefficients(guide, src)
    assert a.shape == b.shape == src.shape
    torch.testing.assert_close(a * guide + b, src, atol=1e-5, rtol=0)
    # The whole path on a constant frame gives the constant back.
    flat = torch.full((1, 3, 50, 70), 0.7)
    torch.testing.assert_close(stylize_at_scale(flat, lambda t: t, 2.0, "guided"), flat, atol=1e-5, rtol=0)


def test_guided_output_stays_in_range():
    torch.manual_seed(0)
    # Extreme content: salt-and-pepper frame, and a network that saturates to 0 and 1.
    x = (torch.rand(2, 3, 80, 96) > 0.5).float()
    y = stylize_at_scale(x, lambda t: (t * 3 - 1).clamp(0, 1), 2.0, "guided")
    assert y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0


def test_guided_restores_high_frequencies_lost_by_a_blurring_network(make_image):
    x = _frame(make_image)
    plain = stylize_at_scale(x, _blur_network, 2.0)
    guided = stylize_at_scale(x, _blur_network, 2.0, "guided")
    assert guided.shape == plain.shape == x.shape
    assert _laplacian_energy(guided) > 1.5 * _laplacian_energy(plain)


def test_guided_brings_an_identity_network_closer_to_the_original(make_image):
    x = _frame(make_image)
    plain = stylize_at_scale(x, lambda t: t, 2.0)
    guided = stylize_at_scale(x, lambda t: t, 2.0, "guided")
    assert (guided - x).pow(2).mean() < 0.5 * (plain - x).pow(2).mean()


# ---------------------------------------------------------------------------------------------------- Stylizer
def test_stylizer_scale_two_keeps_a_256_px_image_size(make_image):
    torch.manual_seed(0)
    img = make_image(256, 256, seed=1)
    out = Stylizer(build_network("tiny"), RuntimeOptions(device="cpu", backend="torch", stroke_scale=2.0)).image(img)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8


def test_stylizer_scale_one_is_exactly_the_plain_path(make_image):
    img = make_image(72, 96, seed=2)
    torch.manual_seed(0)
    net = build_network("tiny")
    plain = Stylizer(net, RuntimeOptions(device="cpu", backend="torch")).image(img)
    scaled = Stylizer(
        net, RuntimeOptions(device="cpu", backend="torch", stroke_scale=1.0, stroke_detail="guided")
    ).image(img)
    assert np.array_equal(plain, scaled)


def test_strength_and_preserve_colour_use_the_full_size_frame(make_image):
    img = make_image(64, 80, seed=4)
    net = build_network("tiny")
    # Strength 0 is the original frame itself, not its shrunk-and-enlarged copy.
    assert np.array_equal(
        Stylizer(net, RuntimeOptions(device="cpu", backend="torch", strength=0.0, stroke_scale=4.0)).image(img), img
    )
    # Preserve-colour keeps the full-size frame's chroma: closer to it than the enlarged network output's chroma.
    ident = build_network("identity")
    kept = Stylizer(ident, RuntimeOptions(device="cpu", backend="torch", preserve_color=True, stroke_scale=4.0)).image(
        img
    )
    enlarged = Stylizer(ident, RuntimeOptions(device="cpu", backend="torch", stroke_scale=4.0)).image(img)

    def chroma_error(out: np.ndarray) -> float:
        ycc = rgb_to_ycbcr(torch.from_numpy(np.stack([out, img])).permute(0, 3, 1, 2).float() / 255.0)
        return (ycc[0, 1:] - ycc[1, 1:]).abs().mean().item()

    assert chroma_error(kept) < 0.25 * chroma_error(enlarged)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), 10.0])
def test_stylizer_refuses_a_bad_scale(scale):
    with pytest.raises(OptionError, match="^stroke_scale must be"):
        Stylizer(build_network("tiny"), RuntimeOptions(device="cpu", backend="torch", stroke_scale=scale))


def test_stylizer_refuses_an_unknown_detail_mode():
    with pytest.raises(OptionError, match="^stroke_detail must be one of none, guided"):
        Stylizer(
            build_network("tiny"),
            RuntimeOptions(device="cpu", backend="torch", stroke_scale=2.0, stroke_detail="sharp"),
        )


def test_onnxruntime_backend_runs_at_the_stroke_scale(make_image):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    img = make_image(96, 128, seed=5)
    torch.manual_seed(0)
    net = build_network("tiny")
    ref = Stylizer(net, RuntimeOptions(device="cpu", backend="torch", stroke_scale=2.0, stroke_detail="guided")).image(
        img
    )
    ort = Stylizer(net, RuntimeOptions(device="cpu", backend="onnxruntime", stroke_scale=2.0, stroke_detail="guided"))
    out = ort.image(img)
    assert ort.backend == "onnxruntime" and out.shape == img.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 2


@pytest.mark.gpu
def test_cuda_half_precision_at_the_stroke_scale():
    x = torch.rand(2, 3, 270, 480, device="cuda")
    st = Stylizer(
        build_network("tiny"), RuntimeOptions(device="cuda", precision="fp16", stroke_scale=2.0, stroke_detail="guided")
    )
    y = st.tensors(x)
    assert y.shape == x.shape and y.device.type == "cuda" and torch.isfinite(y).all()
    assert 0.0 <= y.min() and y.max() <= 1.0


# --------------------------------------------------------------------------------------------------------- CLI
def test_help_lists_the_stroke_options(capsys):
    assert run_cli("--help") == 0
    text = capsys.readouterr().out
    assert "--stroke-scale" in text and "--stroke-detail" in text


@pytest.mark.parametrize("value", BAD_SCALES)
def test_cli_refuses_a_bad_scale(tmp_path, model, make_image, capsys, value):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(make_image(32, 32)).save(src)
    out = tmp_path / "out.png"
    assert run_cli(src, "-m", model, "-o", out, "-q", f"--stroke-scale={value}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: argument --stroke-scale")
    # Out of range names the range; NaN and infinity are refused as not finite (the shared argtypes message).
    assert ("must be a finite number" if value in ("nan", "inf") else "must be in [0.25, 4]") in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "m.safetensors"]


def test_cli_stroke_scale_with_max_side_and_preserve_colour(tmp_path, model, make_video):
    src = make_video(tmp_path / "clip.mp4", n_frames=6, size=(192, 128), audio=False)
    out = tmp_path / "out.mp4"
    args = ("--stroke-scale", "2", "--stroke-detail", "guided", "--max-side", "128", "--preserve-color")
    assert run_cli(src, "-m", model, "-o", out, "-q", "--device", "cpu", *args) == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6
    assert max(frames[0].shape[:2]) == 128 and frames[0].shape[1] == 128
