"""No import circles inside ``inference/`` and ``styletrain/``.

The graph has one node per module of the two packages and one edge per import of another project module. Imports
inside functions count as much as those at the top of a file: a deferred import is the usual way a circle is hidden
rather than removed, and it still ties the two modules together (neither can be understood, tested or moved without
the other). Imports under ``if TYPE_CHECKING:`` count too, for the same reason: the annotation names the other module.
An import of a package counts as an import of its ``__init__``; the packages' ``__init__`` files import nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("inference", "styletrain")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    assert len(modules) > 20, "the packages were not found"
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute dotted name that ``from ... import`` starts from (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(tree: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``tree`` (the source of ``module``) imports anywhere in its body."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            start = _absolute(node, module, is_package)
            # ``from pkg import sub`` imports the submodule ``pkg.sub``; ``from mod import name`` imports ``mod``.
            names = [f"{start}.{a.name}" if f"{start}.{a.name}" in modules else start for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # ``import a.b.c`` of a name inside a module: the module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: project modules it imports}`` over every module of :data:`PACKAGES`."""
    modules = _project_modules()
    return {
        name: _imported(ast.parse(path.read_text()), name, path.name == "__init__.py", modules)
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or ``None`` when ``graph`` is acyclic (iterative depth-first)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_and_function_level_imports_are_edges():
    modules = {"pkg": Path(), "pkg.a": Path(), "pkg.b": Path(), "pkg.sub": Path(), "pkg.sub.c": Path()}
    source = "from . import b\ndef f():\n    from .sub.c import thing\n    import pkg.sub\n"
    assert _imported(ast.parse(source), "pkg.a", False, modules) == {"pkg.b", "pkg.sub.c", "pkg.sub"}
    assert _imported(ast.parse("from ..a import x"), "pkg.sub", True, modules) == {"pkg.a"}


def test_the_packages_have_no_import_circles():
    graph = import_graph()
    assert "inference.engine.stylizer" in graph and "styletrain.module" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


# The role folders of ``inference/``, lowest first, and what each may import (docs/architecture.md).
LAYERS = {
    "core": set(),
    "model": {"core"},
    "io": {"core"},
    "engine": {"core", "model", "io"},
    "app": {"core", "model", "io", "engine"},
    "serve": {"core", "model", "io", "engine", "app"},
}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for each import in ``inference`` that goes up or sideways between role folders."""
    found = []
    for module, imports in sorted(graph.items()):
        parts = module.split(".")
        if parts[0] != "inference" or len(parts) < 2:
            continue
        for other in sorted(imports):
            target = other.split(".")
            if target[0] == "inference" and len(target) > 1 and target[1] != parts[1]:
                if target[1] not in LAYERS[parts[1]]:
                    found.append(f"{module} -> {other}")
    return found


def test_inference_is_grouped_into_the_role_folders_only():
    loose = sorted(p.name for p in (ROOT / "inference").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a role folder: {loose}"
    assert {p.name for p in (ROOT / "inference").iterdir() if (p / "__init__.py").exists()} == set(LAYERS)


def test_the_layer_checker_flags_an_upward_import():
    graph = {"inference.core.a": {"inference.engine.b"}, "inference.engine.b": {"inference.core.a"}}
    assert layer_violations(graph) == ["inference.core.a -> inference.engine.b"]


def test_role_folders_import_only_the_layers_below():
    violations = layer_violations(import_graph())
    assert violations == [], "imports against the layering:\n" + "\n".join(violations)
