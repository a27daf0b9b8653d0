"""Device colour conversion (CPU tensors) against FFmpeg's swscale, round trips, and the untagged-stream default; on a
GPU (marker ``gpu``), conversion without host syncs and left-sited chroma equal to the CPU's.

Content: the photographs in ``data/samples/content``, converted to yuv420p by swscale itself, as a decoder would
hand them over. "Within 1 level" is measured as the maximum over in-gamut pixels: pixels whose exact (float64,
unclamped) conversion lies inside [0, 255] for all three channels. Saturated edges where 4:2:0 chroma pushes a pixel
outside the RGB cube are clamped differently by every converter and are excluded.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Interpolation
from PIL import Image

from inference.core.colour import YuvSpec, i420_to_rgb, luma, rgb_to_i420, to_float, to_uint8

from .conftest import no_host_sync, yuv8_to_rgb_reference

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data" / "samples" / "content").glob("*.jpg"))
SWS_COLORSPACE = {"bt601": "itu601", "bt709": "itu709", "bt2020": "bt2020"}
# swscale's exact path: nearest-neighbour chroma (as an unscaled conversion does), accurate rounding, full chroma
# interpolation in the output stage (no chroma-subsampled shortcut). The default path is SIMD fixed-point code that
# is itself off by up to 3 levels; it is checked with a looser bound below.
SWS_EXACT = Interpolation.POINT | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
SPECS = [YuvSpec(m, full) for m in ("bt601", "bt709", "bt2020") for full in (False, True)]


def _photo(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])


def _range(spec: YuvSpec) -> str:
    return "JPEG" if spec.full_range else "MPEG"


def _sws_to_i420(rgb: np.ndarray, spec: YuvSpec, interpolation=None) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return frame.reformat(
        format="yuv420p", dst_colorspace=SWS_COLORSPACE[spec.matrix], dst_color_range=_range(spec),
        interpolation=interpolation,
    )  # fmt: skip


def _sws_to_rgb(frame: av.VideoFrame, spec: YuvSpec, interpolation=None) -> np.ndarray:
    return frame.reformat(
        format="rgb24", src_colorspace=SWS_COLORSPACE[spec.matrix], src_color_range=_range(spec),
        dst_color_range="JPEG", interpolation=interpolation,
    ).to_ndarray()  # fmt: skip


def _exact(planes: np.ndarray, spec: YuvSpec) -> np.ndarray:
    """float64 RGB in 0-255 levels, unclamped, ``[3, H, W]``: the reference the in-gamut mask comes from."""
    h, w = planes.shape[0] * 2 // 3, planes.shape[1]
    uv = planes[h:].reshape(2, h // 2, w // 2).repeat(2, 1).repeat(2, 2).astype(np.float64)
    yuv = np.concatenate((planes[None, :h].astype(np.float64), uv))
    a, b = yuv8_to_rgb_reference(spec.matrix, spec.full_range)
    return 255.0 * (np.einsum("ij,jhw->ihw", a, yuv) + b[:, None, None])


def _ours(planes: np.ndarray, spec: YuvSpec) -> torch.Tensor:
    return i420_to_rgb(torch.from_numpy(planes)[None], spec)


def _levels(rgb: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` in [0, 1] -> ``[H, W, 3]`` float 0-255 levels, rounded as an 8-bit output would be."""
    return (rgb[0].permute(1, 2, 0).double() * 255).round().numpy()


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_i420_to_rgb_matches_swscale(spec):
    assert len(PHOTOS) >= 4
    for path in PHOTOS[:4]:
        frame = _sws_to_i420(_photo(path), spec)
        planes = frame.to_ndarray()
        exact = _exact(planes, spec)
        in_gamut = ((exact >= -0.5) & (exact <= 255.5)).all(0)
        assert in_gamut.mean() > 0.9  # the mask removes only saturated edges and clipped highlights
        ours = _levels(_ours(planes, spec))
        sws = _sws_to_rgb(frame, spec, SWS_EXACT).astype(np.float64)
        assert np.abs(ours - sws)[in_gamut].max() <= 1, path.name
        # swscale's default (fast, fixed-point) path: the same colours, within its own rounding error.
        fast = np.abs(ours - _sws_to_rgb(frame, spec).astype(np.float64))[in_gamut]
        assert fast.max() <= 3 and fast.mean() < 1.5, path.name


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_round_trip_returns_the_planes(spec):
    for path in PHOTOS[:4]:
        planes = _sws_to_i420(_photo(path), spec).to_ndarray()
        back = rgb_to_i420(_ours(planes, spec), spec)[0].numpy().astype(int)
        assert back.shape == planes.shape and back.dtype == np.int64
        h = planes.shape[0] * 2 // 3
        exact = _exact(planes, spec)
        pixel_ok = ((exact >= -0.5) & (exact <= 255.5)).all(0)
        # Chroma is the mean of a 2x2 block: it comes back only if all four pixels were in gamut.
        block_ok = pixel_ok.reshape(h // 2, 2, -1, 2).all(axis=(1, 3))
        diff = np.abs(back - planes)
        assert diff[:h][pixel_ok].max() <= 1, path.name
        uv_diff = diff[h:].reshape(2, h // 2, -1)
        assert uv_diff[:, block_ok].max() <= 1, path.name


def test_rgb_to_i420_matches_swscale_on_flat_blocks():
    """Where a 2x2 block has one colour, chroma siting does not matter: swscale (nearest chroma, accurate rounding)
    and we must agree."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    for spec in SPECS:
        ours = rgb_to_i420(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, spec)[0].numpy().astype(int)
        sws = _sws_to_i420(rgb, spec, Interpolation.POINT | Interpolation.ACCURATE_RND).to_ndarray().astype(int)
        assert np.abs(ours - sws).max() <= 1, spec


def test_conversion_keeps_dtype_device_and_inputs():
    planes = torch.randint(16, 236, (2, 24, 20), dtype=torch.uint8)
    before = planes.clone()
    rgb = i420_to_rgb(planes, YuvSpec("bt709"), torch.float16)
    assert rgb.shape == (2, 3, 16, 20) and rgb.dtype == torch.float16
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    assert torch.equal(planes, before)
    out = rgb_to_i420(rgb, YuvSpec("bt709"))
    assert out.shape == planes.shape and out.dtype == torch.uint8


def test_matrices_differ_and_full_range_differs():
    planes = torch.full((1, 6, 4), 128, dtype=torch.uint8)
    planes[0, 4:] = torch.tensor([[60, 60, 200, 200], [200, 200, 60, 60]], dtype=torch.uint8)  # U, then V
    results = [i420_to_rgb(planes, spec) for spec in SPECS]
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert (results[i] - results[j]).abs().max() > 1 / 255, (SPECS[i], SPECS[j])


def test_default_for():
    assert YuvSpec.default_for(640, 360) == YuvSpec("bt601", False)
    assert YuvSpec.default_for(720, 576) == YuvSpec("bt601", False)  # PAL SD
    assert YuvSpec.default_for(720, 578) == YuvSpec("bt709", False)
    assert YuvSpec.default_for(1280, 720) == YuvSpec("bt709", False)
    assert YuvSpec.default_for(1025, 400) == YuvSpec("bt709", False)  # wide but short: still HD
    assert YuvSpec.default_for(1920, 1080, full_range=True) == YuvSpec("bt709", True)
    with pytest.raises(ValueError, match="unknown YUV matrix"):
        YuvSpec("bt470")


def test_uint8_float_round_trip_is_exact_for_every_level():
    levels = torch.arange(256, dtype=torch.uint8)
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        as_float = to_float(levels, dtype)
        assert as_float.dtype == dtype and as_float.min() == 0 and as_float.max() == 1
        assert torch.equal(to_uint8(as_float), levels), dtype


def test_to_uint8_rounds_half_to_even_and_saturates():
    # 0.5/255 and 1.5/255 scale to exact halves in float64: ties go to the even level.
    x = torch.tensor([0.5, 1.5, 2.5, 254.6, -3.0, 300.0], dtype=torch.float64) / 255.0
    assert to_uint8(x).tolist() == [0, 2, 2, 255, 0, 255]


def test_to_float_refuses_floats_and_keeps_the_input():
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.rand(2, 2))
    frames = torch.full((1, 2, 2, 3), 51, dtype=torch.uint8)
    assert torch.allclose(to_float(frames), torch.full((1, 2, 2, 3), 0.2)) and (frames == 51).all()


def test_luma_uses_the_bt601_weights():
    rgb = torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 2, 2)  # pure red, green, blue
    y = luma(rgb)
    assert y.shape == (3, 1, 2, 2)
    assert torch.allclose(y[:, 0, 0, 0], torch.tensor([0.299, 0.587, 0.114]))
    assert torch.allclose(luma(torch.ones(1, 3, 1, 1)), torch.ones(1, 1, 1, 1))


def test_colour_matrices_are_made_once_per_device(monkeypatch):
    from inference.core.colour import YuvSpec, i420_to_rgb, rgb_to_i420

    inverted: list[torch.Tensor] = []
    inv = torch.linalg.inv
    monkeypatch.setattr(torch.linalg, "inv", lambda a: (inverted.append(a), inv(a))[1])
    spec = YuvSpec("bt2020", full_range=True, chroma_left=True)
    planes = torch.randint(0, 256, (2, 24, 32), dtype=torch.uint8)
    for _ in range(4):  # four batches, in and out
        rgb_to_i420(i420_to_rgb(planes, spec), spec)
    # The RGB -> YUV matrix is made (and, on a GPU, copied to it) once per spec and device, not once per batch (at
    # most once here: an earlier test may have converted with this spec already).
    assert len(inverted) <= 1


def test_left_sited_chroma_matches_swscale_on_a_decoded_h264_frame(tmp_path, make_video):
    """swscale interpolates a decoded H.264 frame's chroma at its left siting (full chroma interpolation, accurate
    rounding): the YUV path must see the same RGB. Repetition (centre siting) was off by levels, tens at edges."""
    import dataclasses

    import av
    from av.video.reformatter import Interpolation

    from inference.core.colour import i420_to_rgb
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=1, size=(160, 120), audio=False)
    source = VideoSource(clip, planes=True, hwaccel=False)
    try:
        spec, planes = source.info.yuv, next(iter(source.frames())).array
    finally:
        source.close()
    assert spec.chroma_left  # H.264: left-sited
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
        flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
        sws = frame.reformat(
            format="rgb24", src_colorspace="smpte170m", src_color_range="MPEG", dst_color_range="JPEG",
            interpolation=flags,
        ).to_ndarray().astype(float)  # fmt: skip

    def error(s) -> np.ndarray:
        ours = (i420_to_rgb(torch.from_numpy(planes)[None], s)[0].permute(1, 2, 0).double() * 255).round().numpy()
        return np.abs(ours - sws)[2:-2, 2:-2]  # swscale treats the outermost pixels its own way

    left = error(spec)
    assert left.mean() < 0.05 and left.max() <= 1
    centre = error(dataclasses.replace(spec, chroma_left=False))
    assert centre.mean() > 0.3 and centre.max() >= 10  # what the old repetition gave


def test_left_sited_downsampling_keeps_a_ramp_in_place():
    """A chroma ramp along x comes out sampled at the even columns (left siting), not half a pixel to the right."""
    from inference.core.colour import YuvSpec, rgb_to_i420

    h, w = 8, 32
    x = torch.arange(w, dtype=torch.float64)
    yuv = torch.stack((torch.full((h, w), 120.0, dtype=torch.float64), (100 + 4 * x).expand(h, w),
                       torch.full((h, w), 128.0, dtype=torch.float64)))  # fmt: skip
    a, b = (torch.from_numpy(m) for m in yuv8_to_rgb_reference("bt709", full_range=False))
    rgb = (torch.einsum("ij,jhw->ihw", a, yuv) + b[:, None, None]).float()[None]
    for left, shift in ((True, 0.0), (False, 0.5)):
        out = rgb_to_i420(rgb, YuvSpec("bt709", chroma_left=left))[0]
        u = out[h : h + h // 4].reshape(h // 2, w // 2)[0].double()
        expected = 100 + 4 * (2 * torch.arange(w // 2, dtype=torch.float64) + shift)
        assert (u[1:-1] - expected[1:-1]).abs().max() <= 1.0, left


@pytest.mark.gpu
def test_colour_conversion_on_cuda_never_waits_for_the_host():
    spec = YuvSpec("bt709", chroma_left=True)
    planes = torch.randint(16, 235, (4, 1080 * 3 // 2, 1920), dtype=torch.uint8, device="cuda")
    rgb_to_i420(i420_to_rgb(planes, spec), spec)  # the first call copies the matrices once
    with no_host_sync():
        for _ in range(3):
            rgb_to_i420(i420_to_rgb(planes, spec, torch.float16), spec)
    torch.cuda.synchronize()


@pytest.mark.gpu
def test_left_sited_conversion_on_cuda_matches_the_cpu():
    spec = YuvSpec("bt709", chroma_left=True)
    planes = torch.randint(0, 256, (2, 120 * 3 // 2, 160), dtype=torch.uint8)
    cpu = i420_to_rgb(planes, spec)
    gpu = i420_to_rgb(planes.cuda(), spec).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=0)
    assert (rgb_to_i420(cpu.cuda(), spec).cpu().int() - rgb_to_i420(cpu, spec).int()).abs().max() <= 1
