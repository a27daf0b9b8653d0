"""Shared fixtures: every test makes its own media, nothing is downloaded and nothing is read from ``../shared``.

The factories below produce textured, natural-looking synthetic images (multi-scale smooth noise, gradients and
hard-edged shapes, so that convolutions, Gram matrices and optical flow all have something to work with) and short
H.264 clips with a sine-tone AAC audio track, panning over such an image by a known integer number of pixels per
frame, so that the true optical flow of every clip is known exactly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

# Tests never talk to Weights & Biases servers and never prompt for a login.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The one GPU skip idiom: a test marked ``gpu`` is skipped where CUDA is unavailable, one marked
    ``gpu(count=2)`` where fewer than two CUDA devices are visible (no ``skipif`` of its own)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in gpu_tests:
        needed = item.get_closest_marker("gpu").kwargs.get("count", 1)
        if visible < needed:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU" if needed == 1 else f"needs {needed} CUDA GPUs"))


@contextlib.contextmanager
def no_host_sync():
    """For GPU checks of a path that must not make the host wait for the device: any synchronising CUDA call inside
    raises (pageable copies, ``.item()``, ``int()`` of a device tensor...)."""
    import torch

    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


QUICK_TEST_BUDGET_ENV = "STYLETRAIN_QUICK_TEST_BUDGET"
QUICK_TEST_BUDGET_S = 5.0


QUICK_BUDGET_KEY = pytest.StashKey[float]()


def quick_test_budget(environ: dict[str, str]) -> float:
    """The CPU-second budget of an unmarked test's call phase: ``$STYLETRAIN_QUICK_TEST_BUDGET`` or 5; 0 disables."""
    raw = environ.get(QUICK_TEST_BUDGET_ENV, "").strip()
    try:
        return float(raw) if raw else QUICK_TEST_BUDGET_S
    except ValueError:
        message = f"{QUICK_TEST_BUDGET_ENV}={raw!r}: expected a number of CPU seconds (0 disables)"
        raise pytest.UsageError(message) from None


def pytest_configure(config: pytest.Config) -> None:
    """Read the quick budget once per run, so a test that sets the variable does not change its own guard."""
    config.stash[QUICK_BUDGET_KEY] = quick_test_budget(os.environ)
    if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # child processes of a worker keep to its share of the cores too
        os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_test_process(os.environ, os.cpu_count() or 1)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail a test without the ``slow`` marker whose call phase uses more CPU time than the quick budget.

    The budget is CPU time of this process (``time.process_time``), not wall time: on a loaded two-core CI machine
    wall time varies several-fold from run to run, CPU time far less, so the guard does not flake. Every torch
    thread adds to it (two threads busy for 2 s count as 4 s), so the budget is strict for threaded tests. Work
    done in child processes (a CLI run with ``subprocess``, ffmpeg, worker pools, Ray) is not counted; such tests
    must be judged by their wall time (``--durations``) and marked ``slow`` by hand. Fixture setup is not counted.
    """
    start = time.process_time()
    result = yield
    used = time.process_time() - start
    budget = item.config.stash[QUICK_BUDGET_KEY]
    if budget > 0 and used > budget and item.get_closest_marker("slow") is None:
        pytest.fail(
            f"{item.nodeid}: the call took {used:.1f} CPU s, over the quick budget of {budget:g} s; "
            f"make it faster or mark it @pytest.mark.slow (budget: ${QUICK_TEST_BUDGET_ENV}, 0 disables)",
            pytrace=False,
        )
    return result


def run_cli(*args: object) -> int:
    """Run ``stylize-video`` in this process with ``args`` (each passed through ``str``); returns its exit status."""
    from inference.app.cli import main

    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


def count_video_frames(path: Path) -> int:
    """The number of frames decoded from the first video stream of ``path``."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# Small configs of each architecture keep the tests fast while exercising the same code paths.
SMALL_NETWORKS = {
    "johnson": {"channels": (8, 16, 24), "num_residual": 2},
    "light": {"channels": (8, 16, 24), "num_residual": 2},
    "tiny": {},
}


def small_network(name: str, **kwargs: object):
    """A seeded (seed 0) network ``name`` built with its :data:`SMALL_NETWORKS` config plus ``kwargs``."""
    import torch

    from inference.model.networks import build_network

    torch.manual_seed(0)
    return build_network(name, **SMALL_NETWORKS[name], **kwargs)


SMALL_MODULE = {
    "network": "tiny",
    "vgg_weights": "random",
    "style_size": 64,
    "loss": {"style_layers": ["relu1_2", "relu2_2"]},
}


