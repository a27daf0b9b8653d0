"""Calibrated loss weights: weights given as ratios to the content term, measured over the first training steps, then
frozen, so that they mean the same whatever the loss network's feature scale.

Why: the published weights (content 1e5, style 1e10) are tuned for one loss network. If its features are ``s`` times
larger, the content term grows by ``s**2`` and the Gram style term by ``s**4``, so the same weights paint ``s**2``
times more style (pure texture with one loss net, almost none with another), and an absolute temporal weight, whose
term compares output pixels and does not see the loss net at all, loses ``s**2`` of its share. A weight calibrated
against the content term scales with it: every weighted term then scales by ``s**2``, which Adam does not see, so
training is unchanged.

* :class:`PerceptualBalance` (``style_balance = b``, ``tv_balance = t``) measures references on the content images
  themselves (the inputs only, so the transformer net's initialisation does not enter): ``C0``, their feature energy
  at the content layers, ``sum_layers mean(F(x)**2)`` (the content term of an output with zero features); ``S0``,
  their own style term against the style Grams (how far an unpainted photo is from the style); ``T0``, their total
  variation. Then ``w_style = b * w_content * C0 / S0`` and ``w_tv = t * w_content * C0 / T0``: on a photo the
  weighted style term is ``b`` times the weighted content energy, the weighted TV term ``t`` times it.
* :class:`TemporalBalance` (``balance = b``) sums the weighted content term ``C`` and the raw temporal term ``T`` of
  each step and sets ``w = b * sum(C) / sum(T)``: the weighted temporal term starts at ``b`` times the weighted
  content term.

Both count their steps in :class:`Calibration` and keep their state in buffers, so it is saved in checkpoints: a
resumed run keeps its weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

REFERENCE_KEYS = ("ref_content", "ref_style", "ref_tv")


class Calibration(nn.Module):
    """Counts the observed training steps in a buffer (``seen``, saved in checkpoints) and knows when they are over.

    Args:
        steps: Training steps observed before the weights freeze; >= 1.
        what: The calibration's name for error messages (``"temporal"``, ``"perceptual"``).
    """

    def __init__(self, steps: int, what: str) -> None:
        super().__init__()
        if int(steps) < 1:
            raise ValueError(f"{what} calibration steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        # A host-side copy of ``seen``: reading the buffer (on the GPU) every step would wait for the device each
        # time. ``None`` means unknown (fresh or just loaded); it is read from the buffer once, then counted here.
        self._host_seen: int | None = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # A loaded ``seen`` makes the host copy stale; a method, not a hook, so the module stays picklable.
        super()._load_from_state_dict(*args, **kwargs)
        self._host_seen = None

    @property
    def frozen(self) -> bool:
        """Whether calibration is over (the weights no longer change); reads the device at most once per load."""
        if self._host_seen is None:
            self._host_seen = int(self.seen)
        return self._host_seen >= self.steps

    def _count_step(self, values: Tensor, device: torch.device) -> Tensor:
        """One step's ``values`` (any shape) as float64 on ``device``, summed over DDP ranks so that every rank
        calibrates to the same weights; counts the step."""
        values = values.detach().double().to(device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
        if self._host_seen is None:
            self._host_seen = int(self.seen)
        self.seen += 1
        self._host_seen += 1
        return values


def _check_balance(value: float, what: str, *, zero_ok: bool = False) -> float:
    """``value`` as a float after checking it is finite and > 0 (>= 0 with ``zero_ok``)."""
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        raise ValueError(f"{what} must be a finite number {'>=' if zero_ok else '>'} 0, got {value}")
    return float(value)


class PerceptualBalance(Calibration):
    """Calibrates the style and TV weights from the content images' own terms (see the module docstring).

    Args:
        style_balance: Weighted style term / weighted content energy on a photo; > 0.
        tv_balance: Weighted TV term / weighted content energy on a photo; >= 0.
        steps: Training batches averaged before the references are frozen; >= 1.
    """

    def __init__(self, style_balance: float, tv_balance: float = 0.0, steps: int = 10) -> None:
        style_balance = _check_balance(style_balance, "style balance")
        tv_balance = _check_balance(tv_balance, "TV balance", zero_ok=True)
        super().__init__(steps, "perceptual")
        self.style_balance, self.tv_balance = style_balance, tv_balance
        # float64 sums of ref_content, ref_style, ref_tv: they differ by many orders of magnitude.
        self.register_buffer("sums", torch.zeros(3, dtype=torch.float64))

    @torch.no_grad()
    def observe(self, terms: dict[str, Tensor]) -> None:
        """Record one training batch's reference terms (``ref_content``, ``ref_style``, ``ref_tv``); no-op once
        frozen. Under DDP the sums are over all ranks, so every rank trains with the same weights."""
        if self.frozen:
            return
        self.sums += self._count_step(torch.stack([terms[k] for k in REFERENCE_KEYS]), self.sums.device)

    def weights(self, content_weight: float) -> dict[str, Tensor]:
        """``{"style": w_style, "tv": w_tv}`` (float32 scalars) for this ``content_weight``; zeros before the first
        :meth:`observe` (a step without references trains on content alone)."""
        content, style, tv = self.sums.unbind()
        unit = content_weight * content
        w_style = torch.where(style > 0, self.style_balance * unit / style.clamp_min(1e-300), torch.zeros_like(unit))
        w_tv = torch.where(tv > 0, self.tv_balance * unit / tv.clamp_min(1e-300), torch.zeros_like(unit))
        return {"style": w_style.float(), "tv": w_tv.float()}

    def extra_repr(self) -> str:
        return f"style_balance={self.style_balance}, tv_balance={self.tv_balance}, steps={self.steps}"


class TemporalBalance(Calibration):
    """Calibrates the temporal weight from the measured loss terms (see the module docstring).

    Args:
        balance: Target ratio of the weighted temporal term to the weighted content term at the start of training;
            > 0.
        steps: Training steps over which the terms are summed before the weight is frozen; >= 1.

    Attributes:
        weight: The current absolute temporal weight (float64 scalar buffer); 0 until a temporal term is seen.
    """

    def __init__(self, balance: float, steps: int = 100) -> None:
        balance = _check_balance(balance, "temporal balance")
        super().__init__(steps, "temporal")
        self.balance = balance
        # float64 sums: the terms may differ from each other by many orders of magnitude.
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))
        self.register_buffer("content_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("temporal_sum", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, weighted_content: Tensor, temporal: Tensor) -> None:
        """Record one training step's terms and update the weight (no-op once frozen).

        Args:
            weighted_content: Scalar, the content term times its weight.
            temporal: Scalar, the raw (unweighted) temporal term.
        """
        if self.frozen:
            return
        terms = self._count_step(torch.stack([weighted_content, temporal]), self.weight.device)
        self.content_sum += terms[0]
        self.temporal_sum += terms[1]
        positive = self.temporal_sum > 0
        ratio = self.content_sum / torch.where(positive, self.temporal_sum, torch.ones_like(self.temporal_sum))
        self.weight.copy_(torch.where(positive, self.balance * ratio, torch.zeros_like(ratio)))

    def extra_repr(self) -> str:
        return f"balance={self.balance}, steps={self.steps}"
