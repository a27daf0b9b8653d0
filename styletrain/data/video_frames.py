"""Frames of videos for training, decoded by the runtime (:mod:`inference.io.readers`) and turned upright.

:func:`read_clip` gives a short clip (pairs, ``evaluate``, the temporal validation callback); :class:`VideoFrameSource`
samples content images from videos (``--data.videos``). Both go through the runtime's readers, so rotation tags,
frame folders, globs and damaged packets are handled in one place, and apply the display rotation: a phone video
shot upright trains on upright frames.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from inference.core.errors import MediaError, OptionError, UserError
from inference.io.image_reader import resize_array
from inference.io.readers import read_frames
from styletrain.data.content_sources import load_rgb


def read_clip(path: str | Path, max_frames: int | None = None, max_side: int | None = None) -> list[np.ndarray]:
    """Read the first frames of a video file or frame folder as upright RGB ``uint8 [H, W, 3]``.

    Args:
        path: Video file, folder of frames (natural order) or glob.
        max_frames: Keep only the first ``max_frames`` frames.
        max_side: Shrink so that the longer side is at most this.

    Raises:
        MediaError: Unreadable input or no frames.
    """
    frames: list[np.ndarray] = []
    for frame in read_frames(path, upright=True, max_side=max_side):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise MediaError(f"{path}: no frames")
    return frames


def resize_shorter(frame: np.ndarray, side: int) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` so that its shorter side is ``side`` (aspect kept, the runtime's resize policy)."""
    h, w = frame.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    return np.ascontiguousarray(resize_array(frame, size))


def sample_frames(path: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, upright uint8 [H, W, 3])`` for every ``stride``-th decoded frame of the video ``path``.

    Raises:
        UserError: The file is missing or cannot be decoded (one line naming it).
    """
    if not path.is_file():
        raise UserError(f"video not found: {path}")
    try:
        for index, frame in enumerate(read_frames(path, upright=True)):
            if index % stride == 0:
                yield index, frame
    except MediaError as exc:
        raise UserError(f"cannot decode video {exc}") from None


class VideoFrameSource:
    """Every ``stride``-th frame of some video files, decoded once and kept JPEG-encoded in memory.

    Frames are shrunk so that their shorter side is ``max(image_size, 256)`` before encoding, so a long 1080p
    video costs tens of kilobytes per kept frame, not megabytes.
    """

    def __init__(self, videos: Sequence[str], stride: int, image_size: int, max_images: int | None = None) -> None:
        if stride < 1:
            raise OptionError("video_frame_stride", f"must be >= 1, got {stride}")
        self.frames: list[bytes] = []
        self.keys: list[str] = []
        for video in videos:
            if max_images is not None and len(self.frames) >= max_images:
                break
            for index, frame in sample_frames(Path(video).expanduser(), stride):
                self.frames.append(_encode_jpeg(frame, max(image_size, 256)))
                self.keys.append(f"{Path(video).name}#{index}")
                if max_images is not None and len(self.frames) >= max_images:
                    break
        if not self.frames:
            raise OptionError("videos", f"{', '.join(map(str, videos))}: no frames decoded")
        self.name = f"{len(videos)} video(s), every {stride}th frame"

    def __len__(self) -> int:
        return len(self.frames)

    def key(self, index: int) -> str:
        return self.keys[index]

    def load(self, index: int, min_side: int | None = None) -> np.ndarray:
        return load_rgb(self.frames[index], min_side=min_side)


def _encode_jpeg(frame: np.ndarray, side: int) -> bytes:
    """JPEG bytes (quality 95) of ``frame``, first shrunk so that its shorter side is ``side`` when larger."""
    from PIL import Image

    if min(frame.shape[:2]) > side:
        frame = resize_shorter(frame, side)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