def small_module(style: str | Path | list[str], *, seed: int = 0, **overrides: object):
    """A ``StyleTransferModule`` with :data:`SMALL_MODULE` settings plus ``overrides``, built from plain data the way
    Lightning rebuilds one from a checkpoint, its weights drawn after ``torch.manual_seed(seed)``.

    ``overrides`` are the module's arguments as in a config: a group's changed fields as a dict
    (``loss={"style_weight": 3.0}``, ``temporal={"weight": 1.0}``); the flat names of the layout before the groups
    (``temporal_weight=1.0``) are mapped to their group (:func:`styletrain.module_config.upgrade_hparams`).
    """
    import torch
    from pytorch_lightning.cli import instantiate_module

    from styletrain.module import StyleTransferModule
    from styletrain.module_config import upgrade_hparams

    config = {key: dict(value) if isinstance(value, dict) else value for key, value in SMALL_MODULE.items()}
    for key, value in upgrade_hparams(overrides).items():
        merge = isinstance(value, dict) and isinstance(config.get(key), dict)
        config[key] = config[key] | value if merge else value
    config["style"] = str(style) if isinstance(style, Path) else style
    torch.manual_seed(seed)
    return instantiate_module(StyleTransferModule, config)


def scaled_loss_module(style_path: Path, feature_scale: float = 1.0, **overrides: object):
    """:func:`small_module` in train mode, with every feature map of its loss network multiplied by ``feature_scale``.

    The same loss net at another scale, for tests of which weights keep the balance of the loss terms under it.
    """
    module = small_module(style_path, **overrides)
    if feature_scale != 1.0:
        loss_net = module.perceptual.loss_network
        original = loss_net.forward
        loss_net.forward = lambda x: {k: feature_scale * v for k, v in original(x).items()}
    return module.train()


# Luma weights (Kr, Kb) of ITU-R BT.601, BT.709 and BT.2020, from the recommendations themselves.
ITU_LUMA_WEIGHTS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


