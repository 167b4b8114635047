"""The house rules a newcomer should not have to remember: no import cycle among cnnbench's modules, nothing in
the library imports the command line, `plot` never reaches training code, and no module grows past a screenful
of screens. Read from the source (every import, those inside functions included), so a lazy import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 650
# Modules that were already longer when this test came (issue 18): each is being split. An entry that is no
# longer needed fails the test, so the list only shrinks.
LONG_FOR_NOW: dict[str, str] = {}  # module → the issue that splits it
TRAINING = ("cnnbench.train", "cnnbench.model", "cnnbench.fused", "cnnbench.callbacks", "cnnbench.engines", "cnnbench.executor")


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not `.__init__`)."""
    found = {}
    for path in sorted((ROOT / "cnnbench").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The cnnbench modules `name` imports anywhere in its source; `from cnnbench.x import y` names `cnnbench.x.y`
    when that is a module, else `cnnbench.x`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_the_import_graph_is_read_from_the_source():
    """The checks below are only as good as the graph: it must see lazy imports, packages and submodules."""
    assert len(MODULES) > 30 and "cnnbench.cli" in MODULES and "cnnbench.plot.curves" in MODULES
    assert "cnnbench.cli.output" in GRAPH["cnnbench.cli.train"]  # a submodule named by `from cnnbench.cli.output import ...`
    assert "cnnbench.train" in GRAPH["cnnbench.cli.train"]  # imported inside the command function
    assert "cnnbench.cli" in GRAPH["cnnbench.__main__"]


def test_no_import_cycle():
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(GRAPH[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == [], "modules that import each other (directly or round a loop)"


def test_nothing_in_the_library_imports_the_command_line():
    importers = sorted(m for m, imported in GRAPH.items() if not _is(m, ("cnnbench.cli", "cnnbench.__main__"))
                       and any(_is(i, ("cnnbench.cli",)) for i in imported))  # fmt: skip
    assert importers == []


def test_plot_reaches_no_training_code():
    """`plot` (and the report drawn with it) reads results folders; following every import from it, however
    indirect, never arrives at training, models, engines or executors."""
    reached, todo = set(), [m for m in MODULES if _is(m, ("cnnbench.plot",))]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH[module])
    assert sorted(m for m in reached if _is(m, TRAINING)) == []


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_is_over_the_size_limit(path):
    relative = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text().splitlines())
    if relative in LONG_FOR_NOW:
        assert lines > MAX_LINES, f"{relative} has {lines} lines now: remove it from LONG_FOR_NOW"
    else:
        assert lines <= MAX_LINES, f"{relative} has {lines} lines (at most {MAX_LINES}): split it by concept"


def test_every_long_module_listed_still_exists():
    assert sorted(p for p in LONG_FOR_NOW if not (ROOT / p).is_file()) == []
