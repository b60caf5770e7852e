"""The migration pages (`docs/howto/from-*.md`) as a reader follows them: every example
runs, in the page's order, in one working folder per page, and prints what the page says.

A page marks its blocks with HTML comments, which no renderer shows:

- `<!-- file: NAME -->` before a block: the block is written to the file `NAME`;
- `<!-- run: NAME -->` before a Python block: written to `NAME` and run as `python NAME`;
  a plain block right after it is the output it must print;
- a plain block whose lines start with `$ ` is a terminal session: each command runs
  (`taskloom` and `python` are this interpreter's) and must print the lines below it;
- `<!-- seed -->` before a block: the seed system's own code, shown beside taskloom's form
  and not run here (it needs the seed system);
- `<!-- tested by: tests/PATH.py::test_name -->` before a block: what the block shows needs
  more than one working folder (a package index, a second process) and that test runs it.

Expected output may hold `...`, which stands for any text (doctest's ELLIPSIS). A Python
block without a marker is an error: every example a page shows is run or accounted for.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted((REPO / "docs" / "howto").glob("from-*.md"))

pytestmark = pytest.mark.timeout(300)

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(file|run|seed|tested by)\s*:?\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    language: str
    text: str
    line: int  # where the block starts in the page, for messages
    marker: tuple[str, str] | None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the marker on the line before it (if any)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        previous = lines[index - 1] if index else ""
        marked = _MARKER.match(previous)
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        marker = (marked.group(1), marked.group(2)) if marked else None
        found.append(Block(opening.group(1), "\n".join(body) + "\n", start + 1, marker))
    return found


class Reader:
    """Follows one page in a working folder of its own."""

    def __init__(self, page: Path, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.env = {
            **os.environ,
            "NO_COLOR": "1",
            "COLUMNS": "100",
            "TERM": "dumb",
            "PYTHONPATH": os.pathsep.join([str(folder), str(folder / "src")]),
        }
        self.env.pop("TASKLOOM_DATABASE_URL", None)

    def where(self, block: Block) -> str:
        return f"{self.page.name}:{block.line}"

    def call(self, argv: list[str], block: Block) -> str:
        if argv[0] == "taskloom":
            argv = [sys.executable, "-m", "taskloom", *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        done = subprocess.run(
            argv,
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=240,
        )
        return done.stdout + done.stderr

    def expect(self, want: str, got: str, block: Block, what: str) -> None:
        checker = doctest.OutputChecker()
        if not checker.check_output(want, got, doctest.ELLIPSIS):
            pytest.fail(
                f"{self.where(block)}: {what} printed\n{got}\n--- the page says ---\n{want}"
            )

    def session(self, block: Block) -> None:
        """A terminal session: each `$ command` and the lines it must print."""
        command: str | None = None
        want: list[str] = []
        for line in [*block.text.splitlines(), "$ "]:
            if line.startswith("$ "):
                if command:
                    argv = shlex.split(command, comments=True)
                    got = self.call(argv, block)
                    self.expect("\n".join(want) + "\n" if want else "", got, block, command)
                command, want = line[2:].strip(), []
            else:
                want.append(line)

    def follow(self) -> int:
        """Run every example of the page; return how many ran."""
        ran = 0
        page_blocks = blocks(self.page)
        skip_next = False
        for number, block in enumerate(page_blocks):
            if skip_next:  # the output of a `run:` block, checked with it
                skip_next = False
                continue
            kind, value = block.marker or ("", "")
            if kind == "seed":
                continue
            if kind == "tested by":
                path, _, name = value.partition("::")
                source = (REPO / path).read_text(encoding="utf-8")
                assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.M), (
                    f"{self.where(block)}: no test {value}"
                )
                continue
            if kind == "file":
                target = self.folder / value
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text, encoding="utf-8")
                continue
            if kind == "run":
                (self.folder / value).write_text(block.text, encoding="utf-8")
                got = self.call(["python", value], block)
                following = page_blocks[number + 1] if number + 1 < len(page_blocks) else None
                if following is not None and following.language == "" and following.marker is None:
                    skip_next = True
                    lines = following.text.splitlines()
                    if lines and lines[0] == f"$ python {value}":
                        lines = lines[1:]  # the page shows the command before its output
                    self.expect("\n".join(lines) + "\n", got, block, f"python {value}")
                ran += 1
                continue
            if block.language == "" and block.text.startswith("$ "):
                self.session(block)
                ran += 1
                continue
            assert block.language not in ("python", "py"), (
                f"{self.where(block)}: a Python example that nothing runs: mark it "
                "(file, run, seed or tested by)"
            )
        return ran


@pytest.mark.parametrize("page", PAGES, ids=[page.stem for page in PAGES])
def test_every_example_of_a_migration_page_runs_as_shown(page: Path, tmp_path: Path) -> None:
    assert Reader(page, tmp_path).follow() > 0


def test_the_pages_are_found() -> None:
    assert {page.stem for page in PAGES} >= {"from-aipartnerupflow"}
