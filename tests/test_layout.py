"""The architecture stays visible: short functions in the packages, and the runtime never imports training."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def _python_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def test_no_function_in_the_packages_is_longer_than_sixty_lines():
    too_long = []
    for package in ("inference", "styletrain"):
        for path in _python_files(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, "split these along the data flow:\n" + "\n".join(too_long)


def test_the_runtime_never_imports_training():
    offenders = []
    for path in _python_files("inference"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "styletrain"]
    assert not offenders, offenders


MAX_POSITIONAL = 5


def test_no_function_in_the_runtime_takes_more_than_five_positional_parameters():
    """Long positional lists hide which value is which; past five, a frozen plan dataclass carries them."""
    offenders = []
    for path in _python_files("inference"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if names[:1] in (["self"], ["cls"]):
                    names = names[1:]
                if len(names) > MAX_POSITIONAL:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(names)})")
    assert not offenders, "pass a plan object or keyword-only arguments:\n" + "\n".join(offenders)
