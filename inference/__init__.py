"""styletrain's runtime: apply exported style networks to images, frame folders, videos and live streams.

The front door, for Python users::

    from inference import RuntimeOptions, Stylizer, load_artifact, stylize_file

    stylizer = Stylizer.from_artifact("starry_night.safetensors", device="cuda")
    stylize_file(stylizer, "in.mp4", "out.mp4")

These four names are imported on first use (a module ``__getattr__``, PEP 562): ``import inference`` alone loads
nothing else, so a program that only reads ``inference.__version__`` does not pay for torch.

Dependencies (the distribution's install without extras): ``torch``, ``numpy``, ``safetensors``, ``av`` (PyAV),
``pillow``, ``tqdm`` (progress bars), ``opencv-python-headless`` (DIS optical flow for the consistency stage) and
``torchvision`` (RAFT optical flow, imported only when RAFT is built on CUDA). Optional, used when installed:
``onnxruntime`` (the faster CPU backend; the ``train`` extra brings it), ``ray`` (``stylize-video --cluster ray``, the
``cluster`` extra) and FastAPI with uvicorn (``stylize-serve``, the ``serve`` extra). The runtime never imports
lightning, wandb, datasets or :mod:`styletrain`, so a user who only stylizes videos installs it without the training
stack (a test starts ``stylize-video`` and checks).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Each front-door name and the module that owns it. Imported by name on first use rather than with import statements:
# inference/model/artifact.py reads ``inference.__version__``, and an import statement here would tie this file and
# that module into a circle in tests/test_imports.py's graph.
_FRONT_DOOR = {
    "RuntimeOptions": "inference.engine.options",
    "Stylizer": "inference.engine.stylizer",
    "load_artifact": "inference.model.artifact",
    "stylize_file": "inference.app.convert",
}
__all__ = sorted(_FRONT_DOOR)


def __getattr__(name: str) -> Any:
    """Import one of the front door's names on first use, then keep it in this module (later lookups are direct)."""
    if name not in _FRONT_DOOR:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FRONT_DOOR[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
