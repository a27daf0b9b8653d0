"""Join the segment files of a split video into one output, with the source's timing, tags and audio.

Segments encoded with the same settings carry the same codec headers (for H.264: the same SPS and PPS), so their
packets are copied into the output unchanged, in order, with the timestamps the workers wrote (the very timestamps
a single run writes, variable frame rate included). Where the headers differ (another codec, an encoder that put
something per-run into them), the frames are decoded and encoded once more, and the log says why. The audio is
copied once from the source, interleaved by time, as a single run does (:class:`~inference.io.audio.AudioCopier`).
The output is written to a temporary file and renamed into place when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from inference.app.segment_run import pts_offset
from inference.core.atomic import atomic_output
from inference.core.errors import MediaError
from inference.io.encode_options import EncodeOptions
from inference.io.media import MediaInfo

log = logging.getLogger("inference")


@dataclass
class JoinResult:
    """What :func:`join_segments` did: frames written, and ``None`` or why the frames were encoded again."""

    frames: int
    reencoded: str | None = None


def copy_problem(parts: list[Path]) -> str | None:
    """Why the packets of ``parts`` cannot be joined as they are (a phrase), or ``None`` when they can."""
    import av

    first = None
    for part in parts:
        with av.open(str(part)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            heads = (ctx.name, stream.width, stream.height, bytes(ctx.extradata or b""))
        if first is None:
            first = heads
        elif heads[:3] != first[:3]:
            return f"{part.name} is {heads[0]} {heads[1]}x{heads[2]}, {parts[0].name} {first[0]} {first[1]}x{first[2]}"
        elif heads[3] != first[3]:
            return f"{part.name} has other codec headers than {parts[0].name}"
    return None


def join_segments(parts: list[Path], dst: Path, info: MediaInfo, encode: EncodeOptions) -> JoinResult:
    """Write ``parts`` (segment files in order) into ``dst`` with ``info``'s rotation and colour, and its audio.

    Args:
        parts: Segment files from :func:`~inference.app.segment_run.stylize_segment`.
        dst: The output video (checked already; replaced if present).
        info: The source as a single run reads it (:class:`~inference.io.video_reader.VideoSource` without a trim).
        encode: The output's encoder settings (for the re-encoding fallback; ``audio`` decides the audio copy).

    Raises:
        MediaError: A segment file cannot be read, or the output cannot be written.
    """
    problem = copy_problem(parts)
    with atomic_output(dst, suffix=dst.suffix) as tmp:
        if problem is None:
            frames = _copy(parts, tmp, dst, info, encode)
        else:
            log.warning("%s: segments encoded again once while joining (%s)", dst, problem)
            frames = _reencode(parts, tmp, dst, info, encode)
    return JoinResult(frames, problem)


def _segment_packets(parts: list[Path], info: MediaInfo):
    """Every packet of every segment in decode order, with its presentation timestamp back in the source's time
    base (the NUT muxer may choose a finer one; the values are exact multiples) and the segment files' offset taken
    off, and a decoding timestamp made for the whole joined stream (see :func:`decode_times`)."""
    import av

    offset = pts_offset(info.time_base)

    def packets():
        for part in parts:
            with av.open(str(part)) as container:
                stream = container.streams.video[0]
                scale = Fraction(stream.time_base) / info.time_base
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    if packet.pts is None:
                        raise MediaError(f"{part}: a packet without a timestamp")
                    yield int(round(packet.pts * scale)) - offset, packet

    dts = decode_times([pts for pts, _ in packets()])  # a first pass reads timestamps only
    for i, (pts, packet) in enumerate(packets()):
        packet.pts, packet.dts = pts, dts[i]
        packet.time_base = info.time_base
        yield packet


def decode_times(pts: list[int]) -> list[int]:
    """Decoding timestamps for packets with presentation timestamps ``pts`` in decode order.

    NUT stores presentation times only (its demuxer guesses decoding times from a per-file delay, which differs
    between segments), so the join makes them again for the joined stream: packet ``i`` decodes at the ``i - D``-th
    presentation time in display order, ``D`` being the smallest reorder delay that keeps every decoding time at or
    before its presentation time. They rise strictly across the joins too; without B-frames they equal ``pts``.
    """
    shown = sorted(pts)
    rank = {p: i for i, p in enumerate(shown)}
    delay = max(0, *(i - rank[p] for i, p in enumerate(pts)))
    step = (shown[1] - shown[0]) if len(shown) > 1 else 1
    return [shown[i - delay] if i >= delay else shown[0] - (delay - i) * step for i in range(len(pts))]


def _copy(parts: list[Path], tmp: Path, dst: Path, info: MediaInfo, encode: EncodeOptions) -> int:
    import av

    ext = dst.suffix.lower()
    out = av.open(str(tmp), mode="w", format={".mkv": "matroska", ".m4v": "mp4"}.get(ext, ext[1:]))
    copier = None
    try:
        with av.open(str(parts[0])) as first:
            stream = out.add_stream_from_template(first.streams.video[0])
        stream.time_base = info.time_base
        _tag(stream, info, encode.pix_fmt)
        if encode.audio and info.has_audio:
            from inference.io.audio import AudioCopier

            copier = AudioCopier(info.path, out, origin=info.origin, end=info.end, trim=info.start > 0)
        frames = 0
        for packet in _segment_packets(parts, info):
            packet.stream = stream
            if copier is not None and packet.dts is not None:
                copier.copy_until(float(packet.dts * info.time_base))
            out.mux(packet)
            frames += 1
        if copier is not None:
            copier.copy_until()
        out.close()
    except av.error.FFmpegError as exc:
        raise MediaError(f"{dst}: cannot join the segments ({str(exc).splitlines()[0]})") from None
    finally:
        if copier is not None:
            copier.close()
        try:
            out.close()
        except Exception:  # noqa: BLE001 - closing twice after an error; the first error matters.
            pass
    return frames


def _tag(stream: Any, info: MediaInfo, pix_fmt: str) -> None:
    """Rotation and colour tags of the source (NUT keeps neither, so they come from the source, as a single run's)."""
    import dataclasses

    if info.rotation:
        stream.set_display_rotation(info.rotation)
    tags = info.colour.for_output(*(info.input_size if info.input_size[0] > 0 else (info.width, info.height)))
    tags = dataclasses.replace(tags, full_range=pix_fmt.startswith("yuvj"))  # as VideoSink tags them
    tags.apply(stream.codec_context)


def _reencode(parts: list[Path], tmp: Path, dst: Path, info: MediaInfo, encode: EncodeOptions) -> int:
    """Decode every segment and encode it once into ``tmp`` (with the audio), keeping each frame's timestamp."""
    import av

    from inference.io.video_writer import VideoSink

    offset = pts_offset(info.time_base)
    sink = VideoSink(tmp, info, encode, container_ext=dst.suffix)
    try:
        for part in parts:
            with av.open(str(part)) as container:
                scale = Fraction(container.streams.video[0].time_base) / info.time_base
                for frame in container.decode(video=0):
                    sink.write(frame.to_ndarray(format="rgb24"), int(round(frame.pts * scale)) - offset)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return sink.frames
