"""Tests use the project through its public names: they import, patch and read no ``_private`` name.

A test that needs to reach inside gets a public seam instead (a documented function, attribute or keyword argument,
or an environment variable), or checks the behaviour from outside. The guard parses every ``tests/*.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROJECT = ("inference", "styletrain")

# Names with a leading underscore that are the public API of torch, used as such (allowed on any object):
ALLOWED = {
    # torch._C.DisableTorchFunctionSubclass: the context manager torch's subclassing docs use for a
    # __torch_function__ override that calls the plain implementation (torch.overrides has no public alias).
    "_C",
    # torch.cuda._sleep(cycles): torch's own GPU busy-wait kernel, the only way to keep a GPU busy for a known time
    # without host work (its CUDA tests use it the same way).
    "_sleep",
}
# Functions whose string argument names an attribute: setattr(x, "_y"), monkeypatch.setattr("a.b._c", ...),
# mock.patch("a._b"), mock.patch.object(x, "_y"), monkeypatch.delattr(...).
NAMING_CALLS = {"setattr", "getattr", "hasattr", "delattr", "patch", "object"}


def _private(name: str) -> bool:
    """``_x`` but not ``__x__`` (dunders are Python's protocol) nor a bare ``_``."""
    return name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))


def _private_part(dotted: str) -> str | None:
    return next((part for part in dotted.split(".") if _private(part) and part not in ALLOWED), None)


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def private_uses(source: str, filename: str = "<test>") -> list[str]:
    """Every use of a private name in ``source``: ``file:line what``.

    Flags (a) imports of private names or modules from ``inference``/``styletrain``, (b) a private name given as a
    string to ``setattr``/``monkeypatch.setattr``/``mock.patch`` and the like, (c) ``x._name`` on anything but
    ``self``/``cls`` (a test's own helper class), except the torch names in :data:`ALLOWED`.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [f"{where} imports {n}" for n in names if _private_part(n)][:1]
        elif isinstance(node, ast.Import):
            found += [
                f"{where} imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] in PROJECT and _private_part(a.name)
            ]
        elif isinstance(node, ast.Call) and _call_name(node.func) in NAMING_CALLS:
            for arg in node.args[:2]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _private_part(arg.value):
                    found.append(f"{where} {_call_name(node.func)}(..., {arg.value!r})")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in ALLOWED:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{where} reads {ast.unparse(node)}")
    return sorted(found, key=lambda use: int(use.split(" ", 1)[0].rsplit(":", 1)[1]))


def test_no_test_imports_patches_or_reads_a_private_name():
    found = [use for path in sorted(TESTS.glob("*.py")) for use in private_uses(path.read_text(), path.name)]
    assert not found, "give the library a public seam or test the behaviour:\n" + "\n".join(found)


def test_the_guard_flags_each_kind_of_private_use():
    offending = """
from inference.app.worker_pool import _Collector
from inference.io._internal import helper
import styletrain._private
from inference.core import devices
import inference.core.colour as colour

def test_x(monkeypatch):
    monkeypatch.setattr(devices, "_HOST_THREADS", None)
    monkeypatch.setattr("inference.io.video_reader._open_container", None)
    setattr(devices, "_MEDIA_GPU", None)
    colour._device_affine.cache_clear()
    spec = colour.YuvSpec()
    spec._affine()
"""
    found = private_uses(offending)
    assert [line.split(" ", 1)[0] for line in found] == [f"<test>:{n}" for n in (2, 3, 4, 9, 10, 11, 12, 14)], found
    clean = """
import torch
from inference.app.worker_pool import Collector

class Helper:
    def __init__(self):
        self._own = 1

    def __getattr__(self, name):
        return getattr(self._own, name)

def test_y(monkeypatch):
    with torch._C.DisableTorchFunctionSubclass():
        pass
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    keys = {"module._orig_mod.weight": 1}
    _ = Helper().__class__.__name__
"""
    assert private_uses(clean) == []
