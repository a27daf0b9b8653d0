"""``stylize-video``: stylize a video, image, frame folder or glob with an exported artifact; or many files at once.

Example::

    stylize-video clip.mp4 -m starry.safetensors -o clip_starry.mp4
    stylize-video frames/ -m starry.safetensors -o out.gif --gif-fps 12 --gif-width 480
    stylize-video a.mp4 b.mov clips/ -m starry.safetensors -o styled/ --skip-existing   # every visible GPU

This module wires arguments to :class:`inference.engine.stylizer.Stylizer` and
:func:`inference.app.convert.stylize_file` (one input) or :mod:`inference.app.batch` (several); it imports only the
runtime stack (torch, numpy, PyAV, Pillow, safetensors).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from inference.app.argtypes import ranged, size
from inference.app.console import setup_logging
from inference.core.errors import OptionError, UserError, exit_on_user_error, terminate_on_sigterm
from inference.io.encode_options import (
    CRF_BOUNDS,
    DEFAULT_CRF,
    DEFAULT_PIX_FMT,
    DEFAULT_PRESET,
    crf_help,
    preset_help,
)
from inference.io.limits import MAX_BATCH_SIZE, MAX_FPS, MAX_SECONDS, MIN_FPS, MIN_GIF_FPS

# stylize-video's --consistency default (the Python API's is 0, off), chosen from bench/consistency.py's measurements:
# steady with the contrast kept, and less ghosting than 1 (README, "Consistency at inference, for any artifact").
DEFAULT_CONSISTENCY = 0.8

log = logging.getLogger("inference")


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as one ``error: ...`` line (exit status 2), like every other input error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the options)."""
    p = _Parser(
        prog="stylize-video",
        description="Stylize a video, image, frame folder or glob with a style artifact. The output kind follows "
        "OUTPUT's extension: a video container (.mp4 .mkv .mov .webm .avi), .gif, an image (.png .jpg ...), or a "
        "folder of PNG frames (no extension). Frame count, timing, rotation and audio (copied) are preserved. "
        "Several inputs, or a folder of videos, make a batch: OUTPUT is then a folder, each output is named after "
        "its input, and the files are spread over --devices, one worker process per device.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="video file, image, folder of frames, or a quoted glob such as 'frames/*.png'; several inputs or a "
        "folder of videos (and no images) make a batch",
    )  # fmt: skip
    p.add_argument("-m", "--model", required=True, help="style artifact (.safetensors) exported by styletrain")
    p.add_argument("-o", "--output", required=True, help="output file or folder (a folder for a batch)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--skip-existing", action="store_true", help="leave inputs whose output already exists alone")
    _what_options(p.add_argument_group("what to stylize"))
    _encoding_options(p.add_argument_group("output encoding"))
    _runtime_options(p.add_argument_group("runtime"))
    _cluster_options(p.add_argument_group("batch on a cluster"))
    return p


def _what_options(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--start", type=ranged(float, 0, MAX_SECONDS), default=None, metavar="SEC", help="skip this many seconds"
    )
    g.add_argument(
        "--duration", type=ranged(float, 0, MAX_SECONDS, low_open=True), default=None, metavar="SEC",
        help="stylize only this many seconds",
    )  # fmt: skip
    resize = g.add_mutually_exclusive_group()
    resize.add_argument(
        "--max-side", type=ranged(int, 2), default=None, metavar="PX", help="shrink so the long side is <= PX (>= 2)"
    )
    resize.add_argument("--size", type=size, default=None, metavar="WxH", help="resize to exactly WxH (display)")
    g.add_argument(
        "--fps", type=ranged(float, MIN_FPS, MAX_FPS), default=None,
        help="frame rate for image/folder inputs (default 25)",
    )  # fmt: skip
    g.add_argument(
        "--strength", type=ranged(float, 0, 1), default=1.0, help="0..1: blend of stylized and original (default 1)"
    )
    g.add_argument("--preserve-color", action="store_true", help="keep the input's colours, transfer luminance only")
    g.add_argument(
        "--consistency", type=ranged(float, 0, 1), default=DEFAULT_CONSISTENCY, metavar="S",
        help="0..1: pull each frame towards the previous output moved by the input's optical flow, where visible "
        f"(removes flicker of any model; 0 = off, per-frame output; default {DEFAULT_CONSISTENCY})",
    )  # fmt: skip
    g.add_argument(
        "--stroke-scale", type=ranged(float, 0.25, 4), default=1.0, metavar="S",
        help="0.25..4: strokes S times larger (the network runs on the frame resized by 1/S; same output size)",
    )  # fmt: skip
    g.add_argument(
        "--stroke-detail", default="none", choices=["none", "guided"],
        help="with --stroke-scale > 1, guided restores the frame's luminance detail lost when enlarging (default none)",
    )  # fmt: skip
    g.add_argument(
        "--style", default=None, metavar="NAME[:W,...]",
        help="style of a multi-style model: a name, or a blend such as a:0.3,b:0.7 (default: the first style)",
    )  # fmt: skip


