"""Perceptual losses and the VGG loss network (random or local weights only: nothing is downloaded)."""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import warnings

import pytest
import torch
import torch.nn as nn

from inference.core.errors import UserError
from styletrain import vgg
from styletrain.cli import with_flags
from styletrain.losses import (
    LossNetwork,
    PerceptualLoss,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
    weighted_sum,
)


@pytest.fixture(autouse=True)
def hub_dir(tmp_path, monkeypatch):
    """A private torch hub checkpoint folder (``$TORCH_HOME/hub/checkpoints``): tests never read or write the user's
    cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def random_net() -> LossNetwork:
    with pytest.warns(UserWarning):
        return LossNetwork("vgg16", "random", ["relu1_2", "relu2_2", "relu3_3"])


def _random_full_state(arch: str) -> dict[str, torch.Tensor]:
    features = vgg.build_features(arch)
    vgg.random_init_(features, seed=3)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a whole-model state_dict also holds the classifier
    return state


# ----------------------------------------------------------------------------------------------- pure functions


def test_gram_matrix_matches_explicit_loops():
    feat = torch.randn(2, 3, 4, 5)
    gram = gram_matrix(feat)
    assert gram.shape == (2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected = sum(float(feat[b, i, y, x] * feat[b, j, y, x]) for y in range(4) for x in range(5))
                assert gram[b, i, j].item() == pytest.approx(expected / (3 * 4 * 5), rel=1e-5, abs=1e-6)


def test_gram_matrix_is_float32_under_bf16_autocast():
    feat = torch.randn(1, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(feat.bfloat16())
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(feat.bfloat16().float()))


def test_content_loss_is_sum_over_layers_of_mean_squared_error():
    a = {"x": torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), "y": torch.ones(1, 2, 1, 1)}
    b = {"x": torch.tensor([[[[1.0, 0.0], [3.0, 8.0]]]]), "y": torch.zeros(1, 2, 1, 1)}
    assert content_loss(a, b, ["x"]).item() == pytest.approx((0 + 4 + 0 + 16) / 4)
    assert content_loss(a, b, ["x", "y"]).item() == pytest.approx(5.0 + 1.0)


def test_style_loss_with_a_precomputed_gram_broadcasts_over_the_batch():
    feats = {"l": torch.randn(3, 4, 5, 5)}
    target = torch.randn(1, 4, 4)
    expected = sum(((gram_matrix(feats["l"][b : b + 1])[0] - target[0]) ** 2).mean() for b in range(3)) / 3
    assert style_loss(feats, {"l": target}, ["l"]).item() == pytest.approx(expected.item(), rel=1e-5)
    # The output's own Gram gives zero loss.
    assert style_loss(feats, {"l": gram_matrix(feats["l"])}, ["l"]).item() == pytest.approx(0.0, abs=1e-10)


def test_total_variation_on_known_images():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    stripes = torch.zeros(1, 1, 4, 6)
    stripes[..., 1::2] = 0.75  # columns alternate 0, 0.75: every horizontal step differs by 0.75
    assert total_variation(stripes).item() == pytest.approx(0.75)
    img = torch.rand(2, 3, 5, 7)
    dx = (img[..., 1:] - img[..., :-1]).abs().mean()
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean()
    assert total_variation(img).item() == pytest.approx((dx + dy).item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------- loss network


def test_layer_indices_match_torchvision():
    from torchvision.models.vgg import cfgs, make_layers

    for arch, cfg in (("vgg16", "D"), ("vgg19", "E")):
        reference = make_layers(cfgs[cfg])
        ours = vgg.build_features(arch)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in reference.state_dict().items()
        }
        for name, index in vgg.relu_indices(arch).items():
            assert isinstance(reference[index], nn.ReLU), name
            assert isinstance(reference[index - 1], nn.Conv2d), name
    assert vgg.relu_indices("vgg16")["relu4_3"] == 22
    assert vgg.relu_indices("vgg19")["relu5_4"] == 35


def test_loss_network_layers_shapes_and_truncation(random_net):
    x = torch.rand(2, 3, 32, 48)
    feats = random_net(x)
    assert list(feats) == ["relu1_2", "relu2_2", "relu3_3"]
    assert feats["relu1_2"].shape == (2, 64, 32, 48)
    assert feats["relu2_2"].shape == (2, 128, 16, 24)
    assert feats["relu3_3"].shape == (2, 256, 8, 12)
    assert len(random_net.features) == vgg.relu_indices("vgg16")["relu3_3"] + 1


def test_loss_network_is_frozen_not_in_place_and_absent_from_state_dict(random_net):
    assert not any(p.requires_grad for p in random_net.parameters())
    random_net.train()
    assert not random_net.training and not random_net.features.training
    x = torch.rand(1, 3, 16, 16)
    before = x.clone()
    random_net(x)
    assert torch.equal(x, before)
    assert random_net.state_dict() == {}
    wrapper = nn.ModuleDict({"loss": random_net, "head": nn.Linear(2, 2)})
    assert set(wrapper.state_dict()) == {"head.weight", "head.bias"}
    weight = random_net.features[0].weight.clone()
    wrapper.load_state_dict(wrapper.state_dict(), strict=True)
    assert torch.equal(random_net.features[0].weight, weight)


def test_unknown_layer_and_arch_are_user_errors():
    with pytest.raises(UserError, match=r"relu9_9.*valid layers: relu1_1, relu1_2"):
        LossNetwork("vgg16", "random", ["relu9_9"])
    with pytest.raises(UserError, match="relu5_4"):  # exists in VGG19 only
        LossNetwork("vgg16", "random", ["relu5_4"])
    with pytest.raises(UserError, match="unknown loss network 'vgg11'"):
        LossNetwork("vgg11", "random", ["relu1_1"])


def test_random_weights_warn_loudly_once_and_are_deterministic(caplog):
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = LossNetwork("vgg19", "random", ["relu1_1"])
    # One warning, not also a log record (both reached stderr, so every fit printed it twice).
    assert [str(w.message).count("RANDOM weights") for w in caught] == [1]
    assert "RANDOM" not in caplog.text
    with pytest.warns(UserWarning):
        b = LossNetwork("vgg19", "random", ["relu1_1"])
    assert torch.equal(a.features[0].weight, b.features[0].weight)


def test_download_failure_names_both_offline_options(monkeypatch):
    def offline(arch):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(vgg, "download_imagenet_state_dict", offline)
    with pytest.raises(UserError) as info:
        LossNetwork("vgg16", "imagenet", ["relu2_2"])
    message = str(info.value)
    assert "\n" not in message and "--" not in message  # the library names its field; the CLI knows the flag
    assert "`vgg_weights` /path/to/vgg16-397923af.pth" in message and "`vgg_weights` random" in message
    assert "hub" in message and "checkpoints" in message
    on_command_line = with_flags(info.value)
    assert "--model.vgg_weights /path/to/vgg16-397923af.pth" in str(on_command_line)
    assert "--model.vgg_weights random" in str(on_command_line)


def test_failed_download_is_not_retried_and_names_the_field(monkeypatch, hub_dir, capsys):
    attempts = []

    def offline(arch):
        attempts.append(arch)
        raise urllib.error.URLError("timed out")

    monkeypatch.setattr(vgg, "download_imagenet_state_dict", offline)
    with pytest.raises(UserError) as info:
        LossNetwork("vgg16", "imagenet", ["relu2_2"])
    assert info.value.field == "vgg_weights" and "--" not in str(info.value)
    assert "downloading the ImageNet VGG16" in capsys.readouterr().err  # a progress line before the wait
    with pytest.raises(UserError, match="not retried"):
        LossNetwork("vgg16", "imagenet", ["relu2_2"])
    assert attempts == ["vgg16"]  # the second run failed at once, without the network
    (marker,) = hub_dir.glob(".vgg16-*.unreachable")  # the failure is remembered beside the cache
    old = time.time() - vgg.RETRY_AFTER_S - 1
    os.utime(marker, (old, old))
    with pytest.raises(UserError, match="timed out"):
        LossNetwork("vgg16", "imagenet", ["relu2_2"])
    assert attempts == ["vgg16", "vgg16"]  # tried again once the window passed


def test_cached_weights_are_used_even_after_a_failed_download(monkeypatch, hub_dir, capsys):
    state = _random_full_state("vgg16")

    def offline(arch):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(vgg, "download_imagenet_state_dict", offline)
    with pytest.raises(UserError, match="offline"):
        LossNetwork("vgg16", "imagenet", ["relu2_2"])  # a failure, remembered for the next hour
    capsys.readouterr()
    (hub_dir / "vgg16-397923af.pth").write_bytes(b"cached")  # torchvision reads it; the stub below stands in
    monkeypatch.setattr(vgg, "download_imagenet_state_dict", lambda arch: state)
    net = LossNetwork("vgg16", "imagenet", ["relu2_2"])
    assert torch.equal(net.features[7].weight, state["features.7.weight"])
    assert "downloading" not in capsys.readouterr().err


def test_imagenet_weights_are_loaded_from_the_downloaded_state_dict(monkeypatch):
    state = _random_full_state("vgg16")
    monkeypatch.setattr(vgg, "download_imagenet_state_dict", lambda arch: state)
    net = LossNetwork("vgg16", "imagenet", ["relu2_2"])
    assert torch.equal(net.features[7].weight, state["features.7.weight"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("whole_model", [True, False])
def test_local_weights_file(tmp_path, suffix, whole_model):
    state = _random_full_state("vgg16")
    if not whole_model:
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    net = LossNetwork("vgg16", str(path), ["relu1_2", "relu3_3"])
    key = "features.12.weight" if whole_model else "12.weight"
    assert torch.equal(net.features[12].weight, state[key])


def test_local_weights_are_checked_strictly(tmp_path):
    wrong_arch = tmp_path / "vgg19.pth"
    torch.save(_random_full_state("vgg19"), wrong_arch)
    with pytest.raises(
        UserError,
        match=r"vgg19.pth is not a torchvision vgg16 state_dict: missing keys \[17\.bias.*unexpected keys \[16\.bias",
    ):
        LossNetwork("vgg16", str(wrong_arch), ["relu1_2"])
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in _random_full_state("vgg16").items() if k != "features.28.bias"}, partial)
    with pytest.raises(UserError, match=r"missing keys \[28\.bias\] \(1\)"):
        LossNetwork("vgg16", str(partial), ["relu1_2"])
    with pytest.raises(UserError, match="VGG weights file not found"):
        LossNetwork("vgg16", str(tmp_path / "nope.pth"), ["relu1_2"])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="cannot read VGG weights file"):
        LossNetwork("vgg16", str(garbage), ["relu1_2"])


# ----------------------------------------------------------------------------------------------- PerceptualLoss


def test_perceptual_loss_raw_terms_weighted_sum_and_single_vgg_pass(random_net):
    loss = PerceptualLoss(
        content_weight=2.0, style_weight=3.0, tv_weight=5.0, content_layers=["relu2_2"],
        style_layers=["relu1_2", "relu3_3"], loss_network=random_net,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="set_style"):
        loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    style = torch.rand(1, 3, 40, 30)
    loss.set_style(style)
    assert loss.style_grams["relu1_2"].shape == (1, 64, 64)
    assert loss.state_dict() == {}  # neither the VGG nor the Grams go into checkpoints

    calls = []
    handle = random_net.register_forward_hook(lambda *args: calls.append(1))
    out, content = torch.rand(2, 3, 24, 24, requires_grad=True), torch.rand(2, 3, 24, 24)
    terms = loss(out, content)
    handle.remove()
    assert len(calls) == 1
    assert set(terms) == {"content", "style", "tv"}
    feats_out, feats_in = random_net(out), random_net(content)
    assert terms["content"].item() == pytest.approx(content_loss(feats_out, feats_in, ["relu2_2"]).item(), 1e-5)
    grams = {k: gram_matrix(random_net(style)[k]) for k in ("relu1_2", "relu3_3")}
    assert terms["style"].item() == pytest.approx(style_loss(feats_out, grams, ["relu1_2", "relu3_3"]).item(), 1e-5)
    assert terms["tv"].item() == pytest.approx(total_variation(out).item(), rel=1e-6)
    assert loss.weights == {"content": 2.0, "style": 3.0, "tv": 5.0}
    total = weighted_sum(terms, loss.weights)
    expected = 2.0 * terms["content"] + 3.0 * terms["style"] + 5.0 * terms["tv"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()
    # Identical output and content: zero content loss. Without a style image the style term is left out.
    assert loss(content, content)["content"].item() == pytest.approx(0.0, abs=1e-12)
    assert set(loss(content, content, with_style=False)) == {"content", "tv"}


def test_perceptual_loss_is_float32_under_bf16_autocast(random_net):
    loss = PerceptualLoss(content_layers=["relu2_2"], style_layers=["relu1_2"], loss_network=random_net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss.set_style(torch.rand(1, 3, 16, 16))
        terms = loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert loss.style_grams["relu1_2"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in terms.values())


def test_set_style_rejects_bad_inputs(random_net):
    loss = PerceptualLoss(content_layers=["relu1_2"], style_layers=["relu1_2"], loss_network=random_net)
    with pytest.raises(ValueError, match="one image"):
        loss.set_style(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loss.set_style(torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(ValueError, match="lacks layers"):
        PerceptualLoss(style_layers=["relu4_3"], loss_network=random_net)


def test_a_few_adam_steps_lower_the_style_loss():
    with pytest.warns(UserWarning):
        small = LossNetwork("vgg16", "random", ["relu1_2", "relu2_2"])
    # The default style weight matters: with random features the raw style loss is ~1e-6 and its gradients
    # ~1e-10, below Adam's epsilon; weighted by 1e10 they are in Adam's working range.
    loss = PerceptualLoss(
        content_weight=0.0, tv_weight=0.0, content_layers=["relu2_2"], style_layers=["relu1_2", "relu2_2"],
        loss_network=small,
    )  # fmt: skip
    style = torch.zeros(1, 3, 48, 48)  # strong coloured stripes
    style[:, 0, ::4] = 1.0
    style[:, 2, 2::4] = 1.0
    loss.set_style(style)
    content = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.1)
    history = []
    for _ in range(6):
        terms = loss(image.clamp(0, 1), content)
        optimizer.zero_grad()
        weighted_sum(terms, loss.weights).backward()
        optimizer.step()
        history.append(terms["style"].item())
    assert history[-1] < 0.7 * history[0], history
    assert all(b < a for a, b in zip(history, history[1:], strict=False)), history
