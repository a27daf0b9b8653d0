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
from pathlib import Path

from inference.app.split_plan import (
    DEFAULT_WARMUP,
    Segment,
    StreamFrames,
    describe_plan,
    plan_segments,
    probe_frames,
    segment_seconds,
)
from inference.core.errors import UserError


def _say(opts: argparse.Namespace, line: str) -> None:
    if not opts.quiet:
        print(line, file=sys.stderr)


def split_choice(opts: argparse.Namespace) -> tuple[StreamFrames, list[Segment], str] | None:
    """``(frames, segments, reason)`` when this one-input run is to be split, else ``None``.

    Raises:
        UserError: ``--split SECONDS`` for an input or output that is not a video, or with ``--start``/``--duration``.
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
            raise UserError(f"--split cuts a video file into a video output; {src} -> {opts.output} is not one")
        return None
    if opts.start is not None or opts.duration is not None:
        if explicit:
            raise UserError("--split cannot be combined with --start or --duration (use --split off)")
        return None
    workers = None if opts.cluster == "ray" else len(worker_devices(opts.devices, opts.device, opts.workers))
    if workers == 1 and not explicit:
        return None  # the ordinary one-worker run: nothing to say
    frames = probe_frames(src)
    length, reason = segment_seconds(split, frames.seconds, workers)
    if length is None:
        _say(opts, f"{src}: not split ({reason})")
        return None
    segments = plan_segments(frames, length, DEFAULT_WARMUP)
    if len(segments) < 2:
        _say(opts, f"{src}: not split (no keyframe or frame to cut at within {length:g}s segments)")
        return None
    return frames, segments, reason


def run_split_command(opts: argparse.Namespace, frames: StreamFrames, segments: list[Segment], reason: str) -> int:
    """Plan, print and run the split of ``opts.inputs[0]`` into ``opts.output``; the exit status."""
    from inference.app.batch import output_exists
    from inference.app.cli import check_crf, file_options, local_executor_factory, ray_executor_factory
    from inference.app.split_run import check_splittable, run_split
    from inference.core.atomic import check_destination
    from inference.io.encoders import codec_family
    from inference.model.artifact import read_metadata

    src, dst = Path(opts.inputs[0]), Path(opts.output)
    check_crf(opts, [dst])
    if opts.skip_existing and output_exists(dst):
        _say(opts, f"{dst}: already exists, skipped (--skip-existing)")
        return 0
    check_destination(dst, overwrite=opts.overwrite, is_dir=False)
    read_metadata(opts.model)  # a wrong -m fails before any worker starts
    options = file_options(opts)
    check_splittable(options["trim"])
    # Every segment must use the codec the output container takes by default (VP9 for .webm), not the NUT file's.
    options["encode"] = dataclasses.replace(options["encode"], codec=codec_family(opts.codec, dst.suffix))
    for line in describe_plan(segments, frames, reason):
        _say(opts, f"{src}: {line}" if not line.startswith(" ") else line)
    ray = opts.cluster == "ray"
    make = ray_executor_factory(opts, options) if ray else local_executor_factory(opts, options)
    return run_split(
        src,
        dst,
        frames,
        segments,
        make,
        options,
        fingerprint=_fingerprint(opts, options),
        skip_existing=opts.skip_existing,
        rounds=1 if ray else 1 + opts.retries,  # Ray redoes a lost worker's job itself (--retries)
        quiet=opts.quiet,
    )


def _fingerprint(opts: argparse.Namespace, options: dict) -> str:
    """What decides a segment's pixels: the model file, the network options and the encoder and size options."""
    from inference.app.cli import runtime_options

    model = Path(opts.model).stat()
    # Any worker's device makes the same segment: the device is left out.
    runtime = {k: v for k, v in dataclasses.asdict(runtime_options(opts)).items() if k != "device"}
    return json.dumps([str(Path(opts.model).resolve()), model.st_size, model.st_mtime_ns, repr(runtime),
                       repr(options["trim"]), repr(options["encode"])])  # fmt: skip
