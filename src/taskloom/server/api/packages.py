"""Packages: list and read (viewers); add, reinstall and remove (admins).

An install takes seconds to minutes (a venv, pip), so `add` and `reinstall` record the
package `installing`, answer 202 at once, and install in a thread off the event loop; the
client polls `GET /api/packages/{name}` until the state is `ready` or `failed` (a failed
install keeps its log and error there). A package that becomes ready has its tasks
registered in the server's engine as `<package>/<task>`; a removed one's are forgotten.

Installing runs the package's build and install code. Options that may make pip fetch from
somewhere other than its default index (`pip_args` but those that only narrow what pip
does, such as `--no-index`; a `name @ URL` requirement) need a caller with an admin token:
a server without tokens lets every local process in as admin, and these options are the
ones that turn a local caller into code run from anywhere. Such a server refuses them with
403; `taskloom package add` on the server's machine, or a token, allows them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from ...engine import Engine
from ...packages.collection import (
    INSTALLING,
    READY,
    PackageCollector,
    PackageInstallError,
    read_source,
)
from ...packages.definitions import package_tasks
from ...packages.errors import PackageError
from ...store import PackageRecord
from ..tokens import Caller, ForbiddenError
from .deps import Admin, Viewer, responses
from .models import PackageAddIn, PackageDetailOut, PackageOut

__all__ = ["PackageInstalls", "package_out", "router"]

logger = logging.getLogger("taskloom.server")

router = APIRouter(prefix="/packages", tags=["packages"])


def _task_names(record: PackageRecord) -> list[str]:
    if record.state != READY:
        return []
    try:
        return [t.name for t in package_tasks(record)]
    except PackageError:  # a manifest that no longer reads: shown without tasks
        return []


def package_out(record: PackageRecord, *, with_log: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": record.name,
        "version": record.version,
        "state": record.state,
        "source": record.source,
        "venv": record.venv,
        "manifest": record.manifest_kind,
        "tasks": _task_names(record),
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
        try:
            await asyncio.to_thread(read_source, source)
        except PackageError as exc:
            raise RequestValidationError(
                [{"loc": ("body", "source"), "msg": exc.message, "type": "value_error"}]
            ) from None
        async with self._lock:
            record, requirements = await asyncio.to_thread(
                self.collector.prepare_add, source, pip_args=pip_args
            )
            return await self._start(record, requirements)

    async def reinstall(self, name: str) -> dict[str, Any]:
        async with self._lock:
            record = await asyncio.to_thread(self.collector.get, name)
            self._refuse_busy(record, "reinstalled")
            self.engine.unregister(_task_names(record))
            record, requirements = await asyncio.to_thread(self.collector.prepare_reinstall, name)
            return await self._start(record, requirements)

    async def remove(self, name: str) -> dict[str, Any]:
        async with self._lock:
            record = await asyncio.to_thread(self.collector.get, name)
            self._refuse_busy(record, "removed")
            names = _task_names(record)
            removed = await asyncio.to_thread(self.collector.remove, name)
            self.engine.unregister(names)
            return package_out(removed)

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
        shown = package_out(record)  # before the install thread changes the record
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


def _installs(request: Request) -> PackageInstalls:
    installs: PackageInstalls = request.app.state.packages
    return installs


InstallsDep = Annotated[PackageInstalls, Depends(_installs)]


@router.get(
    "", response_model=list[PackageOut], dependencies=[Viewer], responses=responses(401, 403)
)
async def list_packages(installs: InstallsDep) -> list[dict[str, Any]]:
    """Every package recorded in the server's database, by name."""
    records = await asyncio.to_thread(installs.collector.packages)
    return [package_out(r) for r in records]


@router.get(
    "/{name}",
    response_model=PackageDetailOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_package(name: str, installs: InstallsDep) -> dict[str, Any]:
    """One package with its install log; 404 `UnknownPackageError`."""
    return package_out(await asyncio.to_thread(installs.collector.get, name), with_log=True)


#: `pip install` options that only narrow what pip does: allowed without a token. Any
#: other may name an index, a link page, a requirements file or a VCS URL.
_NARROWING_PIP_ARGS = frozenset(
    {"--no-index", "--no-deps", "--pre", "--prefer-binary", "--no-cache-dir", "-q", "--quiet"}
)


def _fetches_elsewhere(body: PackageAddIn) -> str | None:
    """What in the request may make pip fetch from outside its default index."""
    others = [arg for arg in body.pip_args if arg not in _NARROWING_PIP_ARGS]
    if others:
        return f"pip_args {others!r}"
    if "://" in body.source or re.search(r"\s@", body.source):
        return f"the source {body.source!r} (a URL)"
    return None


@router.post(
    "",
    status_code=202,
    response_model=PackageOut,
    responses=responses(401, 403, 409, 422),
)
async def add_package(
    body: PackageAddIn, installs: InstallsDep, caller: Annotated[Caller, Admin]
) -> dict[str, Any]:
    """Start installing a package; 202 with it `installing`. Poll `GET /api/packages/{name}`
    for `ready` or `failed`. 422 for a source that is no requirement, wheel or folder;
    409 `PackageError` when the package is recorded already (and not failed). 403 on a
    server without tokens for `pip_args` (but `--no-index`, `--no-deps`, `--pre`,
    `--prefer-binary`, `--no-cache-dir`, `--quiet`) or a URL source."""
    elsewhere = _fetches_elsewhere(body)
    if elsewhere is not None and caller.token_id is None:
        raise ForbiddenError(
            f"package {body.source!r}: {elsewhere} would make pip fetch code from outside the "
            "default index, which needs an admin token and this server has no tokens: run "
            "`taskloom package add` on the server's machine, or create a token with "
            "`taskloom token create --role admin` and restart the server"
        )
    return await installs.add(body.source, body.pip_args)


@router.post(
    "/{name}/reinstall",
    status_code=202,
    response_model=PackageOut,
    dependencies=[Admin],
    responses=responses(401, 403, 404, 409),
)
async def reinstall_package(name: str, installs: InstallsDep) -> dict[str, Any]:
    """Make the package's venv again (from its frozen requirements when it was ready);
    202 with it `installing`; 409 while an install of it runs."""
    return await installs.reinstall(name)


@router.delete(
    "/{name}",
    response_model=PackageOut,
    dependencies=[Admin],
    responses=responses(401, 403, 404, 409),
)
async def remove_package(name: str, installs: InstallsDep) -> dict[str, Any]:
    """Forget a package and delete its venv; its tasks are no longer served (their runs are
    kept). Returns the package as it was; 409 while an install of it runs."""
    return await installs.remove(name)
