"""Forward/backward contract tests for the style networks (tiny sizes, CPU); on a GPU (marker ``gpu``), the layout
CUDA's reflection pad returns."""

from __future__ import annotations

import math

import pytest
import torch

from inference.core.errors import UserError
from inference.model.networks import (
    StyleNetwork,
    available_networks,
    build_network,
    count_parameters,
    flops_per_pixel,
    register_network,
)

from .conftest import SMALL_NETWORKS, small_network


def test_registry_lists_all_networks() -> None:
    assert {"identity", "johnson", "light", "tiny"} <= set(available_networks())
    assert available_networks() == sorted(available_networks())


def test_unknown_name_is_a_one_line_user_error() -> None:
    with pytest.raises(UserError) as info:
        build_network("resnet9000")
    message = str(info.value)
    assert "\n" not in message
    assert "'resnet9000'" in message
    assert "johnson, light, tiny" in message


@pytest.mark.parametrize("kwargs", [{"channels": (8, 16)}, {"num_residual": -1}, {"width": 3}])
def test_bad_kwargs_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserError, match="johnson"):
        build_network("johnson", **kwargs)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError):
        register_network("tiny")(StyleNetwork)


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
@pytest.mark.parametrize("shape", [(1, 3, 33, 47), (2, 3, 65, 31), (1, 3, 5, 3), (1, 3, 64, 64)])
def test_shape_range_and_input_untouched(name: str, shape: tuple[int, ...]) -> None:
    net = small_network(name).eval()
    x = torch.rand(*shape)
    before = x.clone()
    with torch.no_grad():
        out, feats = net(x, return_features=True)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert feats.shape[0] == shape[0]
    assert feats.shape[-2:] == (math.ceil(shape[2] / 4), math.ceil(shape[3] / 4))
    assert torch.equal(x, before)
    # Without return_features the same output comes back alone.
    with torch.no_grad():
        assert torch.equal(net(x), out)


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    net = small_network(name).train()
    x = torch.rand(2, 3, 37, 41, requires_grad=True)
    out, feats = net(x, return_features=True)
    # A non-trivial target so that no gradient is zero by symmetry. The features term matters for johnson, whose
    # residual blocks' last norm biases only reach the output through a norm that cancels them (as in the paper).
    loss = (out - torch.rand_like(out)).pow(2).mean() + feats.pow(2).mean()
    loss.backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        # Well above float round-off: a parameter that a later norm cancels would only get ~1e-10 noise.
        assert param.grad.abs().max() > 1e-6, pname
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["johnson", "light", "tiny"])
def test_config_round_trip(name: str) -> None:
    net = build_network(name)
    assert net.name == name
    rebuilt = build_network(net.name, **net.config)
    a, b = net.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert rebuilt.config == net.config


def test_original_johnson_follows_the_paper() -> None:
    net = build_network("johnson", alias_free=False)
    assert net.config == {"channels": [32, 64, 128], "num_residual": 5, "alias_free": False}
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)]
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 3 + 10 + 2
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())


def test_flops_and_parameters() -> None:
    names = [name for name in available_networks() if name != "identity"]
    counts = {name: count_parameters(build_network(name)) for name in names}
    flops = {name: flops_per_pixel(build_network(name)) for name in names}
    assert all(v > 0 for v in counts.values()) and all(v > 0 for v in flops.values())
    assert count_parameters(build_network("identity")) == 0 and flops_per_pixel(build_network("identity")) == 0
    assert flops["light"] < flops["johnson"] / 10
    assert counts["light"] < counts["johnson"]
    # Hand count for johnson: 2 FLOPs per multiply-add, convolutions only, per input pixel.
    c1, c2, c3 = 32, 64, 128
    macs = 81 * 3 * c1 + 9 * c1 * c2 / 4 + 9 * c2 * c3 / 16 + 10 * 9 * c3 * c3 / 16
    macs += 9 * c3 * c2 / 4 + 9 * c2 * c1 + 81 * c1 * 3
    assert flops["johnson"] == pytest.approx(2 * macs)


def test_half_precision_dtype_is_kept() -> None:
    net = small_network("light").to(torch.bfloat16).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 20, 30, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 20, 30)


@pytest.mark.parametrize("shape", [(1, 3, 8), (1, 1, 8, 8), (1, 4, 8, 8)])
def test_bad_input_shape_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected a float tensor"):
        small_network("tiny")(torch.rand(*shape))


def test_identity_returns_its_input() -> None:
    net = build_network("identity")
    assert net.config == {} and list(net.state_dict()) == []
    assert build_network(net.name, **net.config).name == "identity"
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.rand(2, 3, 9, 14).to(dtype)
        before = x.clone()
        out, feats = net(x, return_features=True)
        assert torch.equal(out, before) and out.dtype == dtype
        assert feats.shape == (2, 3, 3, 4)
        assert torch.allclose(feats[:, :, 0, 0].float(), x[:, :, :4, :4].float().mean((2, 3)), atol=1e-2)
        assert torch.equal(x, before)
    with pytest.raises(ValueError, match="expected a float tensor"):
        net(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


@pytest.mark.gpu
def test_cuda_reflection_pad_returns_nchw_for_a_channels_last_input():
    """The premise of the channels_last advice: if torch changes this, revisit configs/default.yaml."""
    x = torch.rand(2, 32, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    assert not torch.nn.ReflectionPad2d(1)(x).is_contiguous(memory_format=torch.channels_last)
