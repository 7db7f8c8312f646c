"""ganzoo's modules import each other without a cycle at module level.

Every module under ``ganzoo/`` is parsed (never imported); the imports of ``ganzoo.*`` that run when
a module is loaded (top level, and inside top-level ``try``/``if``/``with`` blocks) form a graph that
must be acyclic. Imports inside functions and classes' methods, and under ``if TYPE_CHECKING:``, run
later or never, so they are not edges. Importing a package runs its ``__init__`` first, so
``import ganzoo.a.b`` is an edge to ``ganzoo.a`` (its ``__init__``) as well as to ``ganzoo.a.b``. A
module's own enclosing packages are being loaded already when it runs, so importing through them is
no edge, except ``from ganzoo.a import name``, which needs ``ganzoo.a``'s ``__init__`` to have got that far.
"""
from __future__ import annotations

import ast
from pathlib import Path

GANZOO = Path(__file__).resolve().parents[1] / "ganzoo"


def module_name(path: Path, root: Path = GANZOO) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def load_time_imports(tree: ast.Module, name: str, is_package: bool) -> list[tuple[str, int, tuple[str, ...]]]:
    """The imports ``name`` makes while it is being loaded: (module, line, the names a ``from module
    import ...`` takes from it; empty for ``import module``)."""
    found: list[tuple[str, int, tuple[str, ...]]] = []

    def resolve_from(node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        package = name.split(".") if is_package else name.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                if isinstance(node, ast.ClassDef):  # a class body runs at import time; its methods do not
                    visit([n for n in node.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))])
                continue
            if isinstance(node, ast.Import):
                found.extend((alias.name, node.lineno, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = resolve_from(node)
                if base is None:
                    continue
                found.append((base, node.lineno, tuple(alias.name for alias in node.names)))
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.AsyncWith, ast.For, ast.While)):
                visit(node.body)
                visit(getattr(node, "orelse", []))

    visit(tree.body)
    return found


def import_graph(root: Path = GANZOO) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """module -> {imported module of the package: line}, for every module of the package at ``root``."""
    top = root.name
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for target, line, names in load_time_imports(tree, name, path.name == "__init__.py"):
            if target != top and not target.startswith(top + "."):
                continue
            # ``from ganzoo.pkg import mod`` imports the submodule ganzoo.pkg.mod; any other name is
            # read from ganzoo.pkg itself, which must have got that far
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in paths]
            takes_names = len(submodules) < len(names)
            for module in [target, *submodules]:
                parts = module.split(".")
                # importing a.b.c loads a, a.b and a.b.c: the packages' __init__ modules run on the way
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix not in paths or prefix == name:
                        continue
                    enclosing = name.startswith(prefix + ".")
                    if not enclosing or (takes_names and prefix == target):
                        edges.setdefault(prefix, line)
        graph[name] = edges
    return graph, paths


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_checker_sees_cycles_and_ignores_deferred_imports() -> None:
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {}}) is None
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    source = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "import ganzoo.errors\n"
        "from ganzoo.recipe import schema\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n    from ganzoo.training.updates import Updater\n"
        "try:\n    from ganzoo.extra import thing\nexcept ImportError:\n    pass\n"
        "def later():\n    from ganzoo.training import trainer\n"
        "class C:\n    from ganzoo.models import base\n    def m(self):\n        import ganzoo.bench\n")
    found = {(name, names) for name, _, names in load_time_imports(source, "ganzoo.pkg.mod", is_package=False)}
    assert ("ganzoo.errors", ()) in found and ("ganzoo.recipe", ("schema",)) in found
    assert ("ganzoo.pkg", ("sibling",)) in found  # relative imports resolved
    assert ("ganzoo.extra", ("thing",)) in found and ("ganzoo.models", ("base",)) in found
    found = {n for n, _ in found}
    assert not any(n.startswith(("ganzoo.training", "ganzoo.bench")) for n in found)


def test_the_graph_follows_packages_and_deferred_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "ganzoo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from ganzoo.sub.a import f\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from ganzoo.sub import b\ndef f():\n    from ganzoo import g\n")
    (pkg / "sub" / "b.py").write_text("import ganzoo.sub.c\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    import ganzoo.sub.a\n")
    graph, _ = import_graph(pkg)
    assert graph["ganzoo"] == {"ganzoo.sub": 1, "ganzoo.sub.a": 1}
    assert graph["ganzoo.sub.a"] == {"ganzoo.sub.b": 1}  # a submodule, not a name read from ganzoo.sub
    assert graph["ganzoo.sub.b"] == {"ganzoo.sub.c": 1}
    assert find_cycle(graph) is None
    (pkg / "sub" / "c.py").write_text("from ganzoo import f\n")  # reads a name from the package being loaded
    graph, _ = import_graph(pkg)
    assert find_cycle(graph) == ["ganzoo", "ganzoo.sub.a", "ganzoo.sub.b", "ganzoo.sub.c", "ganzoo"]


def test_ganzoo_has_no_import_cycle_at_module_level() -> None:
    graph, paths = import_graph()
    assert len(graph) > 50 and "ganzoo.training.trainer" in graph
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} (line {graph[a][b]} of {paths[a].relative_to(GANZOO.parent)}) -> {b}"
                 for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle among ganzoo's modules:\n  " + "\n  ".join(steps))
