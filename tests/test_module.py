"""StyleTransferModule: losses go down, temporal pairs, small checkpoints, precision and memory-format flags."""

from __future__ import annotations

import pytest
import torch

from inference.core.errors import OptionError, UserError
from styletrain.module import StyleTransferModule
from styletrain.module_config import ScheduleConfig

from .conftest import small_module


def test_few_steps_lower_total_loss(style_path, content):
    module = small_module(style_path)
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)
    totals = []
    for _ in range(8):
        terms = module.loss_terms({"content": content})
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        totals.append(terms["total"].item())
    assert set(terms) == {"content", "style", "tv", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert totals[-1] < 0.7 * totals[0], totals
    # The total is exactly the weighted sum of the raw terms.
    expected = sum(module.loss_weights[k] * terms[k] for k in ("content", "style", "tv"))
    torch.testing.assert_close(terms["total"], expected)


def test_perceptual_terms_come_from_the_one_perceptual_loss(style_path, content):
    module = small_module(style_path, loss={"content_weight": 2.0, "style_weight": 3.0, "tv_weight": 5.0})
    module.eval()
    terms = module.loss_terms({"content": content})
    with torch.no_grad():
        direct = module.perceptual(module(content), content)
    for name in ("content", "style", "tv"):
        torch.testing.assert_close(terms[name].detach(), direct[name])
    assert module.loss_weights == {"content": 2.0, "style": 3.0, "tv": 5.0, "temporal": 0.0, "temporal_feature": 0.0}


def test_style_targets_computed_once_and_not_saved(style_path, content):
    module = small_module(style_path)
    grams = module.style_grams()
    assert set(grams) == {"relu1_2", "relu2_2"} and grams["relu1_2"].shape == (1, 64, 64)
    first = grams["relu1_2"]
    module.loss_terms({"content": content})
    assert module.style_grams()["relu1_2"] is first  # cached, not recomputed per step
    keys = list(module.state_dict())
    assert keys and all(k.startswith("net.") for k in keys), keys  # no VGG weights, no Gram buffers


def test_synthetic_pair_adds_temporal_terms(style_path, content):
    module = small_module(style_path, temporal={"weight": 10.0, "feature_weight": 1.0})
    terms = module.loss_terms({"content": content}, generator=torch.Generator().manual_seed(0))
    assert {"temporal", "temporal_feature"} <= set(terms)
    assert terms["temporal"].item() > 0 and terms["temporal_feature"].item() > 0
    terms["total"].backward()
    assert all(p.grad is not None for p in module.net.parameters())


def test_real_pair_batch(style_path, content):
    module = small_module(style_path, temporal={"weight": 10.0})
    b, _, h, w = content.shape
    batch = {
        "frame1": content,
        "frame2": content.roll(1, dims=-1),
        "flow": torch.zeros(b, 2, h, w),
        "mask": torch.ones(b, 1, h, w),
    }
    terms = module.loss_terms(batch)
    assert "temporal" in terms and "temporal_feature" not in terms
    # A pair batch with the temporal loss off still trains the perceptual terms on both frames.
    plain = small_module(style_path).loss_terms(batch)
    assert set(plain) == {"content", "style", "tv", "total"}


def test_checkpoint_hooks_drop_loss_net_and_load_strictly(style_path):
    module = small_module(style_path)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(k.startswith("net.") for k in checkpoint["state_dict"])  # no VGG
    meta = checkpoint["styletrain"]
    assert meta["network"] == "tiny" and meta["style_name"] == "style" and len(meta["style_sha256"]) == 64
    other = small_module(style_path)
    # Keys from a compiled run load into an uncompiled module, strictly.
    compiled_keys = {k.replace("net.", "net._orig_mod.", 1): v for k, v in checkpoint["state_dict"].items()}
    other.load_state_dict(compiled_keys, strict=True)
    for key, value in module.net.state_dict().items():
        assert torch.equal(other.net.state_dict()[key], value)
    with pytest.raises(RuntimeError):
        other.load_state_dict({k: v for k, v in list(checkpoint["state_dict"].items())[1:]}, strict=True)


def test_bf16_autocast_cpu(style_path, content):
    module = small_module(style_path, temporal={"weight": 1.0})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = module.loss_terms({"content": content}, generator=torch.Generator().manual_seed(0))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    terms["total"].backward()


def test_channels_last_and_compile_flags(style_path, content):
    compiled = small_module(style_path, compile=True)  # compilation is lazy: nothing is compiled unless it runs
    assert not any("_orig_mod" in k for k in compiled.state_dict())  # Module.compile keeps the keys clean
    plain = small_module(style_path)
    fast = small_module(style_path, channels_last=True)
    fast.net.load_state_dict(plain.net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(content).contiguous(), plain(content))


def test_bad_options_are_user_errors(style_path, tmp_path):
    with pytest.raises(UserError, match="unknown network"):
        small_module(style_path, network="nope")
    with pytest.raises(UserError, match="missing.png"):
        small_module(tmp_path / "missing.png")
    with pytest.raises(UserError, match="^style_weight must be >= 0"):
        small_module(style_path, loss={"style_weight": -1.0})
    # The CLI's parser checks the choices; a module built in Python names the group's field.
    with pytest.raises(OptionError, match=r"^schedule.decay: unknown value 'linear'") as error:
        StyleTransferModule(style_path, network="tiny", vgg_weights="random", schedule=ScheduleConfig(decay="linear"))
    assert error.value.field == "schedule.decay"