def _encoding_options(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--codec", default=None,
        help="video encoder: a family (h264, hevc, av1, vp9: NVENC where the GPU has it, else libx264/libx265/"
        "libsvtav1/libvpx-vp9) or an FFmpeg encoder name (default h264; vp9 for .webm)",
    )  # fmt: skip
    g.add_argument("--crf", type=ranged(int, *CRF_BOUNDS), default=DEFAULT_CRF, help=crf_help())
    g.add_argument("--preset", default=DEFAULT_PRESET, help=preset_help())
    g.add_argument(
        "--pix-fmt", default=DEFAULT_PIX_FMT, help=f"pixel format (default {DEFAULT_PIX_FMT}, plays everywhere; odd "
        "sizes lose their last row/column; yuv444p keeps every pixel)",
    )  # fmt: skip
    g.add_argument(
        "--gif-fps", type=ranged(float, MIN_GIF_FPS), default=None,
        help=f"GIF frame rate, {MIN_GIF_FPS:g} to 50 (default: the input's timing, capped at 50)",
    )  # fmt: skip
    g.add_argument(
        "--gif-width", type=ranged(int, 1, 65535), default=None, help="GIF width in pixels (default: frame width)"
    )
    g.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    g.add_argument(
        "--ext", default=None,
        help="batch only: output extension such as mp4 or gif (default: the input's own, else mp4)",
    )  # fmt: skip


def _runtime_options(g: argparse._ActionsContainer) -> None:
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    g.add_argument(
        "--devices", default=None, metavar="LIST",
        help="batch: devices to spread the files over, e.g. cuda:0,cuda:1, or cuda for every visible GPU, or cpu "
        "(default: --device if given, else every visible GPU, else the CPU)",
    )  # fmt: skip
    g.add_argument(
        "--workers", type=ranged(int, 1), default=1, metavar="N",
        help="batch: worker processes per device (default 1); e.g. --devices cpu --workers 2",
    )  # fmt: skip
    g.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
        help="auto: on CUDA fp16, else bf16, else fp32, whichever first matches fp32 in a parity check when the "
        "model loads; fp32 elsewhere",
    )  # fmt: skip
    g.add_argument(
        "--batch-size", type=ranged(int, 1, MAX_BATCH_SIZE), default=None,
        help="frames per batch (default: 8 on CUDA, 1 on the CPU); halved on CUDA out-of-memory",
    )  # fmt: skip
    g.add_argument(
        "--channels-last", action="store_true",
        help="NHWC memory layout (off by default; benchmark it on your GPU before relying on it)",
    )  # fmt: skip
    g.add_argument("--compile", action="store_true", help="torch.compile the network (slow start, faster after)")
    g.add_argument(
        "--backend", default="auto", choices=["auto", "torch", "onnxruntime"],
        help="auto: ONNX Runtime on the CPU in fp32 when onnxruntime is installed (faster there), else torch",
    )  # fmt: skip
    g.add_argument(
        "--realtime", action="store_true",
        help="read the input at its own frame rate and drop frames when stylizing falls behind (reported); camera "
        "and stream inputs (/dev/video0, rtsp://, udp://, http://...) always run this way",
    )  # fmt: skip
    g.add_argument("--stats", action="store_true", help="print the busy time of every pipeline stage per file")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def _cluster_options(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--cluster", default="local", choices=["local", "ray"],
        help="batch: run the files on this machine's devices (local, default) or on a Ray cluster (ray; needs "
        "pip install 'styletrain[cluster]'; inputs and -o on a filesystem every node sees)",
    )  # fmt: skip
    g.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="with --cluster ray: the cluster to join, e.g. auto or ray://head:10001 (default: $RAY_ADDRESS, else "
        "a Ray instance started on this machine)",
    )  # fmt: skip
    g.add_argument(
        "--retries", type=ranged(int, 0), default=2, metavar="N",
        help="with --cluster ray: times a file is redone on another worker when its worker dies (default 2)",
    )  # fmt: skip
    g.add_argument(
        "--cpus-per-worker", type=ranged(int, 1), default=1, metavar="N",
        help="with --cluster ray on nodes without GPUs: one worker per N CPUs, each running N threads (default 1); "
        "with GPUs there is one worker per GPU",
    )  # fmt: skip


