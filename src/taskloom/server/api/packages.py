"""Packages: list and read (viewers); add, reinstall and remove (admins).

The routes call the serving process's `PackageInstalls` (`packages/installs.py`). An
install takes seconds to minutes, so `add` and `reinstall` answer 202 with the package
`installing`; the client polls `GET /api/packages/{name}` until the state is `ready` or
`failed` (a failed install keeps its log and error there).

Installing runs the package's build and install code. Options that may make pip fetch from
somewhere other than its default index (`pip_args` but those that only narrow what pip
does, such as `--no-index`; a `name @ URL` requirement) need a caller with an admin token:
a server without tokens lets every local process in as admin, and these options are the
ones that turn a local caller into code run from anywhere. Such a server refuses them with
403; `taskloom package add` on the server's machine, or a token, allows them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from ...packages.collection import read_source
from ...packages.errors import PackageError
from ...packages.installs import PackageInstalls, package_summary
from ..tokens import Caller, ForbiddenError
from .deps import Admin, Viewer, responses
from .models import PackageAddIn, PackageDetailOut, PackageOut

__all__ = ["router"]

router = APIRouter(prefix="/packages", tags=["packages"])


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
    return [package_summary(r) for r in records]


@router.get(
    "/{name}",
    response_model=PackageDetailOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_package(name: str, installs: InstallsDep) -> dict[str, Any]:
    """One package with its install log; 404 `UnknownPackageError`."""
    return package_summary(await asyncio.to_thread(installs.collector.get, name), with_log=True)


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
    try:
        await asyncio.to_thread(read_source, body.source)
    except PackageError as exc:
        raise RequestValidationError(
            [{"loc": ("body", "source"), "msg": exc.message, "type": "value_error"}]
        ) from None
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
