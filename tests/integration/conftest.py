"""Store fixtures: one suite runs against memory, a SQLite file and PostgreSQL.

PostgreSQL comes from `TASKLOOM_TEST_POSTGRES_URL` (default: the `test` database on
127.0.0.1:5432 as `postgres`, trust auth). Each test gets a database of its own, created
from there and dropped after. The store fixtures (`backend`, `shared_backend`,
`database_url`) clone it from a template migrated once a session, as a store would leave
a new database on its first open; `postgres_database` stays empty, for the tests of the
migrations themselves. When the server cannot be reached the PostgreSQL tests are
skipped, except under `CI=true`, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import taskloom.store
from taskloom.store import MemoryStore, SqlStore, Store
from taskloom.store.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "TASKLOOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: The folder that holds the `taskloom` package, for the Python of a child process.
PACKAGE_ROOT = str(Path(taskloom.store.__file__).resolve().parents[2])

SHARED_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
BACKENDS = ["memory", *SHARED_BACKENDS]


def _libpq(url: str) -> str:
    """The URL as psycopg itself takes it (no `+psycopg` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server, after checking that it answers."""
    try:
        with psycopg.connect(_libpq(POSTGRES_URL), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc})".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{reason}; CI needs it: start the server or set TASKLOOM_TEST_POSTGRES_URL"
            )
        pytest.skip(f"{reason}; set TASKLOOM_TEST_POSTGRES_URL to run these tests")
    return POSTGRES_URL


@contextmanager
def fresh_postgres_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server of `admin_url`, empty or a copy of the database
    `template`; dropped on exit."""
    name = f"taskloom_test_{uuid.uuid4().hex[:16]}"
    copied = f' TEMPLATE "{template}"' if template is not None else ""
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copied}')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with fresh_postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """The name of a database upgraded to the newest schema revision, to copy from.

    Migrating a new PostgreSQL database takes most of a second; copying one already
    migrated takes a tenth of it. Nothing connects to the template after its upgrade
    (PostgreSQL copies only a database without sessions), and no test writes to it.
    """
    with fresh_postgres_database(postgres_server) as url:
        upgrade(url)  # disposes of its connections before it returns
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture
def migrated_postgres_database(postgres_server: str, postgres_template: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database at the newest schema revision and with no rows,
    as a store's first open leaves it; dropped after the test."""
    with fresh_postgres_database(postgres_server, template=postgres_template) as url:
        yield url


@dataclass
class Backend:
    """A database under test; `open()` gives another store on the same data."""

    name: str
    url: str
    _stores: list[Store] = field(default_factory=list)
    _memory: MemoryStore | None = None

    @property
    def shared(self) -> bool:
        """Whether other stores and other processes can open this database."""
        return self.name != "memory"

    def open(self) -> Store:
        store: Store
        if self.name == "memory":
            store = self._memory = self._memory or MemoryStore()
        else:
            store = SqlStore(self.url)
        store.open()
        self._stores.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self._stores):
            store.close()
        self._stores.clear()


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    if name == "memory":
        found = Backend(name, "memory://")
    elif name == "sqlite":
        found = Backend(name, f"sqlite:///{tmp_path / 'db' / 'taskloom.db'}")
    else:
        found = Backend(name, request.getfixturevalue("migrated_postgres_database"))
    try:
        yield found
    finally:
        found.close_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn."""
    yield from _backend(request, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The backends that other stores and processes can open too (not memory)."""
    yield from _backend(request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


WORKER_SCRIPT = """
import os, sys, time
from taskloom.store import open_store

store = open_store(sys.argv[1])
store.register_worker(sys.argv[2], hostname="child", pid=os.getpid())
print("READY", flush=True)
time.sleep(600)
"""


@contextmanager
def worker_process(url: str, worker_id: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that registers `worker_id` on `url` and sleeps, once it is READY."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    with subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, url, worker_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until READY, or EOF if the child died
            if line.strip() != "READY":
                proc.kill()
                _, stderr = proc.communicate()
                pytest.fail(f"the worker process did not start: {line!r}\n{stderr}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def spawn_worker() -> Callable[[str, str], AbstractContextManager[subprocess.Popen[str]]]:
    """`worker_process`, for tests (helpers in conftest are not importable by name)."""
    return worker_process


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for engine tests: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    url: str = request.getfixturevalue("migrated_postgres_database")
    return url
