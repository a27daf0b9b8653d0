"""What every benchmark shares: where its input media live, and the header that says on what and when it ran.

The data root (clips and photographs that are too large for the repository) is ``$STYLETRAIN_DATA`` when set, else
the first ``shared/data`` folder beside the checkout or beside one of the folders above it: ``../shared/data`` for a
clone, ``../../shared/data`` for a worktree kept one folder deeper. Nothing is downloaded. Run the benchmarks as
modules from the repository root (``python -m bench.video``), so ``bench`` and the packages import without any
``sys.path`` change.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: The environment variable that names the data root.
DATA_ENV = "STYLETRAIN_DATA"
#: The repository root this file belongs to.
CHECKOUT = Path(__file__).resolve().parents[1]


def data_root(environ: dict[str, str] | None = None, checkout: Path = CHECKOUT) -> Path:
    """The folder of the benchmarks' input media.

    Args:
        environ: The environment to read ``$STYLETRAIN_DATA`` from (default: ``os.environ``).
        checkout: The repository root to search from.

    Returns:
        ``$STYLETRAIN_DATA`` if set; else the nearest ``shared/data`` beside ``checkout`` or beside a folder above it;
        else ``checkout/../shared/data`` (which then does not exist: a benchmark names the missing file it wanted).
    """
    value = (os.environ if environ is None else environ).get(DATA_ENV)
    if value:
        return Path(value).expanduser()
    for folder in checkout.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return checkout.parent / "shared" / "data"


def shared_clip(name: str) -> Path:
    """A clip of the data root's ``videos/`` folder, e.g. ``shared_clip("sintel_2s.mp4")``."""
    return data_root() / "videos" / name


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, Any]:
    """The header of every benchmark's JSON record: when, on what, with which versions, under what load.

    Args:
        device: The torch device the benchmark runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns:
        ``date`` (UTC, ISO 8601), ``python``, ``torch`` (``None`` when torch is not imported), ``platform``, ``cpu``,
        ``cpu_count``, ``torch_threads``, ``device``, ``device_name`` (the GPU's name on CUDA, else the CPU's) and
        ``load_average`` (1, 5 and 15 minutes: other processes compete for the cores on a shared machine).
    """
    torch = sys.modules.get("torch")  # never imported here: the encoder benchmarks run without it
    cuda = torch is not None and device.startswith("cuda") and torch.cuda.is_available()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__ if torch is not None else None,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
