"""The engine's seams, checked on the source: `engine/` imports no feature package at
module level, and nothing outside `engine/` reaches into an engine's private attributes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import taskloom

PACKAGE = Path(taskloom.__file__).resolve().parent
FEATURES = ("workflows", "services", "streams", "packages")


def _module_level_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Imports that run when the module is imported: not inside a function, not under
    `if TYPE_CHECKING:`."""
    found: list[ast.ImportFrom | ast.Import] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, None) or [])

    visit(tree.body)
    return found


def _imported_names(node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = ("." * node.level) + (node.module or "")
    return [base] if node.module else [f"{base}{alias.name}" for alias in node.names]


def test_the_engine_imports_no_feature_package_at_module_level() -> None:
    offending: list[str] = []
    for path in sorted((PACKAGE / "engine").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _module_level_imports(tree):
            for name in _imported_names(node):
                parts = name.lstrip(".").split(".")
                if name.startswith("..") and parts[0] in FEATURES:
                    offending.append(f"{path.name}:{node.lineno}: {name}")
                if name.startswith("taskloom.") and parts[1:2] and parts[1] in FEATURES:
                    offending.append(f"{path.name}:{node.lineno}: {name}")
    assert offending == []


def test_the_check_above_sees_a_module_level_feature_import() -> None:
    tree = ast.parse(
        "from ..workflows import Workflow\n"
        "if TYPE_CHECKING:\n    from ..services import Service\n"
        "def f():\n    from ..streams import Bus\n"
    )
    names = [n for node in _module_level_imports(tree) for n in _imported_names(node)]
    assert names == ["..workflows"]


def test_nothing_outside_the_engine_touches_its_private_attributes() -> None:
    private = re.compile(r"\bengine\._[a-z]")
    offending = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "engine" not in path.relative_to(PACKAGE).parts[:1]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert offending == []