def _stylizer_options(opts: argparse.Namespace) -> dict[str, Any]:
    """:class:`~inference.engine.stylizer.Stylizer` options except the device."""
    return {
        "precision": opts.precision,
        "batch_size": opts.batch_size,
        "channels_last": opts.channels_last,
        "compile": opts.compile,
        "strength": opts.strength,
        "preserve_color": opts.preserve_color,
        "consistency": opts.consistency,
        "backend": opts.backend,
        "stroke_scale": opts.stroke_scale,
        "stroke_detail": opts.stroke_detail,
        "style": opts.style,
    }


def _file_options(opts: argparse.Namespace) -> dict[str, Any]:
    """:func:`~inference.app.convert.stylize_file` options except ``progress``."""
    options = {
        "overwrite": opts.overwrite,
        "start": opts.start,
        "duration": opts.duration,
        "size": opts.size,
        "max_side": opts.max_side,
        "fps": opts.fps,
        "codec": opts.codec,
        "crf": opts.crf,
        "preset": opts.preset,
        "pix_fmt": opts.pix_fmt,
        "gif_fps": opts.gif_fps,
        "gif_width": opts.gif_width,
        "audio": not opts.no_audio,
    }
    if opts.stats:
        options["stats"] = True  # Passed only when asked for, so the call works with either stylize_file.
    return options


def _check_options(opts: argparse.Namespace) -> None:
    """Checks that involve more than one option."""
    if opts.overwrite and opts.skip_existing:
        raise UserError("--overwrite and --skip-existing exclude each other")
    if opts.devices is not None and opts.device != "auto":
        raise UserError("--device and --devices exclude each other (--devices lists the devices of a batch)")


def _check_crf(opts: argparse.Namespace, outputs: list[Path]) -> None:
    """Refuse a ``--crf`` beyond the encoder's scale or a ``--preset`` it has no equivalent for, before the model
    loads (x264 would silently clamp 60 to 51)."""
    from inference.io.encoders import check_quality
    from inference.io.writers import output_kind

    for ext in {dst.suffix.lower() for dst in outputs if output_kind(dst) == "video"}:
        check_quality(opts.codec, ext, opts.crf, opts.preset)


@exit_on_user_error
def main(args: Sequence[str] | None = None) -> int:
    """Run ``stylize-video``; returns 0 on success, exits with status 2 and ``error: ...`` on bad input.

    SIGTERM is handled like Ctrl-C: temporary outputs are removed, and the exit status is 143 (130 for Ctrl-C).
    """
    with terminate_on_sigterm():
        try:
            return _main(args)
        except OptionError as exc:  # The library names its field; the flag is this command's name for it.
            raise UserError(exc.for_flag("--" + exc.field.replace("_", "-"))) from None


