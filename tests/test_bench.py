"""The benchmarks' layout: run as ``python -m bench.x``, no module named like a package, no ``sys.path`` changes, and
one module for the data root and the environment header (``bench/environment.py``)."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from bench.environment import DATA_ENV, data_root, environment

REPO = Path(__file__).resolve().parents[1]
BENCH = sorted((REPO / "bench").glob("*.py"))


def test_no_bench_module_is_named_like_an_importable_package():
    """``bench/inference.py`` once hid the runtime from every script run as ``python bench/x.py``."""
    shadowing = [p.name for p in BENCH if importlib.util.find_spec(p.stem) is not None]
    assert shadowing == []


def sys_path_uses(path: Path) -> list[int]:
    """Line numbers where ``path``'s code reads or changes ``sys.path`` (strings and comments do not count)."""
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys"
    ]


def test_the_sys_path_finder_sees_code_not_text(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text('"""sys.path is not touched here."""\nimport sys\n\nsys.path.insert(0, "bench")  # sys.path\n')
    assert sys_path_uses(sample) == [4]


def test_no_sys_path_changes_in_bench_docs_or_tests():
    found = {
        str(p.relative_to(REPO)): sys_path_uses(p)
        for folder in ("bench", "docs", "tests")
        for p in sorted((REPO / folder).rglob("*.py"))
        if sys_path_uses(p)
    }
    assert found == {}


def test_every_runnable_benchmark_documents_python_m():
    """Each benchmark with a ``__main__`` block shows ``python -m bench.<name>`` in its docstring, never a file path."""
    wrong = []
    for path in BENCH:
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "__main__" in text and f"python -m bench.{path.stem}" not in doc:
            wrong.append(f"{path.name}: no `python -m bench.{path.stem}`")
        if "python bench/" in doc:
            wrong.append(f"{path.name}: `python bench/...`")
    assert wrong == []


def test_every_benchmark_and_figure_script_the_docs_name_exists():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    named = {m for page in pages for m in re.findall(r"python -m ((?:bench|docs)\.\w+)", page.read_text())}
    assert "bench.video" in named and "docs.consistency_strip" in named
    assert sorted(m for m in named if not (REPO / (m.replace(".", "/") + ".py")).exists()) == []
    assert not [page.name for page in pages if "python bench/" in page.read_text()]


def test_the_data_root_comes_from_the_environment_first(tmp_path):
    assert data_root({DATA_ENV: str(tmp_path / "media")}, checkout=tmp_path / "repo") == tmp_path / "media"


def test_the_data_root_is_the_nearest_shared_data_beside_the_checkout(tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    clone = tmp_path / "repo"
    worktree = tmp_path / "wt" / "branch"  # one folder deeper: the shared folder is found further up
    assert data_root({}, checkout=clone) == tmp_path / "shared" / "data"
    assert data_root({}, checkout=worktree) == tmp_path / "shared" / "data"
    (tmp_path / "wt" / "shared" / "data").mkdir(parents=True)
    assert data_root({}, checkout=worktree) == tmp_path / "wt" / "shared" / "data"


def test_without_a_shared_folder_the_data_root_is_the_documented_default(tmp_path):
    checkout = tmp_path / "nowhere" / "repo"
    if any((folder / "shared" / "data").is_dir() for folder in checkout.parents):
        pytest.skip("a shared/data folder exists above the temporary folder")
    assert data_root({}, checkout=checkout) == tmp_path / "nowhere" / "shared" / "data"


def test_the_environment_header_says_when_where_and_under_what_load():
    header = environment("cpu")
    assert set(header) >= {"date", "python", "torch", "platform", "cpu", "cpu_count", "device", "load_average"}
    assert header["device"] == "cpu" and header["device_name"] == header["cpu"] and header["cpu_count"] >= 1
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", header["date"])
    assert len(header["load_average"]) == 3
