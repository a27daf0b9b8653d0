"""The runtime's front door: ``from inference import Stylizer, RuntimeOptions, stylize_file, load_artifact``, imported
on first use, and docstrings that name the runtime's real dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import inference
import inference.app.cli
from inference.app.convert import stylize_file
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.artifact import load_artifact

REPO = Path(__file__).resolve().parents[1]


def test_the_front_door_names_are_the_owning_modules_objects():
    from inference import RuntimeOptions as options
    from inference import Stylizer as stylizer
    from inference import load_artifact as load
    from inference import stylize_file as convert

    assert (stylizer, options, convert, load) == (Stylizer, RuntimeOptions, stylize_file, load_artifact)
    assert sorted(inference.__all__) == ["RuntimeOptions", "Stylizer", "load_artifact", "stylize_file"]
    assert set(inference.__all__) <= set(dir(inference))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Stylise'"):
        inference.Stylise  # noqa: B018
    with pytest.raises(ImportError):
        from inference import stylize_video  # noqa: F401


def test_importing_the_package_loads_none_of_the_runtime():
    """``import inference`` alone: no torch, PyAV, OpenCV or runtime module until a front-door name is used."""
    code = (
        "import sys, inference\n"
        "heavy = ('torch', 'av', 'cv2', 'numpy', 'inference.')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        "inference.RuntimeOptions\n"
        "print('inference.engine.options' in sys.modules, 'inference.app.convert' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.splitlines() == ["[]", "True False"]


def runtime_dependencies() -> list[str]:
    """The distribution names of pyproject.toml's ``dependencies`` (the install without extras)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.S | re.M).group(1)
    return re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block, re.M)  # (tomllib would need Python 3.11)


@pytest.mark.parametrize("module", [inference, inference.app.cli], ids=lambda m: m.__name__)
def test_docstrings_name_every_runtime_dependency(module):
    names = runtime_dependencies()
    assert {"torch", "av", "opencv-python-headless", "torchvision"} <= set(names)
    missing = [name for name in names if f"``{name}``" not in module.__doc__]
    assert missing == [], f"{module.__name__}'s docstring does not name {missing}"
