"""``stylize-video``: stylize a video, image, frame folder or glob with an exported artifact.

Example::

    stylize-video clip.mp4 -m starry.safetensors -o clip_starry.mp4
    stylize-video frames/ -m starry.safetensors -o out.gif --gif-fps 12 --gif-width 480

This module wires arguments to :class:`inference.stylizer.Stylizer` and :func:`inference.convert.stylize_file`; it
imports only the runtime stack (torch, numpy, PyAV, Pillow, safetensors).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from inference.errors import UserError, exit_on_user_error


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the options)."""
    p = argparse.ArgumentParser(
        prog="stylize-video",
        description="Stylize a video, image, frame folder or glob with a style artifact. The output kind follows "
        "OUTPUT's extension: a video container (.mp4 .mkv .mov .webm .avi), .gif, an image (.png .jpg ...), or a "
        "folder of PNG frames (no extension). Frame count, timing, rotation and audio (copied) are preserved.",
    )
    p.add_argument("input", help="video file, image, folder of frames, or a quoted glob such as 'frames/*.png'")
    p.add_argument("-m", "--model", required=True, help="style artifact (.safetensors) exported by styletrain")
    p.add_argument("-o", "--output", required=True, help="output file or folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    g = p.add_argument_group("what to stylize")
    g.add_argument("--start", type=float, default=None, metavar="SEC", help="skip this many seconds of input")
    g.add_argument("--duration", type=float, default=None, metavar="SEC", help="stylize only this many seconds")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--max-side", type=int, default=None, metavar="PX", help="shrink so the long side is <= PX")
    size.add_argument("--size", type=_size, default=None, metavar="WxH", help="resize to exactly WxH (display)")
    g.add_argument("--fps", type=float, default=None, help="frame rate for image/folder inputs (default 25)")
    g.add_argument("--strength", type=float, default=1.0, help="0..1: blend of stylized and original (default 1)")
    g.add_argument("--preserve-color", action="store_true", help="keep the input's colours, transfer luminance only")

    g = p.add_argument_group("output encoding")
    g.add_argument("--codec", default=None, help="video encoder (default libx264; libvpx-vp9 for .webm)")
    g.add_argument("--crf", type=int, default=18, help="encoder quality, lower is better (default 18)")
    g.add_argument("--preset", default="medium", help="x264/x265 speed preset (default medium)")
    g.add_argument(
        "--pix-fmt", default="yuv420p", help="pixel format (default yuv420p, plays everywhere; odd sizes lose their "
        "last row/column; yuv444p keeps every pixel)",
    )  # fmt: skip
    g.add_argument("--gif-fps", type=float, default=None, help="GIF frame rate (default: the input's timing)")
    g.add_argument("--gif-width", type=int, default=None, help="GIF width in pixels (default: frame width)")
    g.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")

    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    g.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
        help="auto: fp16 on CUDA, fp32 otherwise",
    )  # fmt: skip
    g.add_argument(
        "--batch-size", type=int, default=None,
        help="frames per batch (default: 8 on CUDA, 1 on the CPU); halved on CUDA out-of-memory",
    )  # fmt: skip
    g.add_argument(
        "--channels-last", action="store_true",
        help="NHWC memory layout (off by default: measured slower in eager mode on an H100 and no faster on CPUs)",
    )  # fmt: skip
    g.add_argument("--compile", action="store_true", help="torch.compile the network (slow start, faster after)")
    g.add_argument(
        "--backend", default="auto", choices=["auto", "torch", "onnxruntime"],
        help="auto: ONNX Runtime on the CPU in fp32 when onnxruntime is installed (faster there), else torch",
    )  # fmt: skip
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and callers may replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("inference")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


@exit_on_user_error
def main(args: Sequence[str] | None = None) -> int:
    """Run ``stylize-video``; returns 0 on success, exits with status 2 and ``error: ...`` on bad input."""
    opts = build_parser().parse_args(args)
    _setup_logging(opts.quiet)
    if opts.gif_fps is not None and opts.gif_fps <= 0:
        raise UserError(f"--gif-fps must be > 0, got {opts.gif_fps}")
    if opts.fps is not None and opts.fps <= 0:
        raise UserError(f"--fps must be > 0, got {opts.fps}")
    from inference.io.media import probe_kind
    from inference.io.writers import output_kind
    from inference.stylizer import Stylizer

    # Cheap checks first, so that a typo fails before the model is loaded.
    probe_kind(opts.input)
    output_kind(opts.output)
    stylizer = Stylizer.from_artifact(
        opts.model,
        device=opts.device,
        precision=opts.precision,
        batch_size=opts.batch_size,
        channels_last=opts.channels_last,
        compile=opts.compile,
        strength=opts.strength,
        preserve_color=opts.preserve_color,
        backend=opts.backend,
    )
    stylizer.video(
        opts.input,
        opts.output,
        overwrite=opts.overwrite,
        start=opts.start,
        duration=opts.duration,
        size=opts.size,
        max_side=opts.max_side,
        fps=opts.fps,
        codec=opts.codec,
        crf=opts.crf,
        preset=opts.preset,
        pix_fmt=opts.pix_fmt,
        gif_fps=opts.gif_fps,
        gif_width=opts.gif_width,
        audio=not opts.no_audio,
        progress=not opts.quiet,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
