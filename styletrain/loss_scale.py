"""Relative perceptual weights: style and TV weights as ratios to the content term, whatever the loss net's scale.

The published weights (content 1e5, style 1e10) are tuned for one loss network's feature scale. If a loss net's
features are ``s`` times larger, the content term grows by ``s**2`` and the Gram style term by ``s**4``, so the same
weights paint ``s**2`` times more style: with HED-VGG16 the defaults paint pure texture, with random features almost
none. Relative weights fix the balance on a reference that needs no trained model, the content images themselves:

* ``C0``: the content images' feature energy at the content layers, ``sum_layers mean(F(x)**2)`` (what the content
  term is when the output's features are 0: the natural unit of the content term);
* ``S0``: the content images' own style term against the style Grams (how far an unpainted photo is from the style:
  the natural unit of the style term);
* ``T0``: the content images' total variation (the natural unit of the TV term; no loss net in it).

With ``style_balance = b`` and ``tv_balance = t`` the weights become ``w_style = b * w_content * C0 / S0`` and
``w_tv = t * w_content * C0 / T0``, so on a photo the weighted style term is ``b`` times the weighted content
energy and the weighted TV term ``t`` times it. Scaling the features by ``s`` multiplies ``C0`` by ``s**2`` and ``S0``
by ``s**4``: every weighted term then scales by ``s**2``, which Adam does not see, so training is unchanged.

The references are averaged over the first ``steps`` training batches (inputs only, so the transformer net's
initialisation does not enter), then frozen; the state is in buffers, hence in checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from styletrain.calibration import Calibration

REFERENCE_KEYS = ("ref_content", "ref_style", "ref_tv")


class PerceptualBalance(Calibration):
    """Calibrates the style and TV weights from the content images' own terms (see the module docstring).

    Args:
        style_balance: Weighted style term / weighted content energy on a photo; > 0.
        tv_balance: Weighted TV term / weighted content energy on a photo; >= 0.
        steps: Training batches averaged before the references are frozen; >= 1.
    """

    def __init__(self, style_balance: float, tv_balance: float = 0.0, steps: int = 10) -> None:
        if not (math.isfinite(style_balance) and style_balance > 0):
            raise ValueError(f"style balance must be a finite number > 0, got {style_balance}")
        if not (math.isfinite(tv_balance) and tv_balance >= 0):
            raise ValueError(f"TV balance must be a finite number >= 0, got {tv_balance}")
        super().__init__(steps, "perceptual")
        self.style_balance, self.tv_balance = float(style_balance), float(tv_balance)
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
