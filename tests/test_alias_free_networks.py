"""The alias-free design of johnson, light and tiny: filters, equivariance at random init, and the original design
kept for artifacts trained with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.model.artifact import load_artifact, read_metadata, save_artifact
from inference.model.filters import LowPassDownsample, SmoothUpsample, binomial_taps
from inference.model.networks import build_network, build_saved_network
from styletrain.equivariance import one_pixel_shift_error

from .conftest import SMALL_NETWORKS, small_network

REPO = Path(__file__).resolve().parent.parent
# The original-design two-style light artifact (trained before the alias-free design) and its output on a seeded
# input, computed with the code as it was before the design existed: loading must still give exactly that network.
ORIGINAL_ARTIFACT = REPO / "docs" / "models" / "starry_night+great_wave-hed-light-original.safetensors"
ORIGINAL_OUTPUT = REPO / "tests" / "data" / "shipped_light_output_seed0_24x40.npy"


def _photo() -> torch.Tensor:
    """A crop of a real photograph shipped with the repository, ``[1, 3, 128, 192]`` in [0, 1]."""
    from PIL import Image

    image = Image.open(REPO / "data" / "samples" / "content" / "kodim23_parrots.jpg").convert("RGB")
    array = np.asarray(image, dtype=np.float32)[:128, :192] / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None]


def test_binomial_taps_sum_to_one_and_are_symmetric() -> None:
    taps = binomial_taps(5)
    assert taps.tolist() == pytest.approx([1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16])
    with pytest.raises(ValueError, match="taps"):
        binomial_taps(0)


@pytest.mark.parametrize("size", [(16, 16), (15, 9), (3, 2)])
def test_low_pass_downsample_halves_rounding_up_and_keeps_a_constant(size: tuple[int, int]) -> None:
    layer = LowPassDownsample(4)
    x = torch.full((2, 4, *size), 0.3)
    out = layer(x)
    assert out.shape == (2, 4, (size[0] + 1) // 2, (size[1] + 1) // 2)
    assert torch.allclose(out, torch.full_like(out, 0.3))
    assert torch.equal(x, torch.full_like(x, 0.3))  # input untouched


def test_low_pass_downsample_removes_the_pixel_grid() -> None:
    # The checkerboard is exactly the frequency that strided sampling folds onto a constant: plain subsampling keeps
    # it as a flat +1 or -1 depending on the phase, the low-pass filter removes it whatever the phase.
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = ((xx + yy) % 2 * 2 - 1).float()[None, None]
    assert checker[..., ::2, ::2].abs().mean() == 1.0
    out = LowPassDownsample(1)(checker)
    assert out[..., 2:-2, 2:-2].abs().max() < 1e-6


def test_smooth_upsample_is_bilinear_followed_by_a_binomial_blur() -> None:
    x = torch.rand(1, 3, 12, 10)
    out = SmoothUpsample(3)(x)
    assert out.shape == (1, 3, 24, 20)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    k = binomial_taps(3)
    blurred = F.conv2d(bilinear, torch.outer(k, k).expand(3, 1, 3, 3).contiguous(), padding=1, groups=3)
    assert torch.allclose(out[..., 3:-3, 3:-3], blurred[..., 3:-3, 3:-3], atol=1e-6)
    assert torch.allclose(SmoothUpsample(2)(torch.full((1, 2, 5, 7), 0.7)), torch.full((1, 2, 10, 14), 0.7))


@pytest.mark.parametrize("name", ["johnson", "light", "tiny"])
def test_the_default_design_is_alias_free_and_recorded(name: str) -> None:
    net = build_network(name)
    assert net.config["alias_free"] is True
    assert not any(isinstance(m, torch.nn.PixelShuffle) for m in net.modules())
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert any(isinstance(m, LowPassDownsample) for m in net.modules())
    assert build_network(name, alias_free=False).config["alias_free"] is False


@pytest.mark.parametrize("name", ["johnson", "light"])
def test_alias_free_networks_move_with_a_one_pixel_shift(name: str) -> None:
    # Random init on a real photograph, the training dashboard's measure (relative to the output's spread).
    photo = _photo()
    errors = {}
    for alias_free in (False, True):
        torch.manual_seed(0)
        net = build_network(name, **SMALL_NETWORKS[name], alias_free=alias_free).eval()
        errors[alias_free] = float(one_pixel_shift_error(net, photo))
    assert errors[True] < 0.3 and errors[True] < errors[False] / 3, errors


@pytest.mark.parametrize("name", ["johnson", "light", "tiny"])
def test_alias_free_networks_keep_the_pixel_contract(name: str) -> None:
    net = small_network(name)
    x = torch.rand(2, 3, 37, 53, requires_grad=True)
    out, features = net(x, return_features=True)
    assert out.shape == (2, 3, 37, 53) and features.shape[-2:] == (10, 14)
    assert 0 <= float(out.detach().min()) and float(out.detach().max()) <= 1
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_saved_configs_without_the_key_rebuild_the_original_design() -> None:
    assert build_saved_network("light", {"channels": [8, 16, 24]}).config["alias_free"] is False
    assert build_saved_network("light", {"alias_free": True}).config["alias_free"] is True
    assert build_saved_network("identity", {}).name == "identity"


def test_an_artifact_written_before_the_design_loads_bit_identically() -> None:
    meta = read_metadata(ORIGINAL_ARTIFACT)
    assert meta.format_version == 2 and "alias_free" not in meta.network_kwargs
    net = load_artifact(ORIGINAL_ARTIFACT).network
    assert net.config["alias_free"] is False
    torch.manual_seed(0)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 24, 40))
    # Bit-identical on the machine that made the reference; a tolerance of float rounding elsewhere.
    assert np.allclose(out.numpy(), np.load(ORIGINAL_OUTPUT), rtol=0, atol=1e-6)


def test_new_artifacts_record_the_design(tmp_path: Path) -> None:
    for alias_free in (True, False):
        net = small_network("light", alias_free=alias_free)
        path = save_artifact(
            tmp_path / f"{alias_free}.safetensors", net, styles=[("s", "0" * 64)], config={}, temporal=False
        )
        kwargs = json.loads(json.dumps(read_metadata(path).network_kwargs))
        assert kwargs["alias_free"] is alias_free
        x = torch.rand(1, 3, 32, 48)
        with torch.no_grad():
            assert torch.equal(load_artifact(path).network(x), net.eval()(x))
