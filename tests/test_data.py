"""StyleDataModule: folders, Hugging Face imagefolder, video frames, the fixed validation set, skipping, mixing."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from inference.core.errors import UserError
from styletrain.data.module import StyleDataModule
from styletrain.data.stills import MixedBatches, SkipTracker


def _batches(loader, n=None):
    out = []
    for i, batch in enumerate(loader):
        if n is not None and i >= n:
            break
        out.append(batch)
    return out


def _check_batch(batch, size, max_batch):
    assert set(batch) == {"content"}
    x = batch["content"]
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1:] == (3, size, size) and x.shape[0] <= max_batch
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0


@pytest.fixture
def mixed_folder(tmp_path, make_image):
    """9 readable images in nested folders with 5 formats, one corrupt .jpg and one text file."""
    root = tmp_path / "photos"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    specs = [("a/1.jpg", (70, 90)), ("a/2.png", (64, 64)), ("a/deep/3.bmp", (80, 50)), ("b/4.webp", (66, 99))]
    specs += [("b/5.tif", (72, 72)), ("6.JPEG", (90, 70)), ("7.png", (64, 100)), ("b/8.jpg", (100, 64))]
    specs += [("a/deep/9.png", (65, 65))]
    for i, (name, (h, w)) in enumerate(specs):
        Image.fromarray(make_image(h, w, seed=i)).save(root / name)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("num_workers", [0, 2])
def test_folder_recursive_mixed_formats_skips_and_counts_bad_files(mixed_folder, num_workers):
    dm = StyleDataModule(path=str(mixed_folder), image_size=32, batch_size=3, num_workers=num_workers, val_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 10  # the 9 images and the broken one; the .txt is ignored
    assert "1 non-image files ignored" in dm.describe()
    train, val = _batches(dm.train_dataloader()), _batches(dm.val_dataloader())
    assert len(train) == 8 // 3 and sum(b["content"].shape[0] for b in val) == 2
    for batch in train + val:
        _check_batch(batch, 32, 3)
    assert dm.skipped_images == 1  # counted once, across worker processes
    _batches(dm.train_dataloader())  # a second epoch finds nothing new
    assert dm.skipped_images == 1
    assert "skipped unreadable images: 1" in repr(dm)


def test_validation_set_is_fixed_disjoint_and_centre_cropped(mixed_folder):
    def build(seed):
        dm = StyleDataModule(path=str(mixed_folder), image_size=32, batch_size=2, num_workers=0, val_size=3, seed=seed)
        dm.setup("fit")
        return dm

    a, b = build(0), build(5)
    assert a.val_set.items == b.val_set.items and len(a.val_set) == 3
    assert not set(a.val_set.items) & set(a.train_set.items)
    va, vb = _batches(a.val_dataloader()), _batches(b.val_dataloader())
    for x, y in zip(va, vb, strict=True):
        assert torch.equal(x["content"], y["content"])
    assert torch.equal(_batches(a.val_dataloader())[0]["content"], va[0]["content"])  # same every time


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_batches_are_deterministic_under_seed(mixed_folder, num_workers):
    def first_batches(seed):
        dm = StyleDataModule(path=str(mixed_folder), image_size=32, batch_size=2, num_workers=num_workers, seed=seed)
        dm.setup("fit")
        return [b["content"] for b in _batches(dm.train_dataloader(), 3)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_max_images_and_small_datasets(mixed_folder, caplog):
    dm = StyleDataModule(path=str(mixed_folder), image_size=32, num_workers=0, val_size=8, max_images=4)
    dm.setup("fit")
    assert len(dm.train_set) == 1 and len(dm.val_set) == 3  # always at least one training image
    assert "validating on 3" in caplog.text


@pytest.mark.slow  # a second process or a real-time wait: over a second; the quick part stays under a minute
def test_hf_imagefolder_on_a_local_folder(tmp_path, make_image_folder, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = make_image_folder(tmp_path / "imgs", 7, size=(48, 64))
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dm = StyleDataModule(hf_dataset="imagefolder", hf_data_dir=str(folder), image_size=32, batch_size=2, val_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 8
    batches = _batches(dm.train_dataloader()) + _batches(dm.val_dataloader())
    for batch in batches:
        _check_batch(batch, 32, 2)
    assert dm.skipped_images == 1
    assert "imagefolder" in dm.describe()


def test_hf_streaming_imagefolder(tmp_path, make_image_folder, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = make_image_folder(tmp_path / "imgs", 6, size=(40, 40))
    kwargs = {"hf_dataset": "imagefolder", "hf_data_dir": str(folder), "streaming": True, "image_size": 32}
    dm = StyleDataModule(**kwargs, batch_size=2, num_workers=0, val_size=2)
    dm.setup("fit")
    assert len(dm.val_set) == 2
    train = _batches(dm.train_dataloader())
    assert sum(b["content"].shape[0] for b in train) == 4  # the other 4 rows
    for batch in train:
        _check_batch(batch, 32, 2)


def test_hf_errors_are_one_line_with_the_offline_option(tmp_path, monkeypatch, make_image_folder):
    import datasets

    def offline(**kwargs):
        raise ConnectionError("Couldn't reach 'someone/coco' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    dm = StyleDataModule(hf_dataset="someone/coco")
    with pytest.raises(UserError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "someone/coco" in message and "`path` DIR" in message and "`hf_dataset` imagefolder" in message
    assert "\n" not in message
    monkeypatch.undo()

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = make_image_folder(tmp_path / "imgs", 3)
    dm = StyleDataModule(hf_dataset="imagefolder", hf_data_dir=str(folder), hf_image_column="picture")
    with pytest.raises(UserError, match="has no column 'picture'; columns: image"):
        dm.setup("fit")
    with pytest.raises(UserError, match="needs `hf_data_dir`"):
        StyleDataModule(hf_dataset="imagefolder").setup("fit")


def test_frames_sampled_from_a_video(tmp_path, make_video):
    video = make_video(tmp_path / "clip.mp4", n_frames=24, size=(96, 64), audio=False)
    dm = StyleDataModule(videos=[str(video)], video_frame_stride=5, image_size=48, batch_size=2, val_size=1)
    dm.setup("fit")
    assert len(dm.sources[0]) == 5 and dm.sources[0].keys == [f"clip.mp4#{i}" for i in (0, 5, 10, 15, 20)]
    for batch in _batches(dm.train_dataloader()) + _batches(dm.val_dataloader()):
        _check_batch(batch, 48, 2)
    with pytest.raises(UserError, match="video not found"):
        StyleDataModule(videos=[str(tmp_path / "nope.mp4")]).setup("fit")
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(UserError, match="cannot decode video"):
        StyleDataModule(videos=[str(tmp_path / "bad.mp4")]).setup("fit")


def test_missing_empty_and_absent_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        StyleDataModule(path=str(tmp_path / "missing")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images in"):
        StyleDataModule(path=str(tmp_path / "empty")).setup("fit")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="no images in .*1 other files ignored"):
        StyleDataModule(path=str(tmp_path / "texts")).setup("fit")
    with pytest.raises(UserError, match="no content images"):
        StyleDataModule().setup("fit")
    with pytest.raises(UserError, match="video_pair_ratio must be in"):
        StyleDataModule(path="x", video_pairs=["v.mp4"], video_pair_ratio=1.5)
    with pytest.raises(UserError, match="needs `video_pairs`"):
        StyleDataModule(path="x", video_pair_ratio=0.5)


class _StubPairs(torch.utils.data.Dataset):
    """Stands in for styletrain.data.pairs.VideoPairDataset (same constructor keywords)."""

    def __init__(self, sources, image_size=256, flow_method="dis", cache_dir=None, seed=0, **kwargs):
        self.size, self.epochs = image_size, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return 5

    def __getitem__(self, i):
        s = self.size
        return {
            "frame1": torch.rand(3, s, s),
            "frame2": torch.rand(3, s, s),
            "flow": torch.zeros(2, s, s),
            "mask": torch.ones(1, s, s),
        }


def test_video_pair_mixing_gives_both_kinds_of_batches(mixed_folder, monkeypatch):
    import styletrain.data.pairs

    monkeypatch.setattr(styletrain.data.pairs, "VideoPairDataset", _StubPairs)

    def kinds(seed):
        dm = StyleDataModule(
            path=str(mixed_folder), video_pairs=["clip.mp4"], video_pair_ratio=0.5, image_size=32, batch_size=2,
            num_workers=0, val_size=1, seed=seed,
        )  # fmt: skip
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert isinstance(loader, MixedBatches) and len(loader) == 4  # 9 training items // batch 2
        epochs = [[("pair" if "frame1" in b else "still") for b in loader] for _ in range(5)]
        for batch in loader:
            if "frame1" in batch:
                assert batch["frame1"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)
            else:
                _check_batch(batch, 32, 2)
        assert dm.pair_set.epochs[:2] == [0, 1]
        return [k for epoch in epochs for k in epoch]

    sequence = kinds(0)
    assert len(sequence) == 20 and 4 <= sequence.count("pair") <= 16
    assert kinds(0) == sequence  # deterministic under the seed


def test_skip_tracker_snapshot_when_pickled():
    import pickle

    tracker = SkipTracker(4)
    assert tracker.mark(2) and not tracker.mark(2)
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy.count == 1 and copy.is_bad(2) and not copy.is_bad(1)
    assert copy.mark(1) and copy.count == 2 and tracker.count == 1


def test_raft_flow_loaders_spawn_their_workers(tmp_path, make_image_folder, make_video):
    from styletrain.data.module import StyleDataModule, worker_context

    assert worker_context("raft", 2) == "spawn" and worker_context("raft_small", 1) == "spawn"
    assert worker_context("dis", 2) is None and worker_context("raft", 0) is None
    clip = make_video(tmp_path / "pairs.mp4", n_frames=4, audio=False)
    dm = StyleDataModule(
        path=str(make_image_folder(tmp_path / "img", 4)), video_pairs=[str(clip)], video_pair_ratio=0.5,
        flow_method="raft", num_workers=1, val_size=1,
    )  # fmt: skip
    mixed = dm.train_dataloader()  # no flow is estimated (and no worker started) until the loaders are iterated
    assert mixed.pairs.multiprocessing_context is not None
    assert mixed.pairs.multiprocessing_context.get_start_method() == "spawn"
    assert mixed.still.multiprocessing_context is None and dm.val_dataloader().multiprocessing_context is None
