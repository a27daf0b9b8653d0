"""``styletrain evaluate``: temporal stability (warping error) and perceptual losses of artifacts on a real clip.

For each ``--model`` it prints one JSON object on its own line::

    {"model": ..., "style": ..., "temporal": ..., "clip": ..., "frames": 48, "size": [640, 360],
     "flow_method": "dis", "cut_pairs_left_out": 0, "warping_error": 0.0123, "input_warping_error": 0.0031,
     "ratio_to_input": 3.97,
     "contrast": 0.21, "colourfulness": 0.18, "content_kept": 0.55, "input_contrast": 0.19,
     "content_loss": ..., "style_loss": ..., "loss_net": "vgg16 imagenet", "fps": 3.2}

With several models, each line also has ``<metric>_ratio`` against the first model (warping error, contrast,
colourfulness, style and content loss), and a one-line warning goes to stderr for a model whose output contrast
falls under 0.7x the per-frame model's (the first model trained without the temporal loss) or under 0.5x the input's
(:mod:`styletrain.output_stats`): stability bought by removing the style. With ``--consistency LEVELS`` each line
also has ``"consistency"``: the consistency stage at each level against the model's per-frame output
(:mod:`styletrain.consistency_eval`). With ``--equivariance`` each line also has ``"equivariance"``: per transform
(``shift_1`` .. ``shift_<stride>``, ``shift_0.25``, ``shift_0.5``, ``zoom_1.05``, ``rotate_2``) the shift error in
grey levels and relative to the output's spread (:mod:`styletrain.equivariance`). ``stroke_detail`` and ``grain``
are detail at a painting's stroke scale and the pixel-level grain (:mod:`styletrain.output_stats`).
``content_kept`` is the correlation of
the output's edges with the input's (:func:`styletrain.output_stats.content_kept`): near 0 when the style has
painted the content away.

The warping error (Lai et al. 2018, :mod:`styletrain.temporal.loss`) uses flow estimated on the INPUT clip, once, shared
by all models, and leaves out the pairs across scene cuts (detected from the input's histograms; the line says how many
in ``cut_pairs_left_out``); ``input_warping_error`` is the input clip's own error, the floor a perfectly stable output
reaches.
Content and style losses are unweighted (sum over layers of MSE, Grams normalised by C*H*W), averaged over frames;
``style_loss_by_layer`` splits the style loss into its layers' terms, which differ by orders of magnitude (with the
HED-VGG16 loss net ``relu1_2``, colour and the finest texture, is nearly all of it);
they need a real loss network (ImageNet VGG or a local weights file) and, for the style loss, the style image
(``--style``, or the training config's style path when that file still exists with the recorded sha256).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inference.app.console import OneLineParser
from inference.core.colour import to_float
from inference.core.errors import OptionError, UserError, exit_on_user_error
from styletrain.consistency_eval import parse_levels
from styletrain.losses import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from styletrain.module_config import upgrade_hparams
from styletrain.output_stats import clip_stats, fading_warnings

if TYPE_CHECKING:
    from inference.model.artifact import Artifact

log = logging.getLogger(__name__)


def training_hparams(metadata) -> dict[str, Any]:
    """The ``model`` section of an artifact's training config (empty when absent), in the grouped layout whichever
    layout the artifact was trained with (:func:`~styletrain.module_config.upgrade_hparams`)."""
    config = metadata.config or {}
    model = config.get("model", config)
    init = model.get("init_args") if isinstance(model, dict) else None
    return upgrade_hparams(init if isinstance(init, dict) else (model if isinstance(model, dict) else {}))


def _to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return to_float(torch.from_numpy(np.stack(frames)).to(device)).permute(0, 3, 1, 2)


def _with_flags(exc: UserError) -> str:
    """``exc``'s message with library field names written as this command's flags (``vgg_weights`` ->
    ``--vgg-weights``)."""
    return exc.with_flags(lambda field: "--" + field.replace("_", "-")) if isinstance(exc, OptionError) else str(exc)


def _progress(message: str) -> None:
    """One line on stderr, so that long steps (flow, loss-net weights, stylizing) do not look like a hang."""
    print(f"evaluate: {message}", file=sys.stderr, flush=True)


def stylize_clip(
    net: torch.nn.Module, frames: list[np.ndarray], device: torch.device, batch_size: int = 4
) -> tuple[list[np.ndarray], float]:
    """Stylize uint8 frames with the runtime's :class:`~inference.engine.stylizer.Stylizer` (what ``stylize-video``
    does).

    Returns:
        ``(outputs, fps)``: ``uint8 [H, W, 3]`` frames and frames per second, the first (warm-up) batch excluded so
        that lazy initialisation (cuDNN autotuning, allocator) does not count. A clip no longer than one batch has
        nothing left to time after the warm-up, so it is stylized a second time and that warm pass is timed.
    """
    from inference.engine.options import RuntimeOptions
    from inference.engine.stylizer import Stylizer

    stylizer = Stylizer(net, RuntimeOptions(device=device, batch_size=batch_size))
    outputs = list(stylizer.frames(frames[:batch_size]))
    timed = frames[batch_size:] or frames
    start = time.perf_counter()
    rest = list(stylizer.frames(timed))
    elapsed = time.perf_counter() - start
    if len(frames) > batch_size:
        outputs += rest
    return outputs, len(timed) / max(elapsed, 1e-9)


class _LossEvaluator:
    """Mean content / style loss of output frames (with :class:`PerceptualLoss`), or a note saying why not."""

    def __init__(self, arch: str, weights: str, content_layers, style_layers, device: torch.device) -> None:
        from styletrain.losses import PerceptualLoss

        self.note: str | None = None
        self.loss: PerceptualLoss | None = None
        if weights == "random":
            self.note = "content/style losses omitted: --vgg-weights random gives meaningless perceptual losses"
            return
        _progress(f"loading the {arch} loss network ({weights})")
        try:
            self.loss = PerceptualLoss(
                content_layers=content_layers, style_layers=style_layers, arch=arch, vgg_weights=weights
            ).to(device)  # fmt: skip
        except UserError as exc:
            self.note = f"content/style losses omitted: no loss-net weights ({_with_flags(exc)})"
            return
        self.label = f"{arch} {weights}"

    @torch.no_grad()
    def __call__(
        self, inputs: list[np.ndarray], outputs: list[np.ndarray], style: torch.Tensor | None, device, batch_size: int
    ) -> dict[str, Any]:
        """Raw content (and, given ``style`` ``[1, 3, H, W]``, style) loss averaged over frames."""
        if style is not None:
            self.loss.set_style(style)
        sums: dict[str, float] = {}
        for i in range(0, len(inputs), batch_size):
            out, inp = _to_tensor(outputs[i : i + batch_size], device), _to_tensor(inputs[i : i + batch_size], device)
            # The terms are means over the batch: weight them by its size for the mean over all frames.
            for name, value in self.loss(out, inp, with_style=style is not None, style_by_layer=True).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(out)
        result = {"content_loss": sums["content"] / len(inputs), "loss_net": self.label}
        if "style" in sums:
            result["style_loss"] = sums["style"] / len(inputs)
            # Which scale a style gap is at: the layers' terms differ by orders of magnitude.
            prefix = "style/"
            by_layer = {k[len(prefix) :]: v / len(inputs) for k, v in sums.items() if k.startswith(prefix)}
            result["style_loss_by_layer"] = by_layer
        return result


def _style_image(metadata, model_cfg: dict, style_path: str | None) -> tuple[Any, str | None]:
    """``(style tensor or None, note or None)``, checking the style file against the artifact's sha256."""
    from inference.core.hashing import sha256_of_file
    from styletrain.data.images import load_style_image

    candidate, given = style_path, style_path is not None
    if candidate is None:
        recorded = model_cfg.get("style")
        if isinstance(recorded, str) and Path(recorded).is_file():
            candidate = recorded
    if candidate is None:
        return None, "style loss omitted: the style image is not inside the artifact; pass --style PATH"
    digest = sha256_of_file(candidate)
    if metadata.style_sha256 and digest != metadata.style_sha256:
        if not given:
            return None, f"style loss omitted: {candidate} no longer matches the artifact's style; pass --style PATH"
        print(
            f"warning: {candidate} (sha256 {digest[:12]}) is not the style this model was trained on "
            f"({metadata.style_sha256[:12]}); style loss measured against the given file",
            file=sys.stderr,
        )
    # The training resolution of the style image (Gram statistics depend on it); None = full size.
    return load_style_image(candidate, model_cfg.get("style_size", 512)), None


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate_models` measures; the defaults are ``styletrain evaluate``'s (its flags read them).

    Attributes:
        max_frames: Frames read from the clip (None: all).
        max_side: Shrink frames to this longest side (None: full size).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        vgg_weights: ``"imagenet"``, a local VGG state_dict path, or ``"random"`` (losses then omitted).
        style: The style image for the style loss (checked against the artifact's sha256), or None.
        flow_method: The ruler: flow of the input clip that judges the warping error.
        batch_size: Frames per network call.
        consistency: Consistency levels in (0, 1] to compare with per-frame output, or None.
        equivariance: Also measure the shift error (:mod:`styletrain.equivariance`) on the clip's first frames.
    """

    max_frames: int | None = 48
    max_side: int | None = 640
    device: str = "auto"
    vgg_weights: str = "imagenet"
    style: str | None = None
    flow_method: str = "dis"
    batch_size: int = 4
    consistency: tuple[float, ...] | None = None
    equivariance: bool = False


# Frames of the clip on which the shift error is measured: every transform costs two network passes per frame.
EQUIVARIANCE_FRAMES = 2


def evaluate_models(models: list[str], clip: str, options: EvalOptions | None = None) -> list[dict[str, Any]]:
    """Evaluate each artifact in ``models`` on ``clip``; returns one result dict per model (see module docstring).

    With ``options.consistency`` levels, each result also has ``"consistency"``: per level, the consistency stage
    against the model's per-frame output (:mod:`styletrain.consistency_eval`), judged with ``options.flow_method`` as
    the ruler.
    """
    from inference.core.devices import resolve_device
    from inference.engine.flow import scene_cuts
    from inference.model.artifact import load_artifact
    from styletrain.data.video_frames import read_clip
    from styletrain.temporal.loss import clip_flows, warping_error

    opts = options or EvalOptions()
    dev, flow_method = resolve_device(opts.device), opts.flow_method
    # Every input is checked before the first progress line, so that a bad one gives a single error line.
    artifacts = [load_artifact(path, device=dev) for path in models]
    frames = read_clip(clip, max_frames=opts.max_frames, max_side=opts.max_side)
    if len(frames) < 2:
        raise UserError(f"{clip}: needs at least 2 frames to measure temporal stability, found {len(frames)}")
    _progress(f"estimating {flow_method} flow on {len(frames)} frames of {clip}")
    flows = clip_flows(frames, method=flow_method)
    # Flow across a scene cut is meaningless and one such pair can dominate the mean: those pairs are left out.
    cuts = scene_cuts(frames)
    facts = {"clip": str(clip), "frames": len(frames), "size": [frames[0].shape[1], frames[0].shape[0]]}
    facts |= {"flow_method": flow_method, "cut_pairs_left_out": sum(cuts)}
    measured = _Clip(frames, flows, warping_error(frames, *flows, cuts), facts, cuts)
    evaluators: dict[tuple, _LossEvaluator] = {}
    results = []
    for index, (path, artifact) in enumerate(zip(models, artifacts, strict=True), start=1):
        _progress(f"model {index}/{len(models)}: {path}")
        results.append(_evaluate_model(path, artifact, measured, dev=dev, options=opts, evaluators=evaluators))
        if opts.consistency:
            levels = list(opts.consistency)
            results[-1]["consistency"] = _consistency_levels(artifact.network, measured, levels, dev, opts.batch_size)
        if opts.equivariance:
            results[-1]["equivariance"] = _equivariance(artifact.network, frames[:EQUIVARIANCE_FRAMES], dev)
    _compare(results, clip_stats(frames))
    return results


_COMPARED = (
    "warping_error",
    "contrast",
    "colourfulness",
    "content_kept",
    "stroke_detail",
    "grain",
    "style_loss",
    "content_loss",
)


def _equivariance(network, frames: list[np.ndarray], dev: torch.device) -> dict[str, dict[str, float]]:
    """The shift error of ``network`` (integer shifts up to its stride, sub-pixel shifts, zoom, rotation)."""
    from styletrain.equivariance import equivariance_report

    _progress(f"shift error on {len(frames)} frames")
    return equivariance_report(network, _to_tensor(frames, dev), stride=getattr(network, "stride", 1))


def _compare(results: list[dict[str, Any]], source: dict[str, float]) -> None:
    """Add each model's ratios to the first model's (``<metric>_ratio``) and warn on one line about flat outputs.

    The per-frame reference for the flatness warning is the first model trained without the temporal loss.
    """
    first = results[0]
    for result in results:
        result["input_contrast"] = source["contrast"]
        for key in _COMPARED:
            if len(results) > 1 and result.get(key) is not None and first.get(key):
                result[f"{key}_ratio"] = result[key] / first[key]
    reference = next((r for r in results if not r["temporal"]), None)
    for result in results:
        stats = {"contrast": result["contrast"]}
        ref = None if reference is None or reference is result else {"contrast": reference["contrast"]}
        for warning in fading_warnings(result["model"], stats, ref, source):
            print(f"warning: {warning}", file=sys.stderr, flush=True)


def _consistency_levels(network, clip: _Clip, levels: list[float], dev, batch_size: int) -> list[dict[str, Any]]:
    """The consistency stage at each level against the same network's per-frame output on ``clip``."""
    from styletrain.consistency_eval import evaluate_levels, per_frame_reference

    _progress(f"consistency levels {', '.join(map(str, levels))}")
    reference = per_frame_reference(network, clip.frames, clip.flows, clip.cuts, device=dev, batch_size=batch_size)
    return evaluate_levels(
        network, clip.frames, clip.flows, clip.cuts, reference, levels=levels, device=dev, batch_size=batch_size
    )


@dataclass
class _Clip:
    """The evaluation clip, measured once for all models.

    Attributes:
        frames: ``uint8 [H, W, 3]`` input frames.
        flows: ``(forward, backward)`` flows between consecutive input frames, float32 ``[H, W, 2]`` each.
        floor: The input clip's own warping error.
        facts: ``clip``, ``frames``, ``size``, ``flow_method`` and ``cut_pairs_left_out`` for the result line.
        cuts: Per consecutive pair, whether it crosses a scene cut (left out of the warping error).
    """

    frames: list[np.ndarray]
    flows: tuple[list[np.ndarray], list[np.ndarray]]
    floor: float
    facts: dict[str, Any]
    cuts: list[bool]


def _evaluate_model(
    path: str,
    artifact: Artifact,
    clip: _Clip,
    *,
    dev: torch.device,
    options: EvalOptions,
    evaluators: dict[tuple, _LossEvaluator],
) -> dict[str, Any]:
    """One model's result: stylize the clip, its warping error, and its losses (evaluators cached by loss setup).

    Args:
        path: The artifact's path, as given.
        artifact: That artifact, loaded on ``dev``.
        clip: The measured clip.
        dev: The device it runs on.
        options: The loss-network weights, the style image and the batch size come from here.
        evaluators: Loss evaluators by ``(arch, content_layers, style_layers)``, shared across models.
    """
    from styletrain.temporal.loss import warping_error

    meta, cfg = artifact.metadata, training_hparams(artifact.metadata)
    frames, batch_size = clip.frames, options.batch_size
    outputs, fps = stylize_clip(artifact.network, frames, dev, batch_size)
    error, floor = warping_error(outputs, *clip.flows, clip.cuts), clip.floor
    result: dict[str, Any] = {"model": str(path), "style": meta.style_name, "network": meta.network}
    result |= {"temporal": meta.temporal, **clip.facts, "warping_error": error, "input_warping_error": floor}
    result["ratio_to_input"] = error / floor if floor > 0 else None
    result |= clip_stats(outputs, inputs=frames)  # + content_kept: edges of output vs input
    arch = cfg.get("vgg", "vgg16")
    loss = cfg.get("loss") or {}
    content_layers = loss.get("content_layers", list(DEFAULT_CONTENT_LAYERS))
    style_layers = loss.get("style_layers", list(DEFAULT_STYLE_LAYERS))
    key = (arch, tuple(content_layers), tuple(style_layers))
    if key not in evaluators:
        evaluators[key] = _LossEvaluator(arch, options.vgg_weights, content_layers, style_layers, dev)
    losses = evaluators[key]
    notes = [losses.note] if losses.note else []
    if losses.loss is not None:
        style_img, note = _style_image(meta, cfg, options.style)
        notes += [note] if note else []
        result.update(losses(frames, outputs, style_img, dev, batch_size))
    if notes:
        result["note"] = "; ".join(notes)
    result["fps"] = fps
    result["device"] = str(dev)
    return result


def build_parser() -> argparse.ArgumentParser:
    default = EvalOptions()
    parser = OneLineParser(
        prog="styletrain evaluate",
        description="Measure the warping error (Lai et al. 2018) and perceptual losses of artifacts on a clip; "
        "prints one JSON object per model.",
    )
    parser.add_argument("--model", action="append", required=True, help="artifact (.safetensors); repeatable")
    parser.add_argument("--video", required=True, help="clip: a video file or a folder of frames")
    parser.add_argument(
        "--max-frames", type=int, default=default.max_frames,
        help=f"frames read from the clip (default {default.max_frames})",
    )  # fmt: skip
    parser.add_argument(
        "--max-side", type=int, default=default.max_side,
        help=f"shrink frames to this longest side (default {default.max_side})",
    )  # fmt: skip
    parser.add_argument("--device", default=default.device, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--vgg-weights", default=default.vgg_weights, help="imagenet, a local VGG state_dict path, or random"
    )
    parser.add_argument("--style", default=None, help="the style image (for the style loss; checked against sha256)")
    parser.add_argument(
        "--flow-method", "--ruler", dest="flow_method", default=default.flow_method,
        choices=["dis", "farneback", "raft", "raft_small"],
        help="flow of the input clip that judges the warping error (the ruler; default dis: DIS medium at full size)",
    )  # fmt: skip
    parser.add_argument(
        "--consistency", default=None, metavar="LEVELS",
        help="also compare per-frame output with the consistency stage at these levels, e.g. 0.5,0.8,1",
    )  # fmt: skip
    parser.add_argument(
        "--equivariance", action="store_true",
        help="also measure the shift error: stylize(shift(x)) against shift(stylize(x)), for shifts of 1 px up to "
        "the network's stride, 0.25 and 0.5 px, a 5%% zoom and a 2 degree rotation",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Entry point of ``styletrain evaluate``."""
    args = build_parser().parse_args(argv)
    checks = {"--max-frames": args.max_frames, "--max-side": args.max_side, "--batch-size": args.batch_size}
    for name, value in checks.items():
        if value is not None and value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    try:
        levels = tuple(parse_levels(args.consistency)) if args.consistency is not None else None
        options = EvalOptions(
            max_frames=args.max_frames,
            max_side=args.max_side,
            device=args.device,
            vgg_weights=args.vgg_weights,
            style=args.style,
            flow_method=args.flow_method,
            batch_size=args.batch_size,
            consistency=levels,
            equivariance=args.equivariance,
        )
        results = evaluate_models(args.model, args.video, options)
    except OptionError as exc:
        raise UserError(_with_flags(exc)) from None
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
