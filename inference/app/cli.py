"""``stylize-video``: stylize a video, image, frame folder or glob with an exported artifact; or many files at once.

Example::

    stylize-video clip.mp4 -m starry.safetensors -o clip_starry.mp4
    stylize-video frames/ -m starry.safetensors -o out.gif --gif-fps 12 --gif-width 480
    stylize-video a.mp4 b.mov clips/ -m starry.safetensors -o styled/ --skip-existing   # every visible GPU

This module wires arguments to :class:`inference.engine.stylizer.Stylizer` and
:func:`inference.app.convert.stylize_file` (one input) or :mod:`inference.app.batch` (several). It needs only the
runtime's install: ``torch``, ``numpy``, ``safetensors``, ``av`` (PyAV), ``pillow``, ``tqdm`` (the progress bar),
``opencv-python-headless`` (DIS flow for ``--consistency``, on by default for videos) and ``torchvision`` (RAFT flow,
imported only when RAFT runs on CUDA); ``onnxruntime`` when installed (the CPU backend), ``ray`` only for
``--cluster ray``. It never imports lightning, wandb, datasets or styletrain (tests/test_stylize_cli.py checks).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.app.argtypes import add_field, flag, from_namespace, ranged
from inference.app.console import OneLineParser, setup_logging
from inference.app.file_options import FileOptions
from inference.core.errors import UserError, exit_on_user_error, terminate_on_sigterm
from inference.engine.options import RuntimeOptions
from inference.io.encode_options import EncodeOptions
from inference.io.trim import TrimOptions

# stylize-video's --consistency default (the Python API's is 0, off), chosen from bench/consistency.py's measurements:
# steady with the contrast kept, and less ghosting than 1 (docs/consistency.md).
DEFAULT_CONSISTENCY = 0.8
#: stylize-video's defaults where they differ from the library's; every other default, range and help text comes from
#: the options dataclasses (RuntimeOptions, TrimOptions, EncodeOptions, FileOptions).
CLI_DEFAULTS = {"consistency": DEFAULT_CONSISTENCY}

log = logging.getLogger("inference")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the options)."""
    p = OneLineParser(
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
    _field(p, FileOptions, "overwrite")
    p.add_argument("--skip-existing", action="store_true", help="leave inputs whose output already exists alone")
    _what_flags(p.add_argument_group("what to stylize"))
    _encoding_flags(p.add_argument_group("output encoding"))
    _runtime_flags(p.add_argument_group("runtime"))
    _cluster_flags(p.add_argument_group("batch on a cluster"))
    return p


def _field(group: argparse._ActionsContainer, cls: type, name: str) -> None:
    """``--name`` for field ``name`` of ``cls``, stylize-video's defaults applied (see :func:`add_field`)."""
    add_field(group, cls, name, CLI_DEFAULTS)


def _what_flags(g: argparse._ActionsContainer) -> None:
    _field(g, TrimOptions, "start")
    _field(g, TrimOptions, "duration")
    resize = g.add_mutually_exclusive_group()
    _field(resize, TrimOptions, "max_side")
    _field(resize, TrimOptions, "size")
    _field(g, TrimOptions, "fps")
    for name in ("strength", "preserve_color", "consistency", "stroke_scale", "stroke_detail", "style"):
        _field(g, RuntimeOptions, name)


def _encoding_flags(g: argparse._ActionsContainer) -> None:
    for name in ("codec", "crf", "preset", "pix_fmt", "gif_fps", "gif_width"):
        _field(g, EncodeOptions, name)
    g.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    g.add_argument(
        "--ext", default=None,
        help="batch only: output extension such as mp4 or gif (default: the input's own, else mp4)",
    )  # fmt: skip


def _runtime_flags(g: argparse._ActionsContainer) -> None:
    _field(g, RuntimeOptions, "device")
    g.add_argument(
        "--devices", default=None, metavar="LIST",
        help="batch: devices to spread the files over, e.g. cuda:0,cuda:1, or cuda for every visible GPU, or cpu "
        "(default: --device if given, else every visible GPU, else the CPU)",
    )  # fmt: skip
    g.add_argument(
        "--workers", type=ranged(int, 1), default=1, metavar="N",
        help="batch: worker processes per device (default 1); e.g. --devices cpu --workers 2",
    )  # fmt: skip
    for name in ("precision", "batch_size", "channels_last", "compile", "backend", "flow_weights"):
        _field(g, RuntimeOptions, name)
    g.add_argument(
        "--realtime", action="store_true",
        help="read the input at its own frame rate and drop frames when stylizing falls behind (reported); camera "
        "and stream inputs (/dev/video0, rtsp://, udp://, http://...) always run this way",
    )  # fmt: skip
    _field(g, FileOptions, "stats")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def _cluster_flags(g: argparse._ActionsContainer) -> None:
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
        help="with --cluster ray: times a file is redone on another worker when its worker dies; with --split: "
        "rounds in which failed segments are redone (default 2)",
    )  # fmt: skip
    g.add_argument(
        "--split", type=_split_value, default="auto", metavar="auto|SECONDS|off",
        help="one video over several workers (--workers, --devices or --cluster ray): cut it into segments of about "
        "SECONDS at keyframes, stylize them at once and join them into one output with the input's timing and audio; "
        "auto (default) splits only when it pays (several workers, a file of 30 s or more) and says so",
    )  # fmt: skip
    g.add_argument(
        "--cpus-per-worker", type=ranged(int, 1), default=1, metavar="N",
        help="with --cluster ray on nodes without GPUs: one worker per N CPUs, each running N threads (default 1); "
        "with GPUs there is one worker per GPU",
    )  # fmt: skip


