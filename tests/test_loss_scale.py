"""Relative perceptual weights (styletrain.loss_scale): the balance of the terms does not depend on the loss net's
feature scale, while absolute weights shift it by the square of the scale."""

from __future__ import annotations

import pytest
import torch

from inference.core.errors import UserError
from styletrain.module import StyleTransferModule

from .conftest import scaled_loss_module


def _perceptual_weights(module: StyleTransferModule) -> dict[str, torch.Tensor | float]:
    """The content, style and TV weights a training step uses: the configured ones, or with relative weights the
    ones the perceptual balance calibrated."""
    weights = dict(module.loss_weights)
    if module.perceptual_balance is not None:
        weights |= module.perceptual_balance.weights(weights["content"])
    return weights


def _weighted_ratios(module: StyleTransferModule, content: torch.Tensor, steps: int) -> list[dict[str, float]]:
    """Train ``steps`` steps; per step, the weighted style and TV terms as multiples of the weighted content term."""
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    ratios = []
    for _ in range(steps):
        terms = module.loss_terms({"content": content})
        weights = _perceptual_weights(module)  # the frozen weights the step used (calibration is over by then)
        used = sum(weights[k] * terms[k].detach() for k in ("content", "style", "tv"))
        assert float(terms["total"]) == pytest.approx(float(used), rel=1e-5)  # they are the weights the step used
        weighted = {k: float(weights[k] * terms[k].detach()) for k in ("content", "style", "tv")}
        ratios.append({k: weighted[k] / weighted["content"] for k in ("style", "tv")})
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    return ratios


@pytest.mark.slow  # about 2.5 s of CPU alone; past the 5 s quick budget when the cores are shared
def test_relative_weights_give_the_same_balance_for_a_loss_net_scaled_by_10(style_path, content):
    relative = {"style_balance": 3.0, "tv_balance": 0.01, "perceptual_calibration_steps": 1}
    plain, scaled = (
        _weighted_ratios(scaled_loss_module(style_path, s, **relative), content, steps=4) for s in (1.0, 10.0)
    )
    for a, b in zip(plain, scaled, strict=True):
        assert b["style"] == pytest.approx(a["style"], rel=1e-3) and b["tv"] == pytest.approx(a["tv"], rel=1e-3)
    # Absolute (default) weights: the same nets, the style term's share moves by 10**2.
    plain, scaled = (_weighted_ratios(scaled_loss_module(style_path, s), content, steps=1) for s in (1.0, 10.0))
    assert scaled[0]["style"] == pytest.approx(100.0 * plain[0]["style"], rel=1e-3)


def test_style_balance_is_the_ratio_of_the_weighted_terms_on_the_content_images(style_path, content):
    module = scaled_loss_module(style_path, style_balance=2.0, tv_balance=0.5, perceptual_calibration_steps=1)
    with torch.no_grad():
        module.loss_terms({"content": content})  # the first training batch calibrates
        references = module.perceptual.reference_terms(content)
    weights = _perceptual_weights(module)
    energy = module.loss_weights["content"] * float(references["ref_content"])
    assert float(weights["style"] * references["ref_style"]) == pytest.approx(2.0 * energy, rel=1e-4)
    assert float(weights["tv"] * references["ref_tv"]) == pytest.approx(0.5 * energy, rel=1e-4)
    assert module.perceptual_balance.frozen
    calibration = module.artifact_metadata()["config"]["perceptual_calibration"]
    assert calibration["style_balance"] == 2.0 and calibration["style_weight"] == pytest.approx(float(weights["style"]))
    # Evaluation neither calibrates nor changes the weights.
    module.eval().loss_terms({"content": content.flip(-1)})
    assert float(_perceptual_weights(module)["style"]) == float(weights["style"])


def test_invalid_balances_are_user_errors(style_path):
    with pytest.raises(UserError, match="style_balance"):
        scaled_loss_module(style_path, style_balance=0.0)
    with pytest.raises(UserError, match="style_balance"):
        scaled_loss_module(style_path, style_balance=1.0, tv_balance=-1.0)


def test_temporal_balance_against_the_whole_perceptual_objective(style_path, content):
    runs = {}
    for against in ("content", "perceptual"):
        module = scaled_loss_module(
            style_path, temporal_balance=0.5, temporal_calibration_steps=1, temporal_balance_against=against
        )
        terms = module.loss_terms({"content": content}, generator=torch.Generator().manual_seed(0))
        runs[against] = (float(module.temporal_balance.weight), {k: float(v) for k, v in terms.items()})
    weights = module.loss_weights
    (w_content, terms), (w_perceptual, _) = runs["content"], runs["perceptual"]
    assert w_content == pytest.approx(0.5 * weights["content"] * terms["content"] / terms["temporal"], rel=1e-4)
    whole = sum(weights[k] * terms[k] for k in ("content", "style", "tv"))
    assert w_perceptual == pytest.approx(0.5 * whole / terms["temporal"], rel=1e-4)
    with pytest.raises(UserError, match="temporal_balance_against"):
        scaled_loss_module(style_path, temporal_balance=0.5, temporal_balance_against="style")
