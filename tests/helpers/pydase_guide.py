"""pydase's guide to tasks ("Understanding Tasks"), its two examples as a pydase user ports
them: `import pydase` and `from pydase.task.decorator import task` become `import taskloom`
and `from taskloom import loop as task`, `pydase.DataService` becomes `taskloom.Service`;
nothing else changes. The guide's `if __name__ == "__main__":` block, which starts
`pydase.Server`, is left out: `taskloom serve FILE` serves the file instead.

Kept as text, as a user's file is: the tests write them out for `taskloom serve` or run
them as modules.
"""

from __future__ import annotations

import types
from pathlib import Path

__all__ = ["ADVANCED_TASK_SERVICE", "PACED_SENSOR_SERVICE", "SENSOR_SERVICE", "module_of"]

SENSOR_SERVICE = """\
import asyncio
from typing import Any

import taskloom
from taskloom import loop as task


class SensorService(taskloom.Service):
    def __init__(self):
        super().__init__()
        self.readout_frequency = 1.0

    def _process_data(self, data: ...) -> None: ...

    def _read_from_sensor(self) -> Any: ...

    @task(autostart=True)
    async def read_sensor_data(self):
        while True:
            data = self._read_from_sensor()
            self._process_data(data)  # Process the data as needed
            await asyncio.sleep(self.readout_frequency)
"""

ADVANCED_TASK_SERVICE = """\
import taskloom
from taskloom import loop as task


class AdvancedTaskService(taskloom.Service):
    def __init__(self):
        super().__init__()

    @task(
        autostart=True,
        restart_on_exception=True,
        restart_sec=2.0,
        start_limit_interval_sec=10.0,
        start_limit_burst=5,
        exit_on_failure=True,
    )
    async def critical_task(self):
        while True:
            raise Exception("Critical failure")
"""

#: The guide's `SensorService` as the issue reads it (a frequency: it sleeps
#: `1 / readout_frequency`), its sensor and its processing filled in: each reading is a
#: log line, so a test measures the loop's pace from the times the store keeps; and a
#: second loop that shares the instance and logs the frequency it sees.
PACED_SENSOR_SERVICE = """\
import asyncio
import logging
from typing import Any

import taskloom
from taskloom import loop as task

logger = logging.getLogger("sensor")
logger.setLevel(logging.INFO)  # pydase logs at INFO; Python's default would drop these


class SensorService(taskloom.Service):
    def __init__(self):
        super().__init__()
        self.readout_frequency = 5.0
        self.readings = 0

    def _process_data(self, data: Any) -> None:
        self.readings += 1
        logger.info("reading %d at %s Hz", data, self.readout_frequency)

    def _read_from_sensor(self) -> Any:
        return self.readings

    @task(autostart=True)
    async def read_sensor_data(self):
        while True:
            data = self._read_from_sensor()
            self._process_data(data)
            await asyncio.sleep(1 / self.readout_frequency)

    @task(autostart=True)
    async def report(self):
        seen = None
        while True:
            if self.readout_frequency != seen:
                seen = self.readout_frequency
                logger.info("frequency now %s", seen)
            await asyncio.sleep(0.02)
"""


def module_of(name: str, text: str) -> types.ModuleType:
    """Run `text` as the module `name` (its classes' `__module__` is `name`)."""
    module = types.ModuleType(name)
    exec(compile(text, f"<{name}>", "exec"), module.__dict__)
    return module


def write(folder: Path, name: str, text: str) -> Path:
    """Write `text` as `folder/name.py`; return its path."""
    path = folder / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return path
