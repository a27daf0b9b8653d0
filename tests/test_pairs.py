"""Real video pairs: frames, flow, masks, crops and the flow cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.core.errors import UserError
from inference.engine.flow import warp
from styletrain.data.pairs import VideoPairDataset
from styletrain.data.video_frames import read_clip
from styletrain.temporal import flow as flow_mod


def _folder(tmp_path: Path, frames: list[np.ndarray]) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"frame_{i + 1}.png")  # natural order: frame_10 after frame_9
    return d


def test_folder_pairs_have_correct_flow_and_mask(tmp_path, make_clip_frames):
    d = _folder(tmp_path, make_clip_frames(4, size=(64, 96), shift=(2, 1)))
    ds = VideoPairDataset([str(d)], image_size=64, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {"frame1", "frame2", "flow", "mask"}
    assert (
        item["frame1"].shape == (3, 64, 64) and item["flow"].shape == (2, 64, 64) and item["mask"].shape == (1, 64, 64)
    )
    assert all(v.dtype == torch.float32 for v in item.values())
    assert 0 <= item["frame1"].min() and item["frame1"].max() <= 1
    m = item["mask"][0] > 0.5
    assert m.float().mean() > 0.7
    # The pan moves content by (-2, -1) px per frame; DIS finds it inside the mask.
    assert torch.allclose(item["flow"][0][m].median(), torch.tensor(-2.0), atol=0.1)
    assert torch.allclose(item["flow"][1][m].median(), torch.tensor(-1.0), atol=0.1)
    err = (warp(item["frame2"][None], item["flow"][None]) - item["frame1"][None]).abs()[0].mean(0)
    assert err[m].mean() < 0.01


def test_resize_scales_flow_and_gaps(tmp_path, make_clip_frames):
    d = _folder(tmp_path, make_clip_frames(5, size=(64, 96), shift=(4, 2)))
    ds = VideoPairDataset([str(d)], image_size=32, max_gap=2, seed=3)
    assert len(ds) == 4 + 3
    one, two = ds[0], ds[4]  # gap 1 and gap 2 (index lists gap-1 pairs first)
    m1, m2 = one["mask"][0] > 0.5, two["mask"][0] > 0.5
    # Resizing 64 -> 32 halves the flow: (-2, -1) per frame, (-4, -2) over two frames.
    assert abs(one["flow"][0][m1].median() + 2.0) < 0.25 and abs(two["flow"][0][m2].median() + 4.0) < 0.4
    assert torch.equal(ds[2]["frame1"], ds[2]["frame1"])  # deterministic crops
    ds.set_epoch(1)
    crops = {tuple(ds[i]["frame1"].flatten()[:5].tolist()) for i in range(len(ds))}
    assert len(crops) > 1


def test_flow_cache_is_reused(tmp_path, make_clip_frames, monkeypatch):
    calls = {"n": 0}
    original = flow_mod.ESTIMATORS["dis"]

    def counting(a, b):
        calls["n"] += 1
        return original(a, b)

    monkeypatch.setitem(flow_mod.ESTIMATORS, "dis", counting)
    d = _folder(tmp_path, make_clip_frames(3, size=(48, 64), shift=(2, 1)))
    cache = tmp_path / "cache"
    first = VideoPairDataset([str(d)], image_size=48, cache_dir=str(cache))
    items = [first[i] for i in range(len(first))]
    assert calls["n"] == 4  # two pairs, forward and backward
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 4 and all(np.load(f).dtype == np.float16 for f in files)
    assert not list(cache.glob(".tmp-*"))
    second = VideoPairDataset([str(d)], image_size=48, cache_dir=str(cache))  # "the next run"
    again = [second[i] for i in range(len(second))]
    assert calls["n"] == 4 and second.cache.hits == 4
    for x, y in zip(items, again, strict=True):
        assert torch.allclose(x["flow"], y["flow"], atol=0.02)


def test_video_source(tmp_path, make_video):
    path = make_video(tmp_path / "pan.mp4", n_frames=6, size=(96, 64))
    assert len(read_clip(path, max_frames=4)) == 4
    ds = VideoPairDataset([str(path)], image_size=64)
    assert len(ds) == 5
    item = ds[0]
    m = item["mask"][0] > 0.5
    assert abs(item["flow"][0][m].median() + 2.0) < 0.3 and abs(item["flow"][1][m].median() + 1.0) < 0.3


def test_bad_sources(tmp_path, make_image):
    with pytest.raises(UserError, match="no such file"):
        VideoPairDataset([str(tmp_path / "missing.mp4")])
    img = tmp_path / "still.png"
    Image.fromarray(make_image(32, 32)).save(img)
    with pytest.raises(UserError, match="single image"):
        VideoPairDataset([str(img)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="at least 2 frames"):
        VideoPairDataset([str(empty)])
    with pytest.raises(UserError, match="unknown flow method"):
        VideoPairDataset([str(empty)], flow_method="horn_schunck")
