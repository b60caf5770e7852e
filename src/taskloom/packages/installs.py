"""Installing packages in a serving process: `PackageInstalls`, the package operations
the HTTP API calls, and `package_summary`, the one way a package is shown (API and CLI).

An install takes seconds to minutes (a venv, pip), so `add` and `reinstall` record the
package `installing`, return at once, and install in a thread off the event loop. A package
that becomes ready has its tasks registered in the engine as `<package>/<task>`; a removed
one's are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import PackageRecord
from .collection import INSTALLING, READY, PackageCollector, PackageInstallError
from .definitions import package_tasks
from .errors import PackageError

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["PackageInstalls", "package_summary", "package_task_names"]

logger = logging.getLogger("taskloom.packages")


def package_task_names(record: PackageRecord) -> list[str]:
    """The names of a ready package's tasks (none while it is not ready, nor when its
    manifest no longer reads)."""
    if record.state != READY:
        return []
    try:
        return [t.name for t in package_tasks(record)]
    except PackageError:  # a manifest that no longer reads: shown without tasks
        return []


def package_summary(record: PackageRecord, *, with_log: bool = False) -> dict[str, Any]:
    """A package as the CLI (`taskloom packages --json`, `package show`) and the API show
    it; `with_log` adds the install log."""
    data: dict[str, Any] = {
        "name": record.name,
        "version": record.version,
        "state": record.state,
        "source": record.source,
        "venv": record.venv,
        "manifest": record.manifest_kind,
        "tasks": package_task_names(record),
        "frozen": (record.frozen or "").splitlines(),
        "pip_args": list(record.pip_args),
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if with_log:
        data["log"] = record.log
    return data


class PackageInstalls:
    """The server's package operations: a collector on the engine's store, installs in
    background threads, and the engine's registry kept in step with ready packages."""

    def __init__(self, engine: Engine, venvs_dir: Path) -> None:
        assert engine.store is not None
        self.engine = engine
        self.collector = PackageCollector(engine.store, venvs_dir=venvs_dir)
        self._lock = asyncio.Lock()  # one add/reinstall/remove decides at a time
        self._installs: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # packages this server is installing

    @property
    def installing(self) -> int:
        """Installs still running in this server."""
        return len(self._installs)

    async def wait_installs(self) -> None:
        """Wait for the installs this server started (tests, shutdown)."""
        while self._installs:
            await asyncio.wait(set(self._installs))

    async def add(self, source: str, pip_args: list[str]) -> dict[str, Any]:
        """Record the package `installing` and install it in the background; returns it
        as recorded. A source that is no requirement, wheel or folder is a `PackageError`."""
        async with self._lock:
            record, requirements = await asyncio.to_thread(
                self.collector.prepare_add, source, pip_args=pip_args
            )
            return await self._start(record, requirements)

    async def reinstall(self, name: str) -> dict[str, Any]:
        async with self._lock:
            record = await asyncio.to_thread(self.collector.get, name)
            self._refuse_busy(record, "reinstalled")
            self.engine.unregister(package_task_names(record))
            record, requirements = await asyncio.to_thread(self.collector.prepare_reinstall, name)
            return await self._start(record, requirements)

    async def remove(self, name: str) -> dict[str, Any]:
        async with self._lock:
            record = await asyncio.to_thread(self.collector.get, name)
            self._refuse_busy(record, "removed")
            names = package_task_names(record)
            removed = await asyncio.to_thread(self.collector.remove, name)
            self.engine.unregister(names)
            return package_summary(removed)

    def _refuse_busy(self, record: PackageRecord, what: str) -> None:
        # A package left `installing` by a server that died is not busy: it may be
        # reinstalled or removed.
        if record.name in self._busy:
            raise PackageError(
                f"package {record.name!r} is installing; it can be {what} once its "
                "install has ended"
            )

    async def _start(self, record: PackageRecord, requirements: list[str]) -> dict[str, Any]:
        record.state, record.updated_at = INSTALLING, time.time()
        store = self.collector.store
        await asyncio.to_thread(store.save_package, record)
        shown = package_summary(record)  # before the install thread changes the record
        self._busy.add(record.name)
        task = asyncio.create_task(self._install(record, requirements))
        self._installs.add(task)
        task.add_done_callback(self._installs.discard)
        return shown

    async def _install(self, record: PackageRecord, requirements: list[str]) -> None:
        try:
            done = await asyncio.to_thread(self.collector.install, record, requirements)
            tasks = package_tasks(done)
        except PackageInstallError as exc:
            logger.warning("%s", exc)  # the record keeps the log and the error
            return
        except Exception:
            logger.exception("installing package %r failed", record.name)
            return
        finally:
            self._busy.discard(record.name)
        # A reinstalled package's tasks run from the new venv: the new definitions replace
        # any the engine still has.
        self.engine.unregister(t.name for t in tasks)
        self.engine.register(tasks)
