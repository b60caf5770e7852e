"""The dashboard's files as shipped in the package: every file the page or a module loads
is there, so a renamed module cannot break the page where no browser test runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import taskloom

DASHBOARD = Path(taskloom.__file__).resolve().parent / "server" / "dashboard"
MODULES = sorted((DASHBOARD / "js").rglob("*.js"))

# `import ... from "./x.js"`, `export ... from "./x.js"` and `import("./x.js")`.
_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(\s*)["'](\.{1,2}/[^"']+)["']""")
_ASSET = re.compile(r"""\b(?:src|href)="([^"#:]+)\"""")


def test_the_page_loads_files_that_exist() -> None:
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    assets = _ASSET.findall(html)
    assert "js/app.js" in assets
    assert "style.css" in assets
    for asset in assets:
        assert (DASHBOARD / asset).is_file(), f"index.html loads {asset}, which is missing"


def test_there_are_modules_to_check() -> None:
    names = {path.relative_to(DASHBOARD / "js").as_posix() for path in MODULES}
    assert {"app.js", "api.js", "events.js", "form.js", "pages/index.js"} <= names


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_every_module_imports_files_that_exist(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    for target in _IMPORT.findall(source):
        assert (module.parent / target).resolve().is_file(), f"{module.name} imports {target}"


def test_every_page_module_is_routed() -> None:
    pages = DASHBOARD / "js" / "pages"
    routed = set(_IMPORT.findall((pages / "index.js").read_text(encoding="utf-8")))
    for page in pages.glob("*.js"):
        if page.name != "index.js":
            assert f"./{page.name}" in routed, f"pages/{page.name} has no route in pages/index.js"
