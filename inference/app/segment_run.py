"""Stylize one segment of a split video (a job of :mod:`inference.app.split_plan`'s plan) into a segment file.

The worker seeks to the keyframe before the segment's warm-up, decodes from there, and runs the warm-up frames
through the network and the consistency stage exactly as the frames it writes, so that the stage's history at the
segment's first written frame is close to a single run's. Only frames from ``start_pts`` to ``end_pts`` are encoded.

Segment files are NUT: the one container that keeps any time base and any timestamp exactly, so the joined output
(:mod:`inference.app.segment_join`) gets the very timestamps a single run writes. Every timestamp is written
:data:`PTS_OFFSET` seconds late: an encoder with B-frames gives the first packets a decoding time before the first
frame, and a muxer would shift a negative one (in segment 0 only), which the offset avoids; the join takes it off.
No audio goes into segments: the join copies it once from the source.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from inference.app.file_options import FileOptions
from inference.app.pipeline import run_pipeline
from inference.app.split_plan import Segment
from inference.core.atomic import atomic_output, check_destination
from inference.core.devices import bind_media_device
from inference.core.errors import MediaError
from inference.core.stages import StageClock
from inference.io.encode_options import EncodeOptions
from inference.io.encoder_limits import size_multiples
from inference.io.video_reader import VideoSource

#: Seconds added to every timestamp inside a segment file (see the module docstring); more than any encoder delay.
PTS_OFFSET = 100.0
#: The segment files' container (what :mod:`inference.app.segment_join` reads).
SEGMENT_EXT = ".nut"


def pts_offset(time_base: Any) -> int:
    """:data:`PTS_OFFSET` in ``time_base`` units."""
    return int(round(PTS_OFFSET / time_base))


@dataclasses.dataclass
class SegmentResult:
    """What :func:`stylize_segment` did: the file, frames written and stylized for warm-up, wall time."""

    output: Path
    frames: int
    warmup: int
    seconds: float


def stylize_segment(
    stylizer: Any,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    segment: Segment,
    file_options: FileOptions | None = None,
) -> SegmentResult:
    """Stylize ``segment`` of video ``src`` into the NUT file ``dst`` (through a temporary file renamed into place).

    Args:
        stylizer: A :class:`~inference.app.convert.FrameRunner` (the worker's Stylizer).
        src: The whole input video.
        dst: The segment file (``.nut``).
        segment: Which frames to stylize and write.
        file_options: Of its ``trim`` only the size fields apply (``start`` and ``duration`` are refused by the split
            planner); ``encode`` should name the codec the final container takes (the planner resolves the
            container's default), and audio is never written here (the join copies it); ``overwrite`` replaces an
            existing segment file; ``stats`` is not used. ``None``: the defaults.

    Raises:
        MediaError: Unreadable input, or fewer frames decoded than the plan holds (the file changed?).
    """
    t0 = time.perf_counter()
    file_options = file_options or FileOptions()
    trim, encode = file_options.trim, dataclasses.replace(file_options.encode, audio=False)
    bind_media_device(stylizer.device)
    even = size_multiples(encode.pix_fmt) != (1, 1)
    # The single run's path choice (inference.app.convert): planes on GPUs into yuv420p without the stage.
    planes = encode.pix_fmt == "yuv420p" and stylizer.device.type != "cpu" and not stylizer.consistency
    start = segment.warmup_seconds if segment.warmup_pts > segment.origin_pts else None
    source = VideoSource(src, trim.resize(even), start, planes=planes)
    try:
        dst = check_destination(dst, overwrite=file_options.overwrite, is_dir=False)
        with atomic_output(dst, suffix=SEGMENT_EXT) as tmp:
            written, warm = _encode(stylizer, source, tmp, segment, encode)
            if written != segment.frames:  # raised here, so the temporary file is removed, not renamed
                raise MediaError(
                    f"{src}: segment {segment.index} gave {written} frames where the plan has {segment.frames} "
                    "(did the file change since the plan?)"
                )
    finally:
        source.close()
    return SegmentResult(dst, written, warm, time.perf_counter() - t0)


def _encode(stylizer: Any, source: VideoSource, tmp: Path, segment: Segment, encode: EncodeOptions) -> tuple[int, int]:
    """Decode -> stylize -> encode the segment into ``tmp``; returns ``(frames written, warm-up frames)``.

    The source yields timestamps relative to its seek point; they are turned back into the stream's own so that the
    segment file holds the single run's timestamps (plus :data:`PTS_OFFSET`).
    """
    from inference.io.video_writer import VideoSink

    clock = StageClock()
    base = int(round(source.info.origin / source.info.time_base))  # 0 without a seek
    offset = pts_offset(source.info.time_base)
    sink = VideoSink(tmp, source.info, encode, container_ext=SEGMENT_EXT, clock=clock)
    yuv_in = source.info.yuv
    yuv_out = sink.yuv_spec if yuv_in is not None else None
    write = sink.write_planes if yuv_out is not None else sink.write
    counts = [0, 0]  # written, warm-up

    def frames():
        for frame in source.frames(clock=clock):
            pts = frame.pts + base
            if segment.end_pts is not None and pts >= segment.end_pts:
                return
            yield frame.array, pts

    def consume(item: tuple[Any, int]) -> None:
        array, pts = item
        if pts < segment.start_pts:
            counts[1] += 1  # stylized for the stage's history, not written
            return
        write(array, pts + offset)
        counts[0] += 1

    def process(items):
        return stylizer.process(items, yuv_in=yuv_in, yuv_out=yuv_out)

    try:
        run_pipeline(frames(), process, consume, depth=max(8, 2 * stylizer.batch_size))
        if counts[0] == segment.frames:
            sink.close()
        else:
            sink.abort()
    except BaseException:
        sink.abort()
        raise
    return counts[0], counts[1]
