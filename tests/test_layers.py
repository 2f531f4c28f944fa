"""Imports point down only (docs/design.md): zoo imports no heads/tasks/benchmarks, heads no tasks/benchmarks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"zoo": {"heads", "tasks", "benchmarks"}, "heads": {"tasks", "benchmarks"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports anywhere in its body (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[layer])
                 for path in sorted((ROOT / layer).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tasks.engine import commands\n    import heads.lm\n")
    assert imported_packages(module) == {"tasks", "heads"}
