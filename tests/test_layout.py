"""The architecture stays visible: short functions in the packages, and the runtime never imports training."""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


def _framework_hooks() -> set[str]:
    """Methods whose signature Lightning fixes and calls positionally (``on_validation_batch_end`` takes six)."""
    import pytorch_lightning as pl

    return {name for cls in (pl.Callback, pl.LightningModule) for name in dir(cls) if not name.startswith("_")}


def test_no_function_in_the_packages_takes_more_than_five_positional_parameters():
    """Long positional lists hide which value is which; past five, keyword-only arguments or a frozen plan dataclass
    carry them. Overrides of Lightning's hooks keep Lightning's signature."""
    hooks = _framework_hooks()
    offenders = []
    for package in ("inference", "styletrain"):
        for path in _python_files(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in hooks:
                    names = [a.arg for a in node.args.posonlyargs + node.args.args]
                    if names[:1] in (["self"], ["cls"]):
                        names = names[1:]
                    if len(names) > MAX_POSITIONAL:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(names)})")
    assert not offenders, "pass a plan object or keyword-only arguments:\n" + "\n".join(offenders)


# An issue or pull-request number in a comment or docstring: "issue 12", "issue #12", "(#12)", "PR 7", "gh-12".
_ISSUE_NUMBER = re.compile(r"\b(?:issues?|PR|pull request)\s*#?\d+|(?<![\w&])#\d+\b|\bgh-\d+", re.IGNORECASE)


def _comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every comment and docstring of a module."""
    found = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((node.body[0].lineno, doc))
    return found


def test_no_comment_or_docstring_names_an_issue_number():
    """Comments say why the code is as it is now; the history (which issue asked for it) lives in git."""
    offenders = []
    for package in ("inference", "styletrain"):
        for path in _python_files(package):
            for line, text in _comments_and_docstrings(path.read_text()):
                offenders += [f"{path.relative_to(ROOT)}:{line} {m.group()!r}" for m in _ISSUE_NUMBER.finditer(text)]
    assert not offenders, "\n".join(offenders)


def test_the_issue_number_pattern_finds_what_it_should():
    hits = ["as issue 12 asked", "see issue #7", "fixed in (#23)", "PR 4", "gh-88"]
    misses = ["colour #fff", "frame 12 of the issue", "&#39;", "the 2nd pass", "stride 4"]
    assert all(_ISSUE_NUMBER.search(t) for t in hits) and not any(_ISSUE_NUMBER.search(t) for t in misses)


def test_the_stylizer_class_stays_under_two_hundred_lines():
    """The front door only stylizes; options, precision, backends, batching and the consistency stage live in their
    own modules. A Stylizer that grows past 200 lines has taken one of their jobs back."""
    tree = ast.parse((ROOT / "inference" / "engine" / "stylizer.py").read_text())
    (stylizer,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Stylizer"]
    assert stylizer.end_lineno - stylizer.lineno + 1 < 200
