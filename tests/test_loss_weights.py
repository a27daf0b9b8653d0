"""Calibrated loss weights (styletrain.loss_weights): the temporal weight is calibrated from the measured terms and
frozen; the relative perceptual weights keep the balance of the terms whatever the loss net's feature scale, while
absolute weights shift it by the square of the scale. (The temporal weight in training: test_temporal_balance_training.)
"""

from __future__ import annotations

import math

import pytest
import torch

from inference.core.errors import UserError
from styletrain.loss_weights import PerceptualBalance, TemporalBalance
from styletrain.module import StyleTransferModule

from .conftest import scaled_loss_module

# --- TemporalBalance ---------------------------------------------------------------------------------------------


def _feed(balance: TemporalBalance, pairs: list[tuple[float, float]]) -> None:
    for content, temporal in pairs:
        balance.observe(torch.tensor(content), torch.tensor(temporal))


def test_temporal_weight_is_balance_times_mean_content_over_mean_temporal():
    balance = TemporalBalance(0.5, steps=3)
    _feed(balance, [(2.0, 1e-4), (4.0, 3e-4)])
    assert not balance.frozen
    assert float(balance.weight) == pytest.approx(0.5 * 6.0 / 4e-4)
    _feed(balance, [(6.0, 2e-4)])
    assert balance.frozen
    assert float(balance.weight) == pytest.approx(0.5 * 12.0 / 6e-4)


def test_temporal_weight_is_frozen_after_the_calibration_steps():
    balance = TemporalBalance(1.0, steps=2)
    _feed(balance, [(1.0, 1.0), (1.0, 1.0)])
    frozen = float(balance.weight)
    _feed(balance, [(100.0, 1e-6)] * 5)
    assert float(balance.weight) == frozen == pytest.approx(1.0)
    assert int(balance.seen) == 2


def test_temporal_weight_scales_with_the_square_of_a_feature_scale():
    # Content is an MSE of features: scaling the loss net's features by s scales it by s**2, and so the weight.
    a, b = TemporalBalance(1.0, steps=4), TemporalBalance(1.0, steps=4)
    terms = [(3.0, 2e-3), (2.5, 1e-3), (2.0, 4e-3), (1.0, 1e-3)]
    _feed(a, terms)
    _feed(b, [(c * 10.0**2, t) for c, t in terms])
    assert float(b.weight) == pytest.approx(100.0 * float(a.weight), rel=1e-12)


def test_no_temporal_signal_keeps_the_temporal_weight_at_zero():
    balance = TemporalBalance(1.0, steps=3)
    _feed(balance, [(1.0, 0.0)])
    assert float(balance.weight) == 0.0
    _feed(balance, [(1.0, 2.0)])
    assert float(balance.weight) == pytest.approx(1.0)


def test_temporal_calibration_state_round_trips_through_a_state_dict():
    balance = TemporalBalance(2.0, steps=2)
    _feed(balance, [(1.0, 0.5), (3.0, 1.5)])
    restored = TemporalBalance(2.0, steps=2)
    restored.load_state_dict(balance.state_dict())
    assert restored.frozen and float(restored.weight) == pytest.approx(2.0 * 4.0 / 2.0)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_invalid_temporal_balance_is_refused(value):
    with pytest.raises(ValueError, match="balance"):
        TemporalBalance(value)


@pytest.mark.parametrize("make", [lambda: TemporalBalance(1.0, steps=0), lambda: PerceptualBalance(1.0, steps=0)])
def test_invalid_calibration_steps_are_refused(make):
    with pytest.raises(ValueError, match="steps"):
        make()


# --- PerceptualBalance -------------------------------------------------------------------------------------------


def test_perceptual_weights_are_zero_before_the_first_observed_batch():
    assert {k: float(v) for k, v in PerceptualBalance(2.0, 0.5).weights(1e5).items()} == {"style": 0.0, "tv": 0.0}


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


def test_invalid_perceptual_balances_are_user_errors(style_path):
    with pytest.raises(UserError, match="style_balance"):
        scaled_loss_module(style_path, style_balance=0.0)
    with pytest.raises(UserError, match="style_balance"):
        scaled_loss_module(style_path, style_balance=1.0, tv_balance=-1.0)