def _split_value(text: str) -> str | float:
    """``--split``'s parser: a bad value is argparse's one-line error."""
    from inference.app.split_plan import parse_split

    try:
        return parse_split(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(exc.with_flags(flag).removeprefix("--split: ")) from None


def runtime_options_from(opts: argparse.Namespace) -> RuntimeOptions:
    """The :class:`~inference.engine.options.RuntimeOptions` the command line asks for."""
    return from_namespace(RuntimeOptions, opts)


def file_options_from(opts: argparse.Namespace) -> FileOptions:
    """The :class:`~inference.app.file_options.FileOptions` the command line asks for: its trim and encoder options
    (``--no-audio`` is ``encode.audio=False``), ``--overwrite`` and ``--stats``."""
    trim = from_namespace(TrimOptions, opts)
    encode = from_namespace(EncodeOptions, opts, audio=not opts.no_audio)
    return from_namespace(FileOptions, opts, trim=trim, encode=encode)


def _check_options(opts: argparse.Namespace) -> None:
    """Checks that involve more than one option."""
    if opts.overwrite and opts.skip_existing:
        raise UserError("--overwrite and --skip-existing exclude each other")
    if opts.devices is not None and opts.device != "auto":
        raise UserError("--device and --devices exclude each other (--devices lists the devices of a batch)")


def check_crf(encode: EncodeOptions, outputs: list[Path]) -> None:
    """Refuse a ``--crf`` beyond the encoder's scale or a ``--preset`` it has no equivalent for, before the model
    loads (x264 would silently clamp 60 to 51)."""
    from inference.io.encoders import check_quality
    from inference.io.writers import output_kind

    for ext in {dst.suffix.lower() for dst in outputs if output_kind(dst) == "video"}:
        check_quality(encode.codec, ext, encode.crf, encode.preset)


@exit_on_user_error
def main(args: Sequence[str] | None = None) -> int:
    """Run ``stylize-video``; returns 0 on success, exits with status 2 and ``error: ...`` on bad input.

    SIGTERM is handled like Ctrl-C: temporary outputs are removed, and the exit status is 143 (130 for Ctrl-C).
    """
    with terminate_on_sigterm():
        try:
            return _main(args)
        except UserError as exc:  # The library names its fields; the flags are this command's names for them.
            raise UserError(exc.with_flags(flag)) from None


def _main(args: Sequence[str] | None) -> int:
    """:func:`main` without its error handling."""
    opts = build_parser().parse_intermixed_args(args)
    setup_logging(opts.quiet)
    _check_options(opts)
    # The typed options, made once here; everything below takes them instead of reading the flags again.
    runtime_options, file_options = runtime_options_from(opts), file_options_from(opts)
    from inference.app.batch import is_batch
    from inference.app.live import is_live, run_live

    if is_live(opts.inputs, opts.output) or opts.realtime:
        if len(opts.inputs) > 1:
            raise UserError("a live run takes one input (a camera, a stream URL, or a file with --realtime)")
        return run_live(
            opts.model, opts.inputs[0], opts.output, runtime_options, file_options,
            realtime=opts.realtime, quiet=opts.quiet,
        )  # fmt: skip
    if is_batch(opts.inputs):
        return _run_batch(opts, runtime_options, file_options)
    if opts.ext is not None:
        raise UserError("--ext names the outputs of a batch; with one input, name the output file itself")
    from inference.app.split_cli import split_choice

    choice = split_choice(opts)
    if choice is not None:
        return _run_split(opts, choice, runtime_options, file_options)
    if opts.cluster != "local":
        raise UserError(
            "--cluster ray runs a batch (several inputs or a folder of videos) or a split video (--split); this "
            "input runs here"
        )
    return _run_single(opts, runtime_options, file_options)


def _run_single(opts: argparse.Namespace, runtime_options: RuntimeOptions, file_options: FileOptions) -> int:
    """One input, one output: the original form of the command."""
    from inference.app.batch import output_exists, worker_devices
    from inference.app.convert import stylize_file
    from inference.app.jobs import load_stylizer
    from inference.io.media import probe_kind

    src, dst = opts.inputs[0], Path(opts.output)
    # Cheap checks first, so that a typo fails before the model is loaded.
    probe_kind(src)
    check_crf(file_options.encode, [dst])
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
    stylizer = load_stylizer(opts.model, runtime_options, device=device)
    stylize_file(stylizer, src, opts.output, file_options, progress=not opts.quiet)
    return 0


def _run_split(
    opts: argparse.Namespace, choice: tuple, runtime_options: RuntimeOptions, file_options: FileOptions
) -> int:
    """One video cut into segments, stylized on several workers (local or Ray) and joined (``--split``)."""
    from inference.app.batch import output_exists
    from inference.app.split_cli import run_split_command, segment_file_options

    dst = Path(opts.output)
    check_crf(file_options.encode, [dst])
    if opts.skip_existing and output_exists(dst):
        if not opts.quiet:
            print(f"{dst}: already exists, skipped (--skip-existing)", file=sys.stderr)
        return 0
    file_options = segment_file_options(file_options, dst)  # what every segment is encoded with
    factory = ray_executor_factory if opts.cluster == "ray" else local_executor_factory
    make = factory(opts, runtime_options, file_options)
    return run_split_command(opts, choice, file_options, make, runtime_options)


def _run_batch(opts: argparse.Namespace, runtime_options: RuntimeOptions, file_options: FileOptions) -> int:
    """Several inputs (or a folder of videos) into the ``-o`` folder, spread over the devices."""
    from inference.app.batch import plan_jobs, run_batch
    from inference.model.artifact import read_metadata

    ext = None if opts.ext is None else "." + opts.ext.lower().lstrip(".")
    if ext is not None and not ext[1:].isalnum():  # Also keeps a path such as "/../x" out of the output names.
        raise UserError(f"--ext: expected an extension such as mp4, mkv or gif, got {opts.ext!r}")
    jobs = plan_jobs(opts.inputs, opts.output, ext=ext)
    check_crf(file_options.encode, [job.dst for job in jobs])
    read_metadata(opts.model)  # A wrong -m fails before the devices are probed.
    factory = ray_executor_factory if opts.cluster == "ray" else local_executor_factory
    make = factory(opts, runtime_options, file_options)
    return run_batch(jobs, make, file_options, skip_existing=opts.skip_existing, quiet=opts.quiet)


def local_executor_factory(
    opts: argparse.Namespace, runtime_options: RuntimeOptions, file_options: FileOptions
) -> Callable[[list], Any]:
    """The executor factory for this machine's devices (checked now, before anything is created)."""
    from inference.app.batch import cap_workers, worker_devices
    from inference.app.jobs import check_runtime_options
    from inference.app.local_executor import LocalExecutor

    devices = worker_devices(opts.devices, opts.device, opts.workers)
    check_runtime_options(opts.model, devices, runtime_options)
    return lambda todo: LocalExecutor(
        opts.model, cap_workers(devices, len(todo)), runtime_options, file_options, quiet=opts.quiet
    )


def ray_executor_factory(
    opts: argparse.Namespace, runtime_options: RuntimeOptions, file_options: FileOptions
) -> Callable[[list], Any]:
    """The executor factory for a Ray cluster; one line naming the extra when Ray is not installed."""
    from inference.app.jobs import check_runtime_options
    from inference.app.ray_executor import RayExecutor, require_ray

    if opts.devices is not None or opts.workers != 1:
        raise UserError("--devices and --workers choose local workers; with --cluster ray use --cpus-per-worker")
    require_ray()
    check_runtime_options(opts.model, [], runtime_options)  # Precision is checked on the workers' devices.
    return lambda todo: RayExecutor(
        opts.model,
        runtime_options,
        file_options,
        address=opts.ray_address,
        retries=opts.retries,
        cpus_per_worker=opts.cpus_per_worker,
        max_workers=len(todo),
        quiet=opts.quiet,
    )


if __name__ == "__main__":
    sys.exit(main())
