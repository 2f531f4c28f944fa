"""The engine's import graph, read from the source with ``ast``: no circle, and the layers kept.

Every import counts, at module level and inside functions (a deferred import still ties the
modules together). ``tasks/engine/task.py`` is a leaf that names no command and no trainer
(the CLI finds commands in the ``COMMANDS`` registry), and task packages reach commands and the
trainer only through it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[1] / "tasks"
ENGINE = TASKS / "engine"
PACKAGE = "tasks.engine"
FORBIDDEN = {"commands", "trainer"}   # what task.py and the task packages must not import


def engine_imports(path: Path) -> set[str]:
    """Engine modules (``task``, ``bench``...) that the file at ``path`` imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from tasks.engine import bench" names a module; "from tasks.engine.bench import x" too
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            if module.startswith(PACKAGE + "."):
                names.add(module[len(PACKAGE) + 1:].split(".")[0])
    return names


def engine_graph() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports (names of files beside it only)."""
    modules = {path.stem: path for path in ENGINE.glob("*.py") if path.stem != "__init__"}
    return {name: engine_imports(path) & (modules.keys() - {name}) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search, white/grey/black)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports directly or through others."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def test_the_engine_has_no_import_circle() -> None:
    graph = engine_graph()
    assert {"task", "commands", "trainer", "bench", "device"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle in tasks/engine: " + " -> ".join(cycle or [])


def test_task_module_imports_no_command_and_no_trainer() -> None:
    through = reachable(engine_graph(), "task")
    assert not through & FORBIDDEN, f"tasks/engine/task.py reaches {sorted(through & FORBIDDEN)}"


@pytest.mark.parametrize("path", sorted(p for p in TASKS.glob("*/*.py") if p.parent != ENGINE),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_task_packages_import_no_command_and_no_trainer(path: Path) -> None:
    assert not engine_imports(path) & FORBIDDEN, f"{path} imports tasks.engine.{sorted(engine_imports(path) & FORBIDDEN)}"


def test_the_checks_see_circles_and_deferred_imports(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert reachable({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}
    module = tmp_path / "m.py"
    module.write_text("import tasks.engine.flags\nfrom tasks.engine import bench, task as t\n"
                      "def f():\n    from tasks.engine.trainer import train\nfrom zoo import tasks\n")
    assert engine_imports(module) == {"flags", "bench", "task", "trainer"}
