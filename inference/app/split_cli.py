"""``stylize-video long.mp4 -o out.mp4 --split auto|SECONDS|off``: whether to split one video, and the split run.

:func:`split_choice` decides (``auto``: only with several workers, or a Ray cluster, and a file of
:data:`~inference.app.split_plan.AUTO_MIN_SECONDS` or more) and says why on stderr; :func:`run_split_command` makes
the plan, prints it, and runs it (:func:`inference.app.split_run.run_split`) on the local pool or on Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.app.split_plan import (
    DEFAULT_WARMUP,
    Segment,
    StreamFrames,
    describe_plan,
    plan_segments,
    probe_frames,
    segment_seconds,
)
from inference.core.errors import OptionError

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.engine.options import RuntimeOptions

#: The fields a split's refusal names (in backticks): the command line writes them as its flags.
SPLIT_MENTIONS = ("start", "duration", "split")


def _say(opts: argparse.Namespace, line: str) -> None:
    if not opts.quiet:
        print(line, file=sys.stderr)


def split_choice(opts: argparse.Namespace) -> tuple[StreamFrames, list[Segment], str] | None:
    """``(frames, segments, reason)`` when this one-input run is to be split, else ``None``.

    Raises:
        OptionError: ``--split SECONDS`` for an input or output that is not a video, or with ``--start``/``--duration``.
    """
    from inference.app.batch import worker_devices
    from inference.io.media import probe_kind
    from inference.io.writers import output_kind

    split, explicit = opts.split, opts.split not in ("auto", "off")
    if split == "off":
        return None
    src = opts.inputs[0]
    if probe_kind(src) != "video" or output_kind(opts.output) != "video":
        if explicit:
            raise OptionError("split", f" cuts a video file into a video output; {src} -> {opts.output} is not one")
        return None
    if opts.start is not None or opts.duration is not None:
        if explicit:
            raise OptionError(
                "split", " cannot be combined with `start` or `duration` (use `split` off)", mentions=SPLIT_MENTIONS
            )
        return None
    devices = None if opts.cluster == "ray" else worker_devices(opts.devices, opts.device, opts.workers)
    workers = None if devices is None else len(devices)
    if workers == 1 and not explicit:
        return None  # the ordinary one-worker run: nothing to say
    frames = probe_frames(src)
    cpu_only = devices is not None and all(str(d).startswith("cpu") for d in devices)
    length, reason = segment_seconds(split, frames.seconds, workers, cpu_only=cpu_only)
    if length is None:
        _say(opts, f"{src}: not split ({reason})")
        return None
    segments = plan_segments(frames, length, DEFAULT_WARMUP)
    if len(segments) < 2:
        _say(opts, f"{src}: not split (no keyframe or frame to cut at within {length:g}s segments)")
        return None
    return frames, segments, reason


def run_split_command(
    opts: argparse.Namespace,
    choice: tuple[StreamFrames, list[Segment], str],
    file_options: FileOptions,
    make_executor: Callable[[list], Any],
    runtime_options: RuntimeOptions,
) -> int:
    """Print the plan of ``opts.inputs[0]`` and run it into ``opts.output``; the exit status.

    Args:
        opts: stylize-video's options.
        choice: From :func:`split_choice`.
        file_options: How the segments are converted (codec resolved for the output's container by
            :func:`segment_file_options`).
        make_executor: The executor factory (local pool or Ray) for the segment jobs.
        runtime_options: The workers' :class:`~inference.engine.options.RuntimeOptions` (part of the resume
            fingerprint).
    """
    from inference.app.split_run import run_split
    from inference.core.atomic import check_destination
    from inference.model.artifact import read_metadata

    frames, segments, reason = choice
    src, dst = Path(opts.inputs[0]), Path(opts.output)
    check_destination(dst, overwrite=opts.overwrite, is_dir=False)
    read_metadata(opts.model)  # a wrong -m fails before any worker starts
    for line in describe_plan(segments, frames, reason):
        _say(opts, f"{src}: {line}" if not line.startswith(" ") else line)
    return run_split(
        src,
        dst,
        frames,
        segments,
        make_executor,
        file_options=file_options,
        fingerprint=_fingerprint(opts.model, file_options, runtime_options),
        skip_existing=opts.skip_existing,
        rounds=1 if opts.cluster == "ray" else 1 + opts.retries,  # Ray redoes a lost worker's job itself (--retries)
        quiet=opts.quiet,
    )


def segment_file_options(file_options: FileOptions, dst: Path) -> FileOptions:
    """``file_options`` with the encoder's codec the output's container takes (VP9 for .webm, not the NUT file's
    default), so that every segment is coded as the output will be; refuses ``start``/``duration``."""
    from inference.app.split_run import check_splittable
    from inference.io.encoders import codec_family

    check_splittable(file_options.trim)
    encode = dataclasses.replace(file_options.encode, codec=codec_family(file_options.encode.codec, dst.suffix))
    return dataclasses.replace(file_options, encode=encode)


def _fingerprint(model: str, file_options: FileOptions, runtime_options: RuntimeOptions) -> str:
    """What decides a segment's pixels: the model file, the network options and the encoder and size options."""
    stat = Path(model).stat()
    # Any worker's device makes the same segment: the device is left out.
    fields = {k: v for k, v in dataclasses.asdict(runtime_options).items() if k != "device"}
    return json.dumps([str(Path(model).resolve()), stat.st_size, stat.st_mtime_ns, repr(fields),
                       repr(file_options.trim), repr(file_options.encode)])  # fmt: skip
