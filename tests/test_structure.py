"""The package's structure: no import cycles between its modules, and the shared contract in
one module that depends on nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import agegender

PACKAGE = Path(agegender.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, modules: set[str]) -> set[str]:
    """The project modules an import statement loads (the longest known prefix of each name)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from a.b import c` loads a.b.c when c is a module, else a.b
        names = [f"{node.module}.{alias.name}" for alias in node.names]
    found = {known(name) for name in names if name.split(".")[0] == "agegender"}
    return {name for name in found if name}


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports, anywhere in the file (lazy imports inside
    functions count: they close a cycle as surely as top-level ones, just later).

    The root package is left out as a target: every submodule import loads it first, and its
    only import is the lazy public API (`agegender.FaceAnalyzer`)."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in ast.walk(tree):
            targets |= _imported(node, modules)
        graph[name] = targets - {name, "agegender"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_the_package_modules() -> None:
    graph = import_graph()
    assert "agegender.training" in graph and "agegender.inference.pipeline" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_the_subpackages() -> None:
    """Layers: a subpackage (data, inference, ...) never needs one that needs it back."""

    def layer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(layer(module), set()).update(
            layer(target) for target in targets if layer(target) != layer(module)
        )
    cycle = find_cycle(packages)
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle or [])


def test_the_contract_imports_nothing_of_the_project() -> None:
    assert import_graph()["agegender.contract"] == set()


def test_library_code_does_not_import_the_benchmarks() -> None:
    users = sorted(
        module
        for module, targets in import_graph().items()
        if not module.startswith("agegender.bench")
        and any(t.startswith("agegender.bench") for t in targets)
    )
    assert users == []


def test_every_module_imports() -> None:
    """A name moved between modules breaks only at import time; import them all."""
    import importlib

    for name in sorted(import_graph()):
        importlib.import_module(name)
