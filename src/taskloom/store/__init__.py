"""Where taskloom keeps runs: the `Store` protocol, its narrow parts (`RunStore`,
`QueueStore`, `ServiceStore`, `TokenStore`, `PackageStore`, `DeploymentStore`,
`ScheduleStore`, `StatsStore`, `RetentionStore`), and its
SQL and in-memory backends.

`open_store()` turns a URL (or a bare file path, or nothing for the default SQLite file)
into an open store. The URL is never read from the environment here; the CLI does that.
"""

from __future__ import annotations

from .base import (
    ActiveCounts,
    ApiTokenRecord,
    DatabaseStats,
    DeploymentPartRecord,
    DeploymentRecord,
    DeploymentStore,
    HookRecord,
    PackageRecord,
    PackageStore,
    PruneBatch,
    QueueStore,
    RetentionStore,
    RunStats,
    RunStore,
    ScheduleRecord,
    ScheduleStore,
    ServiceAction,
    ServiceAttributeChange,
    ServiceAttributeRecord,
    ServiceAttributeStore,
    ServiceLogLine,
    ServiceRecord,
    ServiceRequest,
    ServiceStartRecord,
    ServiceStore,
    StageRecord,
    StatsBucket,
    StatsStore,
    Store,
    TableStats,
    TaskStats,
    TokenStore,
    WorkerRecord,
    WriteBatch,
)
from .connect import default_database_url, resolve_database_url
from .memory import MemoryStore
from .sql import SqlStore

__all__ = [
    "ActiveCounts",
    "ApiTokenRecord",
    "DatabaseStats",
    "DeploymentPartRecord",
    "DeploymentRecord",
    "DeploymentStore",
    "HookRecord",
    "MemoryStore",
    "PackageRecord",
    "PackageStore",
    "PruneBatch",
    "QueueStore",
    "RetentionStore",
    "RunStats",
    "RunStore",
    "ScheduleRecord",
    "ScheduleStore",
    "ServiceAction",
    "ServiceAttributeChange",
    "ServiceAttributeRecord",
    "ServiceAttributeStore",
    "ServiceLogLine",
    "ServiceRecord",
    "ServiceRequest",
    "ServiceStartRecord",
    "ServiceStore",
    "SqlStore",
    "StageRecord",
    "StatsBucket",
    "StatsStore",
    "Store",
    "TableStats",
    "TaskStats",
    "TokenStore",
    "WorkerRecord",
    "WriteBatch",
    "default_database_url",
    "open_store",
    "resolve_database_url",
]

#: The URL of a `MemoryStore`, for tests and throwaway engines.
MEMORY_URL = "memory://"


def open_store(url: str | None = None, *, auto_migrate: bool = True) -> Store:
    """Open the store at `url` (see `resolve_database_url`) and return it.

    `memory://` gives a `MemoryStore`. With `auto_migrate` off, a database that is not at
    the newest schema raises `StoreError` asking for `taskloom db upgrade`.
    """
    store: Store
    if url is not None and url.strip() == MEMORY_URL:
        store = MemoryStore()
    else:
        store = SqlStore(resolve_database_url(url), auto_migrate=auto_migrate)
    store.open()
    return store
