"""How a :class:`~inference.engine.stylizer.Stylizer` runs: every runtime option's default, range and help, once.

:class:`RuntimeOptions` is the schema. The Stylizer takes one; ``stylize-video`` builds its runtime flags from the
fields' specs (:mod:`inference.app.cli`) and the parsed flags back into one; the server and the batch executors pass
one along. A bad value fails where the options are made, with an :class:`~inference.core.errors.OptionError` naming
the field (the command line names its flag instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from inference.core.errors import OptionError
from inference.core.option_fields import check_fields, option, with_fields
from inference.engine.backends import BACKENDS, COMPILE_MODES
from inference.engine.precision import DTYPES
from inference.engine.strokes import DETAIL_MODES, STROKE_SCALE_RANGE
from inference.io.limits import MAX_BATCH_SIZE
from inference.model.styles import StyleSpec

#: The options a running Stylizer can change between frames (:meth:`~inference.engine.stylizer.Stylizer.update`);
#: the others decide how the network is built and loaded.
LIVE_FIELDS = ("strength", "preserve_color", "consistency", "stroke_scale", "stroke_detail", "style")


@dataclass(frozen=True)
class RuntimeOptions:
    """Options of a :class:`~inference.engine.stylizer.Stylizer`; checked when made (frozen: change with
    :func:`dataclasses.replace`, which checks again).

    Attributes:
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device (see
            :func:`~inference.core.devices.resolve_device`).
        precision: ``"auto"``: on CUDA the lowest precision that passes a parity check against fp32 at load time (see
            :mod:`inference.engine.precision`), fp32 elsewhere; or ``"fp32"``, ``"fp16"``, ``"bf16"``.
        batch_size: Frames per forward pass, in [1, :data:`~inference.io.limits.MAX_BATCH_SIZE`]; lowered on CUDA
            out-of-memory (:mod:`inference.engine.batching`). ``None``: 8 on CUDA, 1 elsewhere.
        channels_last: Run convolutions in NHWC layout.
        compile: ``torch.compile`` the network: ``True`` for the default mode, or a mode name of
            :data:`~inference.engine.backends.COMPILE_MODES`.
        backend: ``"torch"``, ``"onnxruntime"`` (CPU, fp32) or ``"auto"`` (see
            :func:`~inference.engine.backends.build_forward`).
        strength: In [0, 1]: 1 the full style, 0 the original frame; values in between blend.
        preserve_color: Keep the input's colours, take only the luminance from the style.
        consistency: In [0, 1]: for frame sequences, pull each output towards the previous output moved by the
            input's optical flow where the pixel stayed visible (:mod:`inference.engine.consistency`). 0 (the API's
            default) is off and bit-identical to per-frame output; ``stylize-video`` has a default of its own.
        flow_weights: A torchvision RAFT state dict file for the consistency stage's optical flow on CUDA (see
            :func:`inference.engine.device_flow.choose_flow`). ``None``: torchvision's ``raft_small`` weights if they
            are in the torch hub cache, else OpenCV DIS on the CPU (one warning on a GPU says why).
        stroke_scale: In :data:`~inference.engine.strokes.STROKE_SCALE_RANGE`: run the network on the frame resized
            by ``1 / stroke_scale`` so strokes grow that many times (:mod:`inference.engine.strokes`); 1 is the plain
            path.
        stroke_detail: ``"none"`` or ``"guided"``: restore the frame's luminance detail lost when enlarging.
        style: Which style of a multi-style network: ``None`` (the first), a name, a ``"a:0.3,b:0.7"`` blend or a
            name -> weight mapping (checked against the network's names when the Stylizer is made).
    """

    device: str | torch.device = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    precision: str = option(
        "auto",
        "auto: on CUDA fp16, else bf16, else fp32, whichever first matches fp32 in a parity check when the model "
        "loads; fp32 elsewhere",
        choices=("auto", *DTYPES),
    )
    batch_size: int | None = option(
        None,
        "frames per batch, default 8 on CUDA and 1 on the CPU; halved on CUDA out-of-memory",
        kind=int,
        low=1,
        high=MAX_BATCH_SIZE,
    )
    channels_last: bool = option(
        False, "NHWC memory layout (off by default; benchmark it on your GPU before relying on it)"
    )
    compile: bool | str = option(False, "torch.compile the network (slow start, faster after)")
    backend: str = option(
        "auto",
        "auto: ONNX Runtime on the CPU in fp32 when onnxruntime is installed (faster there), else torch",
        choices=BACKENDS,
    )
    strength: float = option(1.0, "blend of stylized and original: 1 the full style, 0 the input", kind=float, low=0,
                             high=1)  # fmt: skip
    preserve_color: bool = option(False, "keep the input's colours, transfer luminance only")
    consistency: float = option(
        0.0,
        "pull each frame towards the previous output moved by the input's optical flow, where visible (removes "
        "flicker of any model; 0 = off, per-frame output)",
        kind=float,
        low=0,
        high=1,
        metavar="S",
    )
    flow_weights: str | None = option(
        None,
        "RAFT weights (a torchvision raft_small or raft_large state dict) for the consistency stage's optical flow on "
        "CUDA (default: raft_small from the torch hub cache if there, else OpenCV DIS on the CPU)",
        metavar="PATH",
    )
    stroke_scale: float = option(
        1.0,
        "strokes S times larger (the network runs on the frame resized by 1/S; same output size)",
        kind=float,
        low=STROKE_SCALE_RANGE[0],
        high=STROKE_SCALE_RANGE[1],
        metavar="S",
    )
    stroke_detail: str = option(
        "none",
        "with a stroke scale > 1, guided restores the frame's luminance detail lost when enlarging",
        choices=DETAIL_MODES,
    )
    style: StyleSpec | None = option(
        None,
        "style of a multi-style model: a name, or a blend such as a:0.3,b:0.7 (default: the first style)",
        metavar="NAME[:W,...]",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise OptionError(
                "compile", f"must be true, false or a compile mode ({', '.join(COMPILE_MODES)}), got {self.compile!r}"
            )

    @classmethod
    def build(cls, options: RuntimeOptions | None = None, **fields: Any) -> RuntimeOptions:
        """``options`` (default: all defaults) with ``fields`` replaced, checked again.

        Raises:
            TypeError: ``options`` that are no :class:`RuntimeOptions`, or a field name it does not have.
            OptionError: A bad value.
        """
        return with_fields(cls, options, fields)
