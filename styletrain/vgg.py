"""The frozen VGG loss network: construction, layer names and weight loading.

The loss network is torchvision's VGG16 (or VGG19) ``features`` stack, truncated after the deepest layer a loss
needs. Its weights come from one of three places, chosen by ``vgg_weights`` (a field of the training module;
errors name the field, and the command line writes it as its flag):

* ``"imagenet"`` (default): torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (``VGG19_Weights.IMAGENET1K_V1``),
  downloaded once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``). When the download fails the run
  stops with one line naming the two offline options below. There is never a silent fallback.
* a local file: a torchvision state_dict of the whole model (``features.0.weight``, ..., ``classifier.*``) or of
  its ``.features`` (``0.weight``, ...), as ``.pth`` (loaded with ``weights_only=True``: no code runs) or
  ``.safetensors``. Keys and shapes are checked strictly against the chosen architecture.
* ``"random"``: deterministic random features (Kaiming init from a seeded generator), for tests and dry runs
  only. The losses are then meaningless as perceptual losses, so the run says so loudly.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from inference.core.errors import OptionError, UserError
from inference.model.artifact import state_dict_mismatch

log = logging.getLogger(__name__)

# Convolutions per block (torchvision cfg "D" for VGG16 and "E" for VGG19); channels per block are shared.
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_CHANNELS = (64, 128, 256, 512, 512)

# ImageNet statistics the torchvision VGG weights were trained with (RGB, inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def relu_indices(arch: str) -> dict[str, int]:
    """Map ``reluX_Y`` names to indices in torchvision's ``vgg*.features`` for ``arch``.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.

    Returns:
        Ordered dict, e.g. for VGG16 ``{"relu1_1": 1, "relu1_2": 3, "relu2_1": 6, ..., "relu5_3": 29}``.
    """
    if arch not in _BLOCKS:
        raise UserError(f"unknown loss network '{arch}'; available: {', '.join(_BLOCKS)}")
    names: dict[str, int] = {}
    index = 0
    for block, n_convs in enumerate(_BLOCKS[arch], start=1):
        for conv in range(1, n_convs + 1):
            names[f"relu{block}_{conv}"] = index + 1  # conv at `index`, its ReLU right after
            index += 2
        index += 1  # max-pool closing the block
    return names


def build_features(arch: str, depth: int | None = None) -> nn.Sequential:
    """Build the (uninitialised) ``features`` stack of ``arch`` with torchvision's module indices.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        depth: Keep only the first ``depth`` modules (``None``: all).

    Returns:
        ``nn.Sequential`` whose state_dict keys match ``torchvision.models.<arch>().features``.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for n_convs, out_ch in zip(_BLOCKS[arch], _CHANNELS, strict=True):
        for _ in range(n_convs):
            # Not in-place: the activations we return must not be overwritten by a later layer.
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = out_ch
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers[:depth])


def feature_keys(arch: str) -> dict[str, tuple[int, ...]]:
    """Expected state_dict keys and shapes of the full ``features`` stack of ``arch``."""
    return {k: tuple(v.shape) for k, v in build_features(arch).to("meta").state_dict().items()}


