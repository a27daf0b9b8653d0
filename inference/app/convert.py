"""One file in, one file out: stylize a video, image, frame folder or glob into a video, GIF, folder or image.

Readers and writers live in :mod:`inference.io`; this module ties them to a :class:`~inference.engine.stylizer.Stylizer`
through the threaded pipeline of :mod:`inference.app.pipeline`, writing atomically (:mod:`inference.core.atomic`).

Data flow for 8-bit 4:2:0 video into a yuv420p video: the decoder's I420 planes go to the Stylizer untouched, which
converts them to RGB on the device with the stream's matrix and range, runs the network and converts back to I420
planes that go straight to the encoder. Every other combination (10-bit, 4:2:2/4:4:4, odd sizes, images, GIF,
other pixel formats) converts to RGB on the host with swscale, using the stream's matrix and range.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inference.app.file_options import FileOptions
from inference.app.pipeline import run_pipeline
from inference.core.atomic import atomic_output, check_destination
from inference.core.devices import bind_media_device
from inference.core.errors import MediaError
from inference.core.stages import StageClock
from inference.io.encode_options import EncodeOptions
from inference.io.encoder_limits import size_multiples
from inference.io.media import MediaInfo, Resize
from inference.io.protocols import Sink, Source
from inference.io.readers import open_source
from inference.io.trim import TrimOptions
from inference.io.writers import check_encoders, open_sink, output_kind

if TYPE_CHECKING:
    import numpy as np
    import torch

    from inference.core.colour import YuvSpec

log = logging.getLogger("inference")


class FrameRunner(Protocol):
    """What a file conversion needs of a :class:`~inference.engine.stylizer.Stylizer`.

    A protocol rather than the class, so that tests can hand in small fakes and the conversion depends only on what
    it calls.
    """

    device: torch.device
    batch_size: int
    consistency: float

    def process(
        self,
        items: Iterable[tuple[np.ndarray, Any]],
        *,
        yuv_in: YuvSpec | None = None,
        yuv_out: YuvSpec | None = None,
        clock: StageClock | None = None,
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Stylized ``(frame, meta)`` pairs in input order (see :meth:`inference.engine.stylizer.Stylizer.process`)."""
        ...