def _main(args: Sequence[str] | None) -> int:
    """:func:`main` without its error handling."""
    opts = build_parser().parse_intermixed_args(args)
    setup_logging(opts.quiet)
    _check_options(opts)
    from inference.app.batch import is_batch
    from inference.app.live import is_live, run_live

    if is_live(opts.inputs, opts.output) or opts.realtime:
        if len(opts.inputs) > 1:
            raise UserError("a live run takes one input (a camera, a stream URL, or a file with --realtime)")
        return run_live(opts, _stylizer_options(opts))
    if is_batch(opts.inputs):
        return _run_batch(opts)
    if opts.cluster != "local":
        raise UserError("--cluster ray runs a batch (several inputs or a folder of videos); one input runs here")
    if opts.ext is not None:
        raise UserError("--ext names the outputs of a batch; with one input, name the output file itself")
    return _run_single(opts)


def _run_single(opts: argparse.Namespace) -> int:
    """One input, one output: the original form of the command."""
    from inference.app.batch import load_stylizer, output_exists, worker_devices
    from inference.app.convert import stylize_file
    from inference.io.media import probe_kind

    src, dst = opts.inputs[0], Path(opts.output)
    # Cheap checks first, so that a typo fails before the model is loaded.
    probe_kind(src)
    _check_crf(opts, [dst])
    if opts.skip_existing and output_exists(dst):
        if not opts.quiet:
            print(f"{dst}: already exists, skipped (--skip-existing)", file=sys.stderr)
        return 0
    device = opts.device
    if opts.devices is not None:
        devices = worker_devices(opts.devices)
        if len(set(devices)) > 1:
            log.warning("one input runs on one device: %s (--devices spreads several inputs)", devices[0])
        device = devices[0]
    stylizer = load_stylizer(opts.model, device=device, **_stylizer_options(opts))
    stylize_file(stylizer, src, opts.output, progress=not opts.quiet, **_file_options(opts))
    return 0


def _run_batch(opts: argparse.Namespace) -> int:
    """Several inputs (or a folder of videos) into the ``-o`` folder, spread over the devices."""
    from inference.app.batch import plan_jobs, run_batch
    from inference.model.artifact import read_metadata

    ext = None if opts.ext is None else "." + opts.ext.lower().lstrip(".")
    if ext is not None and not ext[1:].isalnum():  # Also keeps a path such as "/../x" out of the output names.
        raise UserError(f"--ext: expected an extension such as mp4, mkv or gif, got {opts.ext!r}")
    jobs = plan_jobs(opts.inputs, opts.output, ext=ext)
    _check_crf(opts, [job.dst for job in jobs])
    read_metadata(opts.model)  # A wrong -m fails before the devices are probed.
    make = _ray_executor(opts) if opts.cluster == "ray" else _local_executor(opts)
    return run_batch(jobs, make, _file_options(opts), skip_existing=opts.skip_existing, quiet=opts.quiet)


def _local_executor(opts: argparse.Namespace) -> Callable[[list], Any]:
    """The executor factory for this machine's devices (checked now, before anything is created)."""
    from inference.app.batch import cap_workers, worker_devices
    from inference.app.jobs import check_stylizer_options
    from inference.app.local_executor import LocalExecutor

    devices = worker_devices(opts.devices, opts.device, opts.workers)
    check_stylizer_options(opts.model, devices, _stylizer_options(opts))
    return lambda todo: LocalExecutor(
        opts.model, cap_workers(devices, len(todo)), _stylizer_options(opts), _file_options(opts), quiet=opts.quiet
    )


def _ray_executor(opts: argparse.Namespace) -> Callable[[list], Any]:
    """The executor factory for a Ray cluster; one line naming the extra when Ray is not installed."""
    from inference.app.jobs import check_stylizer_options
    from inference.app.ray_executor import RayExecutor, require_ray

    if opts.devices is not None or opts.workers != 1:
        raise UserError("--devices and --workers choose local workers; with --cluster ray use --cpus-per-worker")
    require_ray()
    check_stylizer_options(opts.model, [], _stylizer_options(opts))  # Precision is checked on the workers' devices.
    return lambda todo: RayExecutor(
        opts.model,
        _stylizer_options(opts),
        _file_options(opts),
        address=opts.ray_address,
        retries=opts.retries,
        cpus_per_worker=opts.cpus_per_worker,
        max_workers=len(todo),
        quiet=opts.quiet,
    )


if __name__ == "__main__":
    sys.exit(main())