def random_init_(features: nn.Sequential, seed: int = 0) -> None:
    """Initialise ``features`` in place like torchvision does (Kaiming, fan-out), from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            nn.init.zeros_(module.bias)


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_weights(arch: str):
    from torchvision.models import VGG16_Weights, VGG19_Weights

    return {"vgg16": VGG16_Weights.IMAGENET1K_V1, "vgg19": VGG19_Weights.IMAGENET1K_V1}[arch]


def download_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """Fetch torchvision's ImageNet state_dict for ``arch`` (from the hub cache, downloading it once).

    Kept as a separate function so tests can replace it to simulate an offline machine.
    """
    return _imagenet_weights(arch).get_state_dict(progress=True, check_hash=True)


# How long a failed download stops further attempts (in this and later processes): an offline machine would
# otherwise wait for a network timeout on every run.
RETRY_AFTER_S = 3600.0


def _unreachable_marker(arch: str) -> Path:
    return _hub_checkpoint_dir() / f".{Path(_imagenet_weights(arch).url).name}.unreachable"


def _recent_failure(arch: str) -> str | None:
    """The recorded reason of a download failure less than :data:`RETRY_AFTER_S` old, else None."""
    marker = _unreachable_marker(arch)
    try:
        if time.time() - marker.stat().st_mtime < RETRY_AFTER_S:
            return marker.read_text().strip() or "download failed"
    except OSError:
        pass
    return None


def _record_failure(arch: str, reason: str) -> None:
    try:
        _unreachable_marker(arch).parent.mkdir(parents=True, exist_ok=True)
        _unreachable_marker(arch).write_text(reason + "\n")
    except OSError:
        pass  # a read-only cache: the next run simply tries again


def _offline_error(arch: str, reason: str) -> OptionError:
    filename = Path(_imagenet_weights(arch).url).name
    return OptionError(
        "vgg_weights",
        f"imagenet: could not get the ImageNet {arch.upper()} loss-network weights ({reason}); "
        f"offline options: `vgg_weights` /path/to/{filename} (a torchvision state_dict, .pth or "
        f".safetensors; or put that file in {_hub_checkpoint_dir()}/), or `vgg_weights` random "
        "(tests and dry runs only: meaningless perceptual losses)",
        mentions=("vgg_weights",),
    )


def load_imagenet_features(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet ``features`` weights for ``arch``; a failed download becomes a one-line :class:`OptionError`
    naming ``vgg_weights``.

    The torch hub cache is used when it holds the file (no network access). Otherwise one download is tried, with a
    progress line first; after a failure no further attempt is made for :data:`RETRY_AFTER_S` seconds (a marker
    beside the cache), so offline machines fail at once instead of waiting for a network timeout on every run.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
    """
    filename = Path(_imagenet_weights(arch).url).name
    if not (_hub_checkpoint_dir() / filename).is_file():
        if (reason := _recent_failure(arch)) is not None:
            raise _offline_error(arch, f"{reason}; not retried for {RETRY_AFTER_S / 60:.0f} min")
        print(f"downloading the ImageNet {arch.upper()} loss-network weights into {_hub_checkpoint_dir()}/ (once)",
              file=sys.stderr, flush=True)  # fmt: skip
    try:
        state = download_imagenet_state_dict(arch)
    except Exception as exc:  # URLError, OSError, hash mismatch...: all mean "no usable weights here"
        reason = f"{type(exc).__name__}: {exc}"
        _record_failure(arch, reason)
        raise _offline_error(arch, reason) from exc
    return _select_feature_keys(state, arch, source=f"torchvision {arch} ImageNet weights")


def load_features_file(path: str | Path, arch: str) -> dict[str, torch.Tensor]:
    """Read a local VGG state_dict (whole model or ``.features``; ``.pth`` or ``.safetensors``) strictly."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OptionError(
            "vgg_weights",
            f"{path}: VGG weights file not found (takes 'imagenet', 'random' or a path to a torchvision {arch} "
            "state_dict)",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # weights_only: a tampered pickle cannot run code here.
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read VGG weights file {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"VGG weights file {path} does not hold a state_dict of tensors")
    return _select_feature_keys(state, arch, source=str(path))


def _select_feature_keys(state: dict[str, torch.Tensor], arch: str, source: str) -> dict[str, torch.Tensor]:
    """Return the ``features`` part of ``state`` with unprefixed keys, checking names and shapes strictly."""
    if any(k.startswith("features.") for k in state):
        # A whole-model state_dict: the classifier is legitimately present and unused.
        stray = [k for k in state if not k.startswith(("features.", "classifier."))]
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    else:
        stray, feats = [], dict(state)
    mismatch = state_dict_mismatch(feature_keys(arch), feats | dict.fromkeys(stray), sort_key=_key_order)
    if mismatch:
        raise UserError(f"{source} is not a torchvision {arch} state_dict: {mismatch}")
    return {k: v.float() for k, v in feats.items()}


def _key_order(key: str) -> tuple[int, str]:
    index, _, name = key.partition(".")
    return (int(index) if index.isdigit() else -1, name)


def warn_random_weights(arch: str) -> None:
    """Say loudly that the loss network is random: one ``UserWarning`` (not also a log record, which printed twice)."""
    message = (
        f"!!! The {arch} loss network uses RANDOM weights (vgg_weights random). Content and style losses "
        "are NOT perceptual: use this only for tests and dry runs, never to train a real style. !!!"
    )
    warnings.warn(message, UserWarning, stacklevel=3)


def load_features(arch: str, weights: str, depth: int) -> nn.Sequential:
    """Build ``features[:depth]`` of ``arch`` and fill it from ``weights`` (see module docstring); errors about
    ``weights`` are :class:`OptionError`\\ s naming the field ``vgg_weights``."""
    features = build_features(arch, depth)
    if weights == "random":
        warn_random_weights(arch)
        random_init_(features, seed=0)
        return features
    if weights == "imagenet":
        state = load_imagenet_features(arch)
    else:
        state = load_features_file(weights, arch)
    kept = {k: v for k, v in state.items() if int(k.split(".")[0]) < depth}
    features.load_state_dict(kept, strict=True)
    return features


def check_layers(arch: str, layers: Sequence[str]) -> dict[str, int]:
    """Indices of ``layers`` in ``arch``; an unknown name is a :class:`UserError` listing the valid ones."""
    valid = relu_indices(arch)
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise UserError(f"unknown {arch} layer(s) {', '.join(unknown)}; valid layers: {', '.join(valid)}")
    if not layers:
        raise UserError("the loss network needs at least one layer")
    return {name: valid[name] for name in layers}
