"""The import graph of nue_core and the first-party plugins: no loops, layers kept apart.

The graph is read with ``ast`` (nothing is imported), so imports inside functions count as much
as those at the top: a lazy import only hides a loop until the day it runs. Edges:

- ``import a.b`` -> ``a.b``; ``from a import b`` -> ``a.b`` when that is a module, else ``a``;
- relative imports are resolved against the importing module's package;
- the implicit import of a parent package (``a`` when ``a.b`` is imported) is not an edge:
  every package would otherwise import itself through its ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where each top-level package's folder is (the plugins live one folder down).
PACKAGE_DIRS = {"nue_core": ROOT / "nue_core", **{p.name: p for p in sorted((ROOT / "plugins").glob("nue_*"))
                                                  if (p / "__init__.py").is_file()}}
PLUGINS = frozenset(name for name in PACKAGE_DIRS if name != "nue_core")
# nue_core/model.py sits below these: it may not import them at all.
ABOVE_MODEL = ("nue_core.inference", "nue_core.checkpoint", "nue_core.train", "nue_core.cli")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages above."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """The modules of MODULES that ``module`` imports, at any depth of its code."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    return {_known(t) for t in targets if _known(t)} - {module}


def _known(name: str) -> str:
    """``name`` or its nearest enclosing module that is one of ours ('' for foreign modules)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected component (Tarjan), each as an import path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:  # the graph is a few hundred nodes: recursion depth is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_loop_in(graph, component) for component in components]


def _loop_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest import path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no loop in component {sorted(component)}")


def test_graph_sees_packages_and_function_level_imports() -> None:
    # The walk must find the modules and the imports inside functions, or the tests below prove nothing.
    assert {"nue_core", "nue_core.model", "nue_core.cli"} <= set(MODULES) and PLUGINS
    assert "nue_core.composer" in GRAPH["nue_core"]  # imported inside __getattr__


def test_cycle_finder_reports_the_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import loops (each module imports the next, the last imports the first):\n" + "\n".join(
        "  " + " -> ".join(loop) for loop in cycles
    )


def test_model_imports_nothing_above_it() -> None:
    bad = sorted(t for t in GRAPH["nue_core.model"] if any(t == a or t.startswith(f"{a}.") for a in ABOVE_MODEL))
    assert not bad, f"nue_core/model.py imports {bad}; the model is below inference, checkpoint, train and cli"


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_plugin_imports_no_other_plugin(plugin: str) -> None:
    bad = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if module.split(".")[0] == plugin
        for target in targets if target.split(".")[0] in PLUGINS - {plugin}
    )
    assert not bad, f"plugin {plugin} imports another plugin (shared code belongs in nue_core): {bad}"


def test_core_imports_no_plugin() -> None:
    bad = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if module.split(".")[0] == "nue_core"
        for target in targets if target.split(".")[0] in PLUGINS
    )
    assert not bad, f"nue_core imports plugins by name (it must find them through entry points): {bad}"


# The terminal UI belongs to the command line: a library user (a notebook, a server, another
# program) must not get rich or typer pulled in, nor their output.
CLI_STACK = ("rich", "typer", "click")


def _external_imports(tree: ast.AST) -> set[str]:
    """Absolute module names imported anywhere in ``tree`` (relative imports are ours, left out)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def test_cli_stack_finder_sees_imports_inside_functions() -> None:
    tree = ast.parse("def show():\n    from rich.progress import Progress\n    import typer.main\n")
    assert {n.split(".")[0] for n in _external_imports(tree)} & set(CLI_STACK) == {"rich", "typer"}


def test_library_imports_no_cli_stack() -> None:
    bad = sorted(
        f"{module} -> {name}"
        for module, path in MODULES.items() if module != "nue_core.cli" and not module.startswith("nue_core.cli.")
        for name in _external_imports(ast.parse(path.read_text(encoding="utf-8")))
        if name.split(".")[0] in CLI_STACK
    )
    assert not bad, f"library modules import the command line's UI (keep it under nue_core/cli/): {bad}"
