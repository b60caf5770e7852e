"""The streams how-to's examples, run as they are written there."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest

from support import WAIT

HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto" / "streams.md"


def python_block(heading: str) -> str:
    """The first Python block after `heading` in the how-to."""
    text = HOWTO.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n") :]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None, f"no Python block under {heading!r}"
    return found.group(1)


async def test_the_first_pipeline_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # `taskloom.Engine()` keeps its SQLite file here
    module = types.ModuleType("streams_howto")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(python_block("A first pipeline"), str(HOWTO), "exec"), module.__dict__)
    # It used to hang for ever: b@1001 waited for `a` to move past 1001.
    await asyncio.wait_for(module.main(), WAIT)
    printed = capsys.readouterr().out.splitlines()
    assert "Message(timestamp=1001, value=14, metadata=None)" in printed
    assert (tmp_path / ".taskloom" / "taskloom.db").exists()
