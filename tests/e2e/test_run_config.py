"""`taskloom run --config`: KEY=VALUE pairs as for services, or a JSON object."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def streams(cli: Cli) -> Cli:
    shutil.copy(REPO / "examples" / "streams.py", cli.cwd / "streams.py")
    return cli


@pytest.mark.parametrize(
    ("config", "result"),
    [
        (["step=5"], "8"),  # 1 + 2 + a count that grew by 5
        (['{"step": 3}'], "6"),
        (['{"step": 3}', "step=10"], "13"),  # later values win
    ],
)
def test_config_as_pairs_or_json(streams: Cli, config: list[str], result: str) -> None:
    options = [item for value in config for item in ("--config", value)]
    done = streams("run", "streams.py:adder", "a=1", "b=2", *options)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == result


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("step", "task 'stream_adder': expected --config as a JSON object or KEY=VALUE"),
        ("step=many", "task 'stream_adder': config 'step': expected an integer"),
        ("{step", "task 'stream_adder': --config is not valid JSON"),
    ],
)
def test_a_bad_config_is_a_usage_error(streams: Cli, value: str, message: str) -> None:
    done = streams("run", "streams.py:adder", "a=1", "b=2", "--config", value)
    assert done.returncode == 2
    assert message in done.stderr
