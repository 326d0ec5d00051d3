"""pipelines/ reads as commands over a runtime: one module per CLI command, the runtime they
share in pipelines/runtime/. A command never imports another command; the runtime never
imports a command (read from the source, not by importing it)."""
from __future__ import annotations

import ast
from pathlib import Path

from pipelines.runtime.commands import PIPELINES

PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"
COMMANDS = {module for module, _ in PIPELINES.values()} | {"pipelines.cli"}


def imported(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from pipelines import x` counts as pipelines.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_every_command_has_its_module_and_nothing_else_sits_beside_them():
    beside = {f"pipelines.{p.stem}" for p in PIPELINES_DIR.glob("*.py") if p.stem != "__init__"}
    assert beside == COMMANDS


def test_no_command_imports_another_and_the_runtime_imports_none():
    for path in PIPELINES_DIR.glob("*.py"):
        me = f"pipelines.{path.stem}"
        assert not (imported(path) & (COMMANDS - {me})), f"{me} imports a command"
    for path in (PIPELINES_DIR / "runtime").glob("*.py"):
        assert not (imported(path) & COMMANDS), f"pipelines.runtime.{path.stem} imports a command"
