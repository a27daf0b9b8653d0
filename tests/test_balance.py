"""Temporal balance: the weight is calibrated from the measured terms, frozen after K steps, and kept in checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from styletrain.temporal.balance import TemporalBalance


def _feed(balance: TemporalBalance, pairs: list[tuple[float, float]]) -> None:
    for content, temporal in pairs:
        balance.observe(torch.tensor(content), torch.tensor(temporal))


def test_weight_is_balance_times_mean_content_over_mean_temporal():
    balance = TemporalBalance(0.5, steps=3)
    _feed(balance, [(2.0, 1e-4), (4.0, 3e-4)])
    assert not balance.frozen
    assert float(balance.weight) == pytest.approx(0.5 * 6.0 / 4e-4)
    _feed(balance, [(6.0, 2e-4)])
    assert balance.frozen
    assert float(balance.weight) == pytest.approx(0.5 * 12.0 / 6e-4)


def test_weight_is_frozen_after_the_calibration_steps():
    balance = TemporalBalance(1.0, steps=2)
    _feed(balance, [(1.0, 1.0), (1.0, 1.0)])
    frozen = float(balance.weight)
    _feed(balance, [(100.0, 1e-6)] * 5)
    assert float(balance.weight) == frozen == pytest.approx(1.0)
    assert int(balance.seen) == 2


def test_weight_scales_with_the_square_of_a_feature_scale():
    # Content is an MSE of features: scaling the loss net's features by s scales it by s**2, and so the weight.
    a, b = TemporalBalance(1.0, steps=4), TemporalBalance(1.0, steps=4)
    terms = [(3.0, 2e-3), (2.5, 1e-3), (2.0, 4e-3), (1.0, 1e-3)]
    _feed(a, terms)
    _feed(b, [(c * 10.0**2, t) for c, t in terms])
    assert float(b.weight) == pytest.approx(100.0 * float(a.weight), rel=1e-12)


def test_no_temporal_signal_keeps_the_weight_at_zero():
    balance = TemporalBalance(1.0, steps=3)
    _feed(balance, [(1.0, 0.0)])
    assert float(balance.weight) == 0.0
    _feed(balance, [(1.0, 2.0)])
    assert float(balance.weight) == pytest.approx(1.0)


def test_calibration_state_round_trips_through_a_state_dict():
    balance = TemporalBalance(2.0, steps=2)
    _feed(balance, [(1.0, 0.5), (3.0, 1.5)])
    restored = TemporalBalance(2.0, steps=2)
    restored.load_state_dict(balance.state_dict())
    assert restored.frozen and float(restored.weight) == pytest.approx(2.0 * 4.0 / 2.0)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_invalid_balance_is_refused(value):
    with pytest.raises(ValueError, match="balance"):
        TemporalBalance(value)


def test_invalid_steps_are_refused():
    with pytest.raises(ValueError, match="steps"):
        TemporalBalance(1.0, steps=0)
