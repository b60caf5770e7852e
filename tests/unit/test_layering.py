"""The engine's seams, checked on the source: `engine/` imports no feature package at
module level, nothing outside `engine/` reaches into an engine's private attributes, and
the classes of `engine/` declare nothing that another class provides."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import taskloom

PACKAGE = Path(taskloom.__file__).resolve().parent
FEATURES = ("workflows", "services", "streams", "packages", "schedules")


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


def _declared_elsewhere(tree: ast.Module) -> list[str]:
    """What a class says it has but does not provide: stubs under `if TYPE_CHECKING:` in
    its body, and attributes annotated in its body that none of its methods assigns (a
    Protocol, a dataclass, a NamedTuple or a TypedDict declares fields; those are left be).
    """
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
        decorators = {
            ast.unparse(d).partition("(")[0].rpartition(".")[2] for d in node.decorator_list
        }
        declares_fields = (
            bases & {"Protocol", "NamedTuple", "TypedDict"} or "dataclass" in decorators
        )
        assigned = {
            target.attr
            for item in ast.walk(node)
            if isinstance(item, ast.Assign | ast.AnnAssign | ast.AugAssign)
            for target in (item.targets if isinstance(item, ast.Assign) else [item.target])
            if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self"
        }
        for item in node.body:
            if isinstance(item, ast.If) and "TYPE_CHECKING" in ast.unparse(item.test):
                stubs = [
                    n.name
                    for n in ast.walk(item)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
                if stubs:
                    found.append(f"{node.name}: stubs under TYPE_CHECKING: {', '.join(stubs)}")
            if (
                not declares_fields
                and isinstance(item, ast.AnnAssign)
                and item.value is None
                and isinstance(item.target, ast.Name)
                and item.target.id not in assigned
            ):
                found.append(f"{node.name}: {item.target.id} annotated, assigned elsewhere")
    return found


def test_no_class_of_the_engine_declares_what_another_class_provides() -> None:
    offending = [
        f"{path.name}: {found}"
        for path in sorted((PACKAGE / "engine").glob("*.py"))
        for found in _declared_elsewhere(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offending == []


def test_the_check_above_sees_a_mixin_and_leaves_fields_be() -> None:
    tree = ast.parse(
        "class Part:\n"
        "    store: Store\n"
        "    lease: float\n"
        "    if TYPE_CHECKING:\n"
        "        def _spawn(self, coro): ...\n"
        "    def renew(self):\n"
        "        self.lease = 1.0\n"
        "@dataclass\n"
        "class Event:\n    kind: str\n"
        "class Item(Protocol):\n    priority: int\n"
    )
    assert _declared_elsewhere(tree) == [
        "Part: store annotated, assigned elsewhere",
        "Part: stubs under TYPE_CHECKING: _spawn",
    ]