@dataclass
class StylizeResult:
    """What :func:`stylize_file` did.

    Attributes:
        output: The written file or folder.
        frames: Number of frames written.
        seconds: Wall-clock time of the whole run.
        warnings: One-line warnings (truncated input, size changed for the encoder, dropped audio...).
        clock: Busy time per pipeline stage (device stages only with ``stats=True``).
        frame_format: ``"yuv"`` when frames stayed in YUV planes up to the device, ``"rgb"`` when swscale converted
            them.
    """

    output: Path
    frames: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    clock: StageClock = field(default_factory=StageClock)
    frame_format: str = "rgb"

    @property
    def fps(self) -> float:
        """Frames written per second of wall-clock time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ConversionPlan:
    """What :func:`stylize_file` decided before opening anything: how to read the input and what to write.

    Attributes:
        kind: The output kind (:func:`~inference.io.writers.output_kind`).
        encode: Encoder settings (checked already for video outputs).
        trim: The part of the input to read and the output size.
        even: The pixel format needs even sizes.
        planes: Let a video source hand I420 planes to the device (see :class:`~inference.io.protocols.Source`).
        progress, stats: Show the progress bar and summary; time every stage.
    """

    kind: str
    encode: EncodeOptions
    trim: TrimOptions
    even: bool = False
    planes: bool = False
    progress: bool = False
    stats: bool = False

    @property
    def resize(self) -> Resize:
        """Output size rules."""
        return self.trim.resize(self.even)


def stylize_file(
    stylizer: FrameRunner,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    file_options: FileOptions | None = None,
    *,
    progress: bool = False,
    planes: bool | None = None,
    **fields: Any,
) -> StylizeResult:
    """Stylize ``src`` into ``dst`` (the output kind follows ``dst``'s extension); returns a :class:`StylizeResult`.

    Args:
        stylizer: The configured runner.
        src: A video, an image, a folder of frames or a glob.
        dst: A video container (.mp4, .mkv, .mov, .webm, .avi), a ``.gif``, an image, or a folder (no extension).
        file_options: The part of the input and the output size, the encoder settings, ``overwrite`` and ``stats``
            (:class:`~inference.app.file_options.FileOptions`); ``None``: all of the input at its own size, the
            default encoder settings, no existing output replaced.
        progress: Show a progress bar (tqdm, terminals only) and a summary (on stderr).
        planes: Hand 8-bit 4:2:0 video to the device as I420 planes into a yuv420p output; ``None``: on GPUs only.
        **fields: Fields that replace ``file_options``' (a shorthand, see
            :meth:`~inference.app.file_options.FileOptions.build`): ``trim``, ``encode``, ``overwrite``, ``stats``,
            or a field of :class:`~inference.io.trim.TrimOptions` or
            :class:`~inference.io.encode_options.EncodeOptions` (``start=2.0``, ``crf=23``).

    Raises:
        TypeError: A field none of the options has.
        OptionError: A trim or encoder field out of range (one line naming the field).
        UserError: A codec, preset, crf or pix_fmt the encoder refuses (before anything is decoded).
        MediaError: Unreadable input, unsupported or unwritable output, existing output without ``overwrite``.
    """
    t0 = time.perf_counter()
    file_options = FileOptions.build(file_options, **fields)
    bind_media_device(stylizer.device)  # NVDEC and NVENC on the Stylizer's GPU, not the first one
    kind, even, planes = _plan(stylizer, Path(dst), file_options.encode, planes)
    plan = ConversionPlan(kind, file_options.encode, file_options.trim, even, planes, progress, file_options.stats)
    source, dst = _open_input(src, dst, plan, file_options.overwrite)
    result = StylizeResult(dst, 0, 0.0, frame_format="yuv" if source.info.yuv is not None else "rgb")
    try:
        result.frames = _convert(stylizer, source, dst, plan, result.clock)
        result.warnings += _warnings(source, dst, plan)
    finally:
        source.close()
    result.seconds = time.perf_counter() - t0
    _report(result, source, progress, file_options.stats)
    return result


def _plan(stylizer: FrameRunner, dst: Path, encode: EncodeOptions, planes: bool | None) -> tuple[str, bool, bool]:
    """Check the encoder options before anything is decoded; return ``(output kind, even sizes needed, YUV planes
    path)``. ``planes=None`` keeps the planes for GPUs: the CPU keeps the host RGB path (swscale in the reader and
    writer threads, off the network's thread), which was not slower in bench/yuv_path.py
    (bench/results/yuv-path-cpu.json)."""
    kind = output_kind(dst)
    if kind != "video":
        return kind, False, False
    check_encoders(encode, [dst])
    if planes is None:
        planes = stylizer.device.type != "cpu"
    # The consistency stage works on RGB frames, so it takes the host RGB path.
    planes = encode.pix_fmt == "yuv420p" and planes and not stylizer.consistency
    return kind, size_multiples(encode.pix_fmt) != (1, 1), planes


def _open_input(src, dst, plan: ConversionPlan, overwrite: bool) -> tuple[Source, Path]:
    """Open the source, then check the destination (a missing input is a better first message than an existing
    output). Returns ``(source, dst)`` with ``dst`` as a checked :class:`Path`."""
    source = open_source(src, plan.trim, even=plan.even, planes=plan.planes)
    try:
        dst = check_destination(dst, overwrite=overwrite, is_dir=plan.kind == "frames")
        src_path = Path(src)
        if src_path.exists() and dst.exists() and os.path.samefile(src_path, dst):
            raise MediaError(f"{dst}: output would overwrite the input")
    except BaseException:
        source.close()
        raise
    return source, dst


def _warnings(source: Source, dst: Path, plan: ConversionPlan) -> list[str]:
    """Size changes made for an even-size pixel format, frames an image output drops, truncation."""
    info, kind, resize = source.info, plan.kind, plan.resize
    found = _size_warnings(info, dst, plan.encode.pix_fmt, resize.size, resize.max_side) if resize.even else []
    if kind == "image" and (info.n_frames or 0) > 1:
        found.append(f"{dst}: image output: only the first of {info.n_frames} frames is stylized")
    truncated = source.truncation_warning() if kind != "image" else None
    return found + ([truncated] if truncated else [])


#: The option fields a conversion warning may name (in backticks).
WARNING_FIELDS = ("size", "pix_fmt")


def _size_warnings(
    info: MediaInfo, dst: Path, pix_fmt: str, size: tuple[int, int] | None, max_side: int | None
) -> list[str]:
    """Say when an even-size pixel format changed the size the input or ``size`` asked for (the fields the warning
    names are in backticks: :data:`WARNING_FIELDS`)."""
    (iw, ih), (w, h) = info.input_size, (info.width, info.height)
    if size is None and max_side is None and (w, h) != (iw, ih):
        how = "scaled up" if w > iw or h > ih else "cropped"
        return [
            f"{dst}: {pix_fmt} needs even sizes: {iw}x{ih} {how} to {w}x{h} (use `pix_fmt` yuv444p to keep every pixel)"
        ]
    shown = (w, h) if info.rotation % 180 == 0 else (h, w)
    if size is not None and shown != tuple(size):
        return [
            f"{dst}: {pix_fmt} needs even sizes: `size` {size[0]}x{size[1]} became {shown[0]}x{shown[1]} (use "
            "`pix_fmt` yuv444p for odd sizes)"
        ]
    return []


def _convert(stylizer: FrameRunner, source: Source, dst: Path, plan: ConversionPlan, clock: StageClock) -> int:
    """Run the pipeline from ``source`` into a temporary output renamed to ``dst``; returns the frames written."""
    limit = 1 if plan.kind == "image" else None
    info = source.info
    with atomic_output(dst, is_dir=plan.kind == "frames", suffix=dst.suffix) as tmp:
        sink = open_sink(tmp, dst, info, plan.encode, clock)
        try:
            _run(stylizer, source, sink, clock, limit=limit, progress=plan.progress, device_clock=plan.stats)
            if sink.frames == 0:
                raise MediaError(f"{info.path}: no decodable video frames")
            sink.close()
        except BaseException:
            sink.abort()
            raise
    return min(sink.frames, limit or sink.frames)


def _run(
    stylizer: FrameRunner, source: Source, sink: Sink, clock: StageClock, *, limit, progress: bool, device_clock: bool
) -> None:
    """Decode (reader thread) -> stylize (this thread) -> encode and mux (writer thread)."""
    from tqdm import tqdm

    yuv_in = source.info.yuv
    yuv_out = sink.yuv_spec if yuv_in is not None else None
    write = sink.write_planes if yuv_out is not None else sink.write
    # disable=None: tqdm draws only on a terminal, so logs and pipes stay clean.
    bar = tqdm(total=limit or source.info.n_frames, unit="frame", disable=None if progress else True, leave=False)

    def process(items: Iterator[tuple[Any, int]]) -> Iterator[tuple[Any, int]]:
        return stylizer.process(items, yuv_in=yuv_in, yuv_out=yuv_out, clock=clock if device_clock else None)

    def consume(item: tuple[Any, int]) -> None:
        write(*item)
        clock.count()
        bar.update()

    try:
        frames = _limited(source.frames(clock=clock), limit)
        run_pipeline(((f.array, f.pts) for f in frames), process, consume, depth=max(8, 2 * stylizer.batch_size))
    finally:
        bar.close()


def _limited(frames: Iterable, limit: int | None) -> Iterator:
    for i, frame in enumerate(frames):
        if limit is not None and i >= limit:
            return
        yield frame


def _report(result: StylizeResult, source: Source, progress: bool, stats: bool) -> None:
    """Log the warnings; print the summary line (``progress``) and the stage table (``stats``) on stderr."""
    for w in result.warnings:
        log.warning(w, extra={"mentions": WARNING_FIELDS})  # the command line writes the fields as its flags
    if progress:
        print(f"{result.output}: {result.frames} frames in {result.seconds:.1f}s ({result.fps:.1f} frames/s)",
              file=sys.stderr)  # fmt: skip
    if stats:
        decoder = f", decoder: {source.decoder}" if source.decoder else ""
        print(f"frame format: {result.frame_format}{decoder}", file=sys.stderr)
        print(result.clock.table(result.seconds), file=sys.stderr)
