"""Training reads video frames through the runtime's readers: display rotation applied, frame folders, resizing."""

from __future__ import annotations

import numpy as np
import pytest

from inference.core.errors import UserError
from styletrain.data.video_frames import VideoFrameSource, read_clip, resize_shorter, sample_frames


def test_rotated_video_frames_are_upright(tmp_path, make_video):
    plain = make_video(tmp_path / "plain.mp4", n_frames=3, size=(96, 64), audio=False)
    rotated = make_video(tmp_path / "rot.mp4", n_frames=3, size=(96, 64), rotation=90, audio=False)
    upright = read_clip(plain)
    turned = read_clip(rotated)
    assert upright[0].shape == (64, 96, 3) and turned[0].shape == (96, 64, 3)  # 90 degrees: width and height swap
    # Same coded pictures: the rotated clip is the plain one turned 90 degrees counter-clockwise.
    assert np.abs(np.rot90(upright[0]).astype(int) - turned[0].astype(int)).mean() < 2
    frames = [frame for _, frame in sample_frames(rotated, stride=2)]
    assert len(frames) == 2 and frames[0].shape == (96, 64, 3)


def test_video_frame_source_keeps_every_stride_th_frame(tmp_path, make_video):
    video = make_video(tmp_path / "clip.mp4", n_frames=10, size=(96, 64), audio=False)
    source = VideoFrameSource([str(video)], stride=3, image_size=32)
    assert len(source) == 4 and [source.key(i) for i in range(2)] == ["clip.mp4#0", "clip.mp4#3"]
    assert source.load(0).shape == (64, 96, 3)  # shorter side 64 <= 256: stored unshrunk
    with pytest.raises(UserError, match="video_frame_stride"):
        VideoFrameSource([str(video)], stride=0, image_size=32)


def test_resize_shorter_keeps_aspect(make_image):
    out = resize_shorter(make_image(60, 90), 30)
    assert out.shape == (30, 45, 3) and out.flags.writeable
