"""Multi-style networks (conditional instance norm) and their artifacts: shapes, gradients, blends, old files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from inference.model.artifact import FORMAT, FORMAT_VERSION, ArtifactError, load_artifact, read_metadata, save_artifact
from inference.model.layers import ConditionalInstanceNorm2d
from inference.model.networks import StyleNetwork, build_network

from .conftest import SMALL_NETWORKS, distinct_styles, small_network


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_one_style_keeps_todays_modules_and_keys(name: str) -> None:
    single, default = small_network(name, num_styles=1), build_network(name, **SMALL_NETWORKS[name])
    assert list(single.state_dict()) == list(default.state_dict()) and single.config == default.config
    assert not any(isinstance(m, ConditionalInstanceNorm2d) for m in single.modules())
    multi = small_network(name, num_styles=3)
    assert multi.config["num_styles"] == 3 and set(multi.state_dict()) == set(single.state_dict())
    norms = [m for m in multi.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    assert norms and all(m.weight.shape[0] == 3 and m.bias.shape == m.weight.shape for m in norms)


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_shapes_and_every_style_row_gets_a_gradient(name: str) -> None:
    net = small_network(name, num_styles=2).train()
    x = torch.rand(2, 3, 37, 41)
    style = torch.eye(2)  # sample 0 has style 0, sample 1 style 1
    out, feats = net(x, return_features=True, style=style)
    assert out.shape == x.shape and feats.shape[-2:] == (10, 11)
    assert 0 <= out.min() and out.max() <= 1
    loss = (out - torch.rand_like(out)).pow(2).mean() + feats.pow(2).mean()
    loss.backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        rows = param.grad.abs().amax(dim=1) if param.dim() == 2 else param.grad.abs().max().reshape(1)
        assert (rows > 1e-6).all(), pname  # every style's scale and shift learns


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_styles_differ_and_a_blend_lies_between(name: str) -> None:
    net = distinct_styles(small_network(name, num_styles=2))
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a, b = net(x, style=torch.tensor([1.0, 0.0])), net(x, style=torch.tensor([0.0, 1.0]))
        mid = net(x, style=torch.tensor([0.5, 0.5]))
        default = net(x)
    apart = (a - b).abs().mean()
    assert apart > 0.05
    assert (mid - a).abs().mean() < apart and (mid - b).abs().mean() < apart
    assert torch.equal(default, a)  # the first style by default
    net.set_style([1.0, 3.0])
    with torch.no_grad():
        assert torch.allclose(net(x), net(x, style=torch.tensor([0.25, 0.75])))
    # Per-sample weights [B, S] give each sample its own style.
    with torch.no_grad():
        both = net(torch.cat([x, x]), style=torch.eye(2))
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[0], atol=1e-5)


@pytest.mark.parametrize("weights", [[1.0], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_bad_style_weights_are_refused(weights: list[float]) -> None:
    net = small_network("tiny", num_styles=2)
    with pytest.raises(ValueError, match="style weights"):
        net.set_style(weights)
    with pytest.raises(ValueError, match="style must be"):
        net(torch.rand(2, 3, 16, 16), style=torch.ones(3, 2) / 2)


def test_multi_style_artifact_round_trip(tmp_path: Path) -> None:
    net = distinct_styles(small_network("tiny", num_styles=2))
    path = save_artifact(
        tmp_path / "m.safetensors", net, styles=[("a", "1" * 64), ("b", "2" * 64)], config={}, temporal=False
    )
    meta = read_metadata(path)
    assert meta.format_version == FORMAT_VERSION and meta.style_names == ["a", "b"]
    assert meta.styles[1].sha256 == "2" * 64
    assert meta.style_name == "a" and meta.network_kwargs["num_styles"] == 2
    loaded = load_artifact(path).network
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        for w in ([1.0, 0.0], [0.3, 0.7]):
            assert torch.equal(loaded(x, style=torch.tensor(w)), net(x, style=torch.tensor(w)))
    with pytest.raises(ValueError, match="2 styles but 1"):
        save_artifact(tmp_path / "x.safetensors", net, style_name="a", config={}, temporal=False)
    with pytest.raises(ValueError, match="unique"):
        save_artifact(tmp_path / "x.safetensors", net, styles=[("a", ""), ("a", "")], config={}, temporal=False)


def _write_raw(path: Path, net: StyleNetwork, **metadata: str) -> Path:
    base = {"format": FORMAT, "network": net.name, "network_kwargs": json.dumps(net.config), "config": "{}"}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=base | metadata)
    return path


def test_version_1_artifact_still_loads(tmp_path: Path) -> None:
    # Written the way format version 1 wrote it: no "styles" field, one style_name / style_sha256.
    net = build_network("tiny").eval()
    path = _write_raw(
        tmp_path / "v1.safetensors",
        net,
        format_version="1",
        style_name="starry",
        style_sha256="ab" * 32,
        temporal="true",
        versions="{}",
    )
    artifact = load_artifact(path)
    meta = artifact.metadata
    assert meta.format_version == 1 and meta.style_names == ["starry"] and meta.styles[0].sha256 == "ab" * 32
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(artifact.network(x), net(x))


def test_style_list_must_match_the_network(tmp_path: Path) -> None:
    net = small_network("tiny", num_styles=2)
    one = json.dumps([{"name": "a", "sha256": ""}])
    path = _write_raw(tmp_path / "m.safetensors", net, format_version="2", styles=one)
    with pytest.raises(ArtifactError, match="lists 1 styles but network 'tiny' has 2"):
        load_artifact(path)
    for bad in ("[]", "{", json.dumps([{"name": "a", "sha256": ""}] * 2)):
        _write_raw(path, net, format_version="2", styles=bad)
        with pytest.raises(ArtifactError, match="'styles'"):
            read_metadata(path)
    # Strict loading stays strict: a single-style file's weights do not fit a two-style network.
    single = build_network("tiny")
    two = json.dumps([{"name": "a", "sha256": ""}, {"name": "b", "sha256": ""}])
    path = _write_raw(path, single, format_version="2", styles=two)
    text = json.dumps(single.config | {"num_styles": 2})
    path = _write_raw(path, single, format_version="2", styles=two, network_kwargs=text)
    with pytest.raises(ArtifactError, match="has shape"):
        load_artifact(path)
