"""The tables of the SQL store, as SQLAlchemy Core metadata.

Decisions kept deliberately simple so one schema serves SQLite and PostgreSQL:

* Times are `Double` seconds since the epoch (UTC). Floats are what the engine works with,
  compare and index fast, and need no time-zone conversion on either database.
* JSON values (inputs, result, error, config) are `Text` holding JSON. The store encodes
  and decodes them itself, so both databases hold the same bytes and no dialect-specific
  JSON type processing runs on the hot write path.

The revisions in `migrations/versions` create exactly these tables (0001 runs, attempts,
log lines and workers; 0002 services and their starts; 0003 service requests and
service log lines; 0004 pipeline deployments and their stages; 0005 packages; 0006 API
tokens; ... 0014 the processes running a deployment; 0015 the rollup's rows per writing
session; 0016 what made each attempt's call; 0017 the idempotency key's index of keyed
runs only, and free room on PostgreSQL's `attempts` pages); a test compares the two with
Alembic's autogenerate, so change both together (with a new revision).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "ATTEMPT_COLUMNS",
    "LOG_COLUMNS",
    "RUN_COLUMNS",
    "api_tokens",
    "attempts",
    "hooks",
    "log_lines",
    "metadata",
    "packages",
    "pipeline_deployments",
    "pipeline_parts",
    "pipeline_stages",
    "run_changes",
    "run_counts",
    "run_durations",
    "runs",
    "schedules",
    "service_attribute_changes",
    "service_attributes",
    "service_log_lines",
    "service_requests",
    "service_starts",
    "services",
    "workers",
]

#: Constraint names are fixed so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: 64-bit ids on PostgreSQL; on SQLite an `INTEGER PRIMARY KEY` is an alias of the rowid,
#: the cheapest key SQLite has (a `BIGINT` key would add a separate index).
LogId = BigInteger().with_variant(Integer(), "sqlite")

#: The share of each `attempts` page PostgreSQL fills with new rows (see `attempts`).
ATTEMPTS_FILLFACTOR = 50

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), nullable=False),
    Column("task", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("parent_id", String(36), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("scheduled_at", Double, nullable=True),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("progress", Double, nullable=True),
    Column("progress_message", Text, nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("config", Text, nullable=True),
    Column("queue", String(100), nullable=False, server_default="default"),
    Column("lease", Integer, nullable=False, server_default="0"),
    # The W3C trace context (`traceparent`, `tracestate`) of the span that submitted the
    # run, as JSON: an attempt's span is its child in whichever process executes it.
    Column("trace_context", Text, nullable=True),
    PrimaryKeyConstraint("id"),
    # Unique among the runs that have a key, and only those in the index: most runs have
    # none, and a NULL entry would be written with every insert and (on PostgreSQL) every
    # update of a run.
    Index(
        "uq_runs_idempotency_key",
        "idempotency_key",
        unique=True,
        sqlite_where=text("idempotency_key IS NOT NULL"),
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    # Listing is newest first, optionally filtered by task or status.
    Index(None, "task", "created_at"),
    Index(None, "status", "created_at"),
    Index(None, "created_at"),
    # Most runs have no parent: a partial index keeps them out of it, so inserting one
    # costs no entry (`parent_id = ?` implies `IS NOT NULL`, so lookups still use it).
    Index(
        None,
        "parent_id",
        sqlite_where=text("parent_id IS NOT NULL"),
        postgresql_where=text("parent_id IS NOT NULL"),
    ),
    # What a worker claims: unclaimed pending runs of its queues, by priority then age. The
    # leading column is an equality, so a backlog in a queue nobody serves costs a claim
    # nothing; the index holds only claimable runs, so a run leaves it when it is claimed.
    Index(
        "ix_runs_claimable",
        "queue",
        text("priority DESC"),
        "created_at",
        "id",
        sqlite_where=text("status = 'pending' AND worker_id IS NULL"),
        postgresql_where=text("status = 'pending' AND worker_id IS NULL"),
    ),
    # The runs a worker holds (reaping a dead one, concurrency counts).
    Index(
        "ix_runs_held",
        "worker_id",
        "task",
        sqlite_where=text("worker_id IS NOT NULL AND status IN ('pending', 'running')"),
        postgresql_where=text("worker_id IS NOT NULL AND status IN ('pending', 'running')"),
    ),
    # Runs whose cancellation was requested, by holder: a worker reads its requests each
    # time another process may have changed the database, so that read must stay small.
    Index(
        "ix_runs_cancel_requested",
        "worker_id",
        sqlite_where=text("cancel_requested"),
        postgresql_where=text("cancel_requested"),
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(36), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("worker_id", String(64), nullable=True),
    # What made the call (`serial`, `dask tcp://...`) and the Dask dashboard's address.
    Column("executor", String(200), nullable=True),
    Column("dashboard", Text, nullable=True),
    PrimaryKeyConstraint("run_id", "number"),
    # Half of each page is left free on PostgreSQL: an attempt's end then fits beside its
    # start and is a HOT update (no index entry written), as no column it changes is
    # indexed.
    postgresql_with={"fillfactor": ATTEMPTS_FILLFACTOR},
)

log_lines = Table(
    "log_lines",
    metadata,
    Column("id", LogId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    # A run's lines in order, paged by id.
    Index(None, "run_id", "id"),
)

#: Schedules: from task options (`source` "task", registered when a worker serves the
#: task) and stored through the CLI or API ("stored"). `next_fire_at` is the first tick
#: not fired yet (None: the rule has ended); workers fire what is due and move it on.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("task", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("inputs", Text, nullable=False),
    Column("start_at", Double, nullable=True),
    Column("end_at", Double, nullable=True),
    Column("jitter", Double, nullable=False),
    Column("catch_up", String(8), nullable=False),
    Column("max_catch_up", Integer, nullable=False),
    Column("source", String(8), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("next_fire_at", Double, nullable=True),
    Column("last_fire_at", Double, nullable=True),
    # A run asked for now (`taskloom schedule trigger`): the next look of a worker serving
    # the task starts it, recorded as manual, and clears this.
    Column("trigger_requested_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # What is due: the schedules in force, by their next tick.
    Index(
        "ix_schedules_triggered",
        "name",
        sqlite_where=text("trigger_requested_at IS NOT NULL"),
        postgresql_where=text("trigger_requested_at IS NOT NULL"),
    ),
    Index(
        "ix_schedules_due",
        "next_fire_at",
        sqlite_where=text("NOT paused"),
        postgresql_where=text("NOT paused"),
    ),
)

#: Runs that ended, counted per time bucket: for each `grain` (a bucket's seconds, see
#: `rollup.GRAINS`), the bucket's start (a multiple of it, epoch seconds), the task and the
#: status reached (completed, failed or cancelled). Written in the same commit as the
#: ends it counts, so it is exact; a window of charts reads a few hundred rows per task.
#: `shard` is the writing session's (its PostgreSQL backend pid; 0 on SQLite, which has one
#: writer at a time): two workers never update the same row, so one paused in the middle
#: of a commit holds up no other. Readers sum the shards.
run_counts = Table(
    "run_counts",
    metadata,
    Column("grain", Integer, nullable=False),
    Column("bucket_start", Double, nullable=False),
    Column("task", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("shard", Integer, nullable=False, server_default=text("0")),
    Column("runs", BigInteger, nullable=False),
    PrimaryKeyConstraint("grain", "bucket_start", "task", "status", "shard"),
    # On SQLite the rows are the primary key's b-tree itself: one b-tree to update per
    # UPSERT instead of two, and a window's rows read in key order.
    sqlite_with_rowid=False,
)

#: The durations of the same runs (those that started), as histograms: per grain, bucket
#: and task, how many runs fell in each logarithmic bin (`rollup.duration_bin`), and the
#: longest of them; sharded as `run_counts` is.
run_durations = Table(
    "run_durations",
    metadata,
    Column("grain", Integer, nullable=False),
    Column("bucket_start", Double, nullable=False),
    Column("task", String(200), nullable=False),
    Column("bin", Integer, nullable=False),
    Column("shard", Integer, nullable=False, server_default=text("0")),
    Column("runs", BigInteger, nullable=False),
    Column("max_seconds", Double, nullable=False),
    PrimaryKeyConstraint("grain", "bucket_start", "task", "bin", "shard"),
    sqlite_with_rowid=False,
)

#: Webhooks: `POST /api/hooks/{name}` starts a run of `task` with the JSON body as its
#: inputs when the body is signed with `secret` (HMAC-SHA256). The secret is kept as it
#: is: checking a signature needs it.
hooks = Table(
    "hooks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("task", String(200), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
)

#: On a SQLite file, what each commit changed, written while another engine uses the file:
#: the `id status` lines that PostgreSQL carries in NOTIFY payloads (see `queue.notices`),
#: so an engine in another process learns which runs to read back. Kept `JOURNAL_KEEP`
#: seconds.
run_changes = Table(
    "run_changes",
    metadata,
    Column("id", LogId, primary_key=True, autoincrement=True),
    Column("created_at", Double, nullable=False),
    Column("lines", Text, nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
    # What it serves: a name people give it, its queues (a JSON list; null: every queue of
    # the tasks it serves) and how many runs it executes at once (null: it executes none).
    Column("name", String(200), nullable=True),
    Column("queues", Text, nullable=True),
    Column("concurrency", Integer, nullable=True),
    # Its lease, on the database's clock: renewed with each heartbeat; a worker whose lease
    # ran out is dead even while its process holds its lock (paused, cut off).
    Column("expires_at", Double, nullable=True),
    # When a reaper found it dead and gave its runs back (it never comes back as itself).
    Column("lost_at", Double, nullable=True),
    PrimaryKeyConstraint("id"),
)

#: The state of each service a supervisor runs, kept across processes.
services = Table(
    "services",
    metadata,
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("since", Double, nullable=False),
    Column("starts", Integer, nullable=False),
    Column("restarts", Integer, nullable=False),
    Column("restart_times", Text, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("stop_timed_out", Boolean, nullable=False),
    Column("config", Text, nullable=True),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("name"),
)

#: Every start of a service; read newest first through the primary key.
service_starts = Table(
    "service_starts",
    metadata,
    Column("service", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("restart", Boolean, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("exit_reason", String(16), nullable=True),
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("service", "number"),
)

#: Requests to the serving process to start, stop or restart a service (from the CLI or
#: any other process); the serving process performs them and records the outcome.
service_requests = Table(
    "service_requests",
    metadata,
    Column("id", LogId, primary_key=True, autoincrement=True),
    Column("service", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("config", Text, nullable=True),
    Column("requested_at", Double, nullable=False),
    Column("handled_at", Double, nullable=True),
    Column("outcome", Text, nullable=True),
    # Who asked: `cli:<user>` from the command line; NULL for requests older than 0013.
    Column("requested_by", String(200), nullable=True),
)

#: The log lines of services, read per service in id order.
service_log_lines = Table(
    "service_log_lines",
    metadata,
    Column("id", LogId, primary_key=True, autoincrement=True),
    Column("service", String(200), nullable=False),
    Column("start_number", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Index(None, "service", "id"),
)

#: The current value (JSON) of each public attribute of a `Service` class with loops,
#: and who set it: NULL for the class's default (replaced when the default changes), else
#: `cli:<user>`, `token:<name>`, `http` or `service` (the class's own code). The instance
#: starts with the values someone set.
service_attributes = Table(
    "service_attributes",
    metadata,
    Column("service", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("updated_by", String(200), nullable=True),
    PrimaryKeyConstraint("service", "name"),
)

#: Every change of an attribute made from outside the service (the CLI, the API, a
#: client, the dashboard), with who made it; read per service, newest first.
service_attribute_changes = Table(
    "service_attribute_changes",
    metadata,
    Column("id", LogId, primary_key=True, autoincrement=True),
    Column("service", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Column("changed_at", Double, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Index(None, "service", "id"),
)

#: Tokens of the HTTP API: only a SHA-256 hash of each secret is kept; a token is found by
#: its hash (unique, so indexed) and is revoked by setting `revoked_at`.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("token_hash"),
)

#: Deployments of stream pipelines, by name; `stop_requested` is how other processes
#: (the CLI) ask the processes running one to stop it.
pipeline_deployments = Table(
    "pipeline_deployments",
    metadata,
    Column("name", String(200), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("bus", Text, nullable=False),
    Column("topics", Text, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("stopped_at", Double, nullable=True),
    Column("stop_requested", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
    # The pipeline's stages as the deploying process read them (task, topics, config and
    # options; JSON): what a process joining the deployment (`task.run_sync()`) wires
    # itself from. NULL for deployments recorded before revision 0014.
    Column("stages", Text, nullable=True),
    PrimaryKeyConstraint("name"),
)

#: The processes running a deployment, one row each (a part runs some of its stages): the
#: deployment is stopped once every part is stopped (or lost: not heard from in a while).
pipeline_parts = Table(
    "pipeline_parts",
    metadata,
    Column("deployment", String(200), nullable=False),
    Column("part", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("stages", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("stopped_at", Double, nullable=True),
    Column("updated_at", Double, nullable=False),
    Column("status_interval", Double, nullable=False),
    PrimaryKeyConstraint("deployment", "part"),
)

#: The status of each stage of a deployment, saved periodically by the process running it.
pipeline_stages = Table(
    "pipeline_stages",
    metadata,
    Column("deployment", String(200), nullable=False),
    Column("stage", String(200), nullable=False),
    Column("task", String(400), nullable=False),
    Column("state", String(16), nullable=False),
    Column("messages_in", BigInteger, nullable=False),
    Column("messages_out", BigInteger, nullable=False),
    Column("dropped", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("restarts", BigInteger, nullable=False),
    Column("last_timestamp", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("deployment", "stage"),
)

#: Column names in table order; rows read with `select(table)` come back in this order.
RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in runs.columns)
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(c.name for c in attempts.columns)
LOG_COLUMNS: tuple[str, ...] = tuple(c.name for c in log_lines.columns)

#: Task packages, each installed in its own virtual environment.
packages = Table(
    "packages",
    metadata,
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("version", String(100), nullable=True),
    Column("venv", Text, nullable=True),
    Column("python", Text, nullable=True),
    Column("root", Text, nullable=True),
    Column("manifest_kind", String(16), nullable=True),
    Column("manifest", Text, nullable=True),
    Column("frozen", Text, nullable=True),
    Column("pip_args", Text, nullable=False),
    Column("log", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("name"),
)