def yuv8_to_rgb_reference(matrix: str, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """The reference the colour tests check against, written from the ITU equations and not from the library.

    Returns:
        ``(A [3, 3], b [3])`` float64 with ``rgb = A @ (Y, Cb, Cr) + b`` for 8-bit samples and RGB in [0, 1]
        (unclamped): ``R = Y' + 2(1 - Kr) Pr``, ``B = Y' + 2(1 - Kb) Pb``, ``G = (Y' - Kr R - Kb B) / Kg``, with
        ``Y' = (Y - 16) / 219`` and ``P = (C - 128) / 224`` for limited range, ``/ 255`` and no 16 for full range.
    """
    kr, kb = ITU_LUMA_WEIGHTS[matrix]
    kg = 1.0 - kr - kb
    y_off, y_span, c_span = (0.0, 255.0, 255.0) if full_range else (16.0, 219.0, 224.0)
    to_rgb = np.array(
        [[1.0, 0.0, 2 * (1 - kr)], [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg], [1.0, 2 * (1 - kb), 0.0]]
    )
    a = to_rgb / np.array([y_span, c_span, c_span])
    return a, -(a @ np.array([y_off, 128.0, 128.0]))


def two_style_artifact(path: Path, network: str = "tiny", names: tuple[str, str] = ("dots", "waves")) -> Path:
    """Write a two-style ``network`` artifact at ``path`` whose styles differ clearly, and return ``path``.

    A fresh network's conditional norms are the same for every style (a trained one's are not): here each style's
    scales and shifts are drawn from a seeded generator instead, so outputs of the two styles differ by tens of levels.
    The artifact is saved once per process and copied, so its sha256 (the ONNX export cache's key) is the same in
    every test (see :func:`model_bytes`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(two_style_artifact_bytes(network, tuple(names)))
    return path


def artifact_bytes(net, **metadata: object) -> bytes:
    """The bytes :func:`inference.model.artifact.save_artifact` writes for ``net`` with ``metadata`` (its keyword
    arguments), saved through a temporary folder."""
    import tempfile

    from inference.model.artifact import save_artifact

    with tempfile.TemporaryDirectory() as folder:
        return save_artifact(Path(folder) / "a.safetensors", net, **metadata).read_bytes()


@functools.cache
def two_style_artifact_bytes(network: str, names: tuple[str, str]) -> bytes:
    """The bytes of :func:`two_style_artifact`'s artifact, saved once per process for each network and names."""
    import torch

    from inference.model.networks import build_network

    torch.manual_seed(0)
    net = distinct_styles(build_network(network, num_styles=2))
    styles = [(name, str(i + 1) * 64) for i, name in enumerate(names)]
    return artifact_bytes(net, styles=styles, config={}, temporal=False)


def distinct_styles(net):
    """Give every style of ``net`` deliberately different norm scales and shifts (training would; initialisation
    does not), drawn from a generator seeded with 1; returns ``net`` in eval mode."""
    import torch

    from inference.model.layers import ConditionalInstanceNorm2d

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.weight.copy_(1 + 0.8 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.8 * torch.randn(m.bias.shape, generator=gen))
    return net.eval()


def printed_config(capsys, *args: str) -> dict:
    """The config ``styletrain <args> --print_config`` prints, parsed (the command must exit cleanly)."""
    import yaml

    from styletrain.cli import main

    with pytest.raises(SystemExit) as info:
        main([*args, "--print_config"])
    out = capsys.readouterr()
    assert info.value.code in (0, None), out.err
    return yaml.safe_load(out.out)


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic synthetic photo-like image.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Random seed; the same seed gives the same image.

    Returns:
        ``uint8`` array of shape ``[height, width, 3]`` with values in [0, 255].
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    # Smooth noise at several scales: bilinear upsampling of small random grids.
    for cells, amp in ((3, 0.5), (8, 0.25), (24, 0.12), (64, 0.06)):
        gh, gw = max(2, cells * height // max(height, width) + 2), max(2, cells * width // max(height, width) + 2)
        grid = rng.random((gh, gw, 3), dtype=np.float32)
        ys = np.linspace(0, gh - 1, height, dtype=np.float32)
        xs = np.linspace(0, gw - 1, width, dtype=np.float32)
        y0, x0 = np.floor(ys).astype(int).clip(0, gh - 2), np.floor(xs).astype(int).clip(0, gw - 2)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
        bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
        img += amp * (top * (1 - fy) + bottom * fy)
    img /= 0.93
    # Hard-edged shapes give strong gradients, like object boundaries in photos.
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(6):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = rng.integers(max(2, min(height, width) // 12), max(3, min(height, width) // 4))
        color = rng.random(3, dtype=np.float32)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        else:
            inside = (abs(yy - cy) < r) & (abs(xx - cx) < r * 0.7)
        img[inside] = 0.4 * img[inside] + 0.6 * color
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(autouse=True, scope="session")
def _private_onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's ONNX export cache (inference.engine.onnx_backend.cache_dir)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("STYLETRAIN_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
    yield
    patch.undo()


@pytest.fixture
def make_image() -> Callable[..., np.ndarray]:
    """Factory ``make_image(h, w, seed=0) -> uint8 [h, w, 3]``."""
    return textured_image


def write_image_folder(directory: Path, n: int, size: tuple[int, int] = (96, 128), ext: str = "png") -> Path:
    """Write ``n`` synthetic images of ``size`` (h, w) into ``directory`` (created) and return it."""
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(textured_image(size[0], size[1], seed=1000 + i)).save(directory / f"img_{i:03d}.{ext}")
    return directory


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    """A small textured style image (80x96 PNG) for module-level training tests."""
    from PIL import Image

    path = tmp_path / "style.png"
    Image.fromarray(textured_image(80, 96, seed=5)).save(path)
    return path


@pytest.fixture
def content():
    """Two textured content images as a float ``[2, 3, 48, 48]`` batch in [0, 1]."""
    import torch

    images = [torch.from_numpy(textured_image(48, 48, seed=s)).permute(2, 0, 1) for s in range(2)]
    return torch.stack(images).float() / 255


@functools.cache
def model_bytes() -> bytes:
    """The bytes of one ``tiny`` artifact with fixed weights (seed 0), saved once per process.

    Saving the same network twice gives different bytes (safetensors writes the metadata keys in no fixed order), so
    every test's copy of these bytes has one sha256: ONNX Runtime's export cache, keyed by it, then serves every
    test after the first, as it serves a user's second run with an artifact.
    """
    import torch

    from inference.model.networks import build_network

    torch.manual_seed(0)
    return artifact_bytes(build_network("tiny"), style_name="s", style_sha256="0" * 64, config={}, temporal=False)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A ``tiny`` network's artifact with fixed weights (seed 0) at ``tmp_path / "m.safetensors"``: what
    ``stylize-video -m`` takes (a fresh copy per test, see :func:`model_bytes`)."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(model_bytes())
    return path


@pytest.fixture
def make_image_folder() -> Callable[..., Path]:
    """Factory ``make_image_folder(directory, n, size=(h, w), ext="png") -> Path``."""
    return write_image_folder


def clip_frames(
    n: int, size: tuple[int, int] = (64, 96), shift: tuple[int, int] = (2, 1), seed: int = 0
) -> list[np.ndarray]:
    """Frames of a camera panning over a larger textured image by an exact integer shift per frame.

    Frame ``t`` shows the window whose top-left corner is at ``(t * dy, t * dx)``, so the content moves by
    ``(-dx, -dy)`` pixels per frame: ``frame[t](y, x) == frame[t + 1](y - dy, x - dx)``. The optical flow from
    frame t to t+1 is therefore exactly ``(u, v) = (-dx, -dy)`` wherever the pixel stays in view.

    Args:
        n: Number of frames.
        size: ``(height, width)`` of each frame.
        shift: ``(dx, dy)`` camera motion in whole pixels per frame (non-negative).
        seed: Seed of the underlying image.

    Returns:
        ``n`` arrays, ``uint8 [height, width, 3]``.
    """
    h, w = size
    dx, dy = shift
    canvas = textured_image(h + dy * n + 1, w + dx * n + 1, seed=seed)
    return [np.ascontiguousarray(canvas[t * dy : t * dy + h, t * dx : t * dx + w]) for t in range(n)]


@pytest.fixture
def make_clip_frames() -> Callable[..., list[np.ndarray]]:
    """Factory ``make_clip_frames(n, size=(h, w), shift=(dx, dy), seed=0) -> list of uint8 [h, w, 3]``."""
    return clip_frames


def write_video(
    path: Path,
    n_frames: int = 24,
    size: tuple[int, int] = (96, 64),
    fps: Fraction | int = Fraction(24),
    audio: bool = True,
    rotation: int = 0,
    pattern: str = "pan",
    codec: str = "libx264",
    sample_rate: int = 44100,
) -> Path:
    """Write a short test clip with PyAV.

    Args:
        path: Output file (the container follows the extension: .mp4, .mkv, .mov, .webm...).
        n_frames: Number of video frames.
        size: ``(width, height)``; H.264 with yuv420p needs even values.
        fps: Frame rate, e.g. ``Fraction(30000, 1001)``.
        audio: Add a 440 Hz sine tone AAC track (Opus for .webm) lasting as long as the video.
        rotation: Display rotation in degrees (0, 90, 180, 270), stored as a display matrix.
        pattern: ``"pan"`` (camera pans 2 px right and 1 px down per frame, see :func:`clip_frames`) or
            ``"flicker"`` (same pan with random per-frame brightness).
        codec: Video encoder name.
        sample_rate: Audio sample rate in Hz.

    Returns:
        ``path``.
    """
    import av

    path = Path(path)
    fps = Fraction(fps)
    width, height = size
    frames = clip_frames(n_frames, size=(height, width), shift=(2, 1))
    if pattern == "flicker":
        rng = np.random.default_rng(1)
        frames = [(f.astype(np.float32) * rng.uniform(0.8, 1.2)).clip(0, 255).astype(np.uint8) for f in frames]
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(codec, rate=fps)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "18"} if codec == "libx264" else {}
        if rotation:
            # Display-matrix side data, read back as ``VideoFrame.rotation`` (counter-clockwise degrees).
            vstream.set_display_rotation(rotation)
        astream = None
        if audio:
            acodec = "libopus" if path.suffix == ".webm" else "aac"
            arate = 48000 if acodec == "libopus" else sample_rate
            astream = container.add_stream(acodec, rate=arate)
            astream.layout = "stereo" if acodec == "libopus" else "mono"
        for frame_array in frames:
            frame = av.VideoFrame.from_ndarray(frame_array, format="rgb24")
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            total = int(round(float(n_frames / fps) * astream.rate))
            chunk = 1024
            t = np.arange(total, dtype=np.float32) / astream.rate
            tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            channels = 2 if astream.layout.name == "stereo" else 1
            pts = 0
            for start in range(0, total, chunk):
                samples = np.tile(tone[start : start + chunk][None, :], (channels, 1))
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=astream.layout.name)
                frame.sample_rate = astream.rate
                frame.pts = pts
                pts += samples.shape[1]
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def write_vfr_video(
    path: Path,
    ticks: list[int],
    *,
    gop: int = 8,
    size: tuple[int, int] = (96, 64),
    audio: bool = True,
    rotation: int = 0,
) -> Path:
    """Write a variable-frame-rate H.264 clip (panning like :func:`write_video`) with an AAC tone as long as it.

    Args:
        path: Output file (.mp4, .mkv, .mov).
        ticks: Every frame's timestamp in 1/24 s units, rising, gaps allowed (e.g. ``[0, 1, 2, 4, 7]``).
        gop: A keyframe every ``gop`` frames (the cut points a split prefers).
        size: ``(width, height)``, even.
        audio: Add the tone.
        rotation: Display rotation in degrees.

    Returns:
        ``path``.
    """
    import av

    path = Path(path)
    width, height = size
    frames = clip_frames(len(ticks), size=(height, width), shift=(2, 1))
    tb = Fraction(1, 24)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream("libx264", rate=24)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.time_base = vstream.codec_context.time_base = tb
        vstream.options = {"crf": "18", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if rotation:
            vstream.set_display_rotation(rotation)
        astream = container.add_stream("aac", rate=44100) if audio else None
        if astream is not None:
            astream.layout = "mono"
        for tick, array in zip(ticks, frames, strict=True):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = tick, tb
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode())
        if astream is not None:
            total = int(round((ticks[-1] + 1) / 24 * astream.rate))
            t = np.arange(total, dtype=np.float32) / astream.rate
            tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for start in range(0, total, 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = astream.rate, start
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


@pytest.fixture(scope="session")
def encoded_videos(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """:func:`write_video` once per distinct clip in a session: ``encoded_videos(suffix, **kwargs) -> Path`` of a
    shared, read-only original (encoding is deterministic, so a copy of it equals a fresh encoding)."""
    folder = tmp_path_factory.mktemp("videos")
    written: dict[tuple, Path] = {}

    def encoded(suffix: str, **kwargs: object) -> Path:
        key = (suffix, *sorted(kwargs.items()))
        if key not in written:
            path = write_video(folder / f"clip{len(written)}{suffix}", **kwargs)
            path.chmod(0o444)
            written[key] = path
        return written[key]

    return encoded


@pytest.fixture
def make_video(encoded_videos: Callable[..., Path]) -> Callable[..., Path]:
    """Factory ``make_video(path, n_frames=24, size=(w, h), fps=Fraction(24), audio=True, rotation=0, ...) -> Path``:
    a fresh, writable copy at ``path`` of the clip :func:`write_video` makes with these arguments."""

    def make(path: Path, **kwargs: object) -> Path:
        path = Path(path)
        path.write_bytes(encoded_videos(path.suffix, **kwargs).read_bytes())
        return path

    return make


def threads_per_test_process(environ: dict[str, str], cores: int) -> int:
    """Torch threads for one test process: at most two, and the cores shared out among pytest-xdist's workers
    (``$PYTEST_XDIST_WORKER_COUNT``), so ``-n 2`` on two cores runs two single-threaded workers, not four threads."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, min(2, cores // max(1, workers)))


@pytest.fixture(autouse=True)
def _limit_threads():
    """Keep each test to its share of the machine's cores and make results reproducible across runs."""
    import torch

    torch.set_num_threads(threads_per_test_process(os.environ, os.cpu_count() or 1))
    yield


@pytest.fixture
def unbound():
    """Leave no worker binding behind: media GPU bound in a throwaway context, and this process back to "not a pool
    worker" (all host threads) before and after the test."""
    import contextvars

    from inference.core import devices

    context = contextvars.copy_context()
    context.run(devices.bind_worker, "cpu", None)
    yield context
    context.run(devices.bind_worker, "cpu", None)


def fake_hwaccel_opens(monkeypatch: pytest.MonkeyPatch, decode_on_hw: bool) -> list:
    """Pretend FFmpeg was built with CUDA; record the ``HWAccel`` of every ``av.open`` that asks for one, which then
    fails as NVDEC does without a GPU (``decode_on_hw`` False) or opens the file without it (a silent software
    fallback, ``decode_on_hw`` True)."""
    import av
    from av.codec import hwaccel

    asked: list = []
    real_open = av.open

    def open_(*args, hwaccel=None, **kwargs):
        if hwaccel is not None:
            asked.append(hwaccel)
            if not decode_on_hw:
                raise RuntimeError("Hardware accelerated decode requested but no stream is compatible")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(hwaccel, "hwdevices_available", lambda: ["cuda"])
    monkeypatch.setattr(av, "open", open_)
    return asked
