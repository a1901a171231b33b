"""subsync's own state database (SUBSYNC_DB_URL): file manifest, event versions, event ledger,
decisions, rejects and the files fetched from Real Magnet. subsync owns this schema and creates
it on first use. The rule each table keeps is written once, in docs/internals.md ("The state
tables").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

file_manifest = sa.Table(
    "file_manifest",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(1024), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime", sa.Float, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("days", sa.Text, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

event_versions = sa.Table(
    "event_versions",
    metadata,
    sa.Column("file_id", sa.Integer, nullable=False),
    sa.Column("line_number", sa.Integer, nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.BigInteger, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Index("ix_event_versions_event_id", "event_id"),
    sa.Index("ix_event_versions_file_id", "file_id"),
    sa.Index("ix_event_versions_day", "day"),
)

event_ledger = sa.Table(
    "event_ledger",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), nullable=False, index=True),
    sa.Column("file_id", sa.Integer, nullable=False),
    sa.Column("line_number", sa.Integer, nullable=False),
    sa.Column("master_customer_id", sa.String(24), nullable=False),
    sa.Column("sub_customer_id", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("scope_type", sa.String(32), nullable=False),
    sa.Column("scope_id", sa.String(255), nullable=False),
    sa.Column("scope_name", sa.String(255)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("force_optin", sa.Boolean, nullable=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("timestamp_subscribed", sa.DateTime),
    # A member's events from a checkpoint on are one range of this index.
    sa.Index("ix_event_ledger_member_time", "master_customer_id", "sub_customer_id", "occurred_at"),
)


decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("master_customer_id", sa.String(24), nullable=False),
    sa.Column("sub_customer_id", sa.Integer, nullable=False),
    sa.Column("area", sa.String(300), nullable=False),
    sa.Column("mapped", sa.Boolean, nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("status_change", sa.Boolean, nullable=False),
    sa.Column("status_after", sa.String(16)),
    sa.Column("first_time", sa.String(32)),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("decided_in_run", sa.String(64)),
    sa.Column("decided_at", sa.DateTime, nullable=False),
    # No member index: a replayed member's decisions are found through the ledger's (its events'
    # ids), and a million random inserts into one more index cost more than the rest of the table.
    sa.Index("ix_decisions_day", "day"),
)

key_states = sa.Table(
    "key_states",
    metadata,
    sa.Column("master_customer_id", sa.String(24), primary_key=True),
    sa.Column("sub_customer_id", sa.Integer, primary_key=True),
    sa.Column("area", sa.String(300), primary_key=True),
    sa.Column("mapped", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("status_date", sa.DateTime, nullable=False),
    sa.Column("status_source", sa.String(32), nullable=False),
    sa.Column("subscribed_date", sa.DateTime),
    sa.Column("first_subscribed_date", sa.DateTime),
    sa.Column("first_unsubscribed_date", sa.DateTime),
    sa.Column("last_subscribe_request_date", sa.DateTime),
    sa.Column("last_unsubscribe_request_date", sa.DateTime),
    sa.Column("min_rank", sa.Integer, nullable=False),
    sa.Column("subscribe_applied", sa.Boolean, nullable=False),
    sa.Column("through_at", sa.DateTime, nullable=False),
    sa.Column("through_event_id", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
)

work_queue = sa.Table(
    "work_queue",
    metadata,
    sa.Column("step", sa.String(16), primary_key=True),
    sa.Column("master_customer_id", sa.String(24), primary_key=True),
    sa.Column("sub_customer_id", sa.Integer, primary_key=True),
    sa.Column("since_at", sa.DateTime),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("ticket", sa.String(32), nullable=False),
    sa.Column("queued_at", sa.DateTime, nullable=False),
)

activity_records = sa.Table(
    "activity_records",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("activity_id", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
)

activity_write_log = sa.Table(
    "activity_write_log",
    metadata,
    sa.Column("write_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("activity_id", sa.BigInteger, primary_key=True),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("logged_at", sa.DateTime, nullable=False),
)

rejected_records = sa.Table(
    "rejected_records",
    metadata,
    sa.Column("reject_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("day", sa.String(10), nullable=False, index=True),
    sa.Column("file_id", sa.Integer),
    sa.Column("source_file", sa.String(1024), nullable=False),
    sa.Column("line_number", sa.Integer),
    sa.Column("event_id", sa.String(255)),
    sa.Column("reasons", sa.String(512), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("original_values", sa.Text),
    sa.Column("rejected_in_run", sa.String(64)),
    sa.Column("rejected_at", sa.DateTime, nullable=False),
)

quality_history = sa.Table(
    "quality_history",
    metadata,
    sa.Column("label", sa.String(32), primary_key=True),
    sa.Column("figures", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

fetched_files = sa.Table(
    "fetched_files",
    metadata,
    sa.Column("fetch_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("remote_name", sa.String(1024), nullable=False, index=True),
    sa.Column("remote_size", sa.BigInteger, nullable=False),
    sa.Column("remote_modified", sa.DateTime),
    sa.Column("local_name", sa.String(1024), nullable=False, unique=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
)

# The notices outbox (core/outbox.py): one row per notice and channel, so a notice is queued once
# however often its sensor looks, and a channel that was down is tried again on the next tick.
notices = sa.Table(
    "notices",
    metadata,
    sa.Column("notice_key", sa.String(128), primary_key=True),
    sa.Column("channel", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    # Digests of the URLs already sent to: a retry skips them.
    sa.Column("delivered", sa.Text, nullable=False, default=""),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("queued_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

REJECT_COLUMNS: list[str] = [c.name for c in rejected_records.columns if c.name != "reject_id"]
DECISION_COLUMNS: list[str] = [c.name for c in decisions.columns]


def create_state_engine(url: str) -> Engine:
    """An engine on the state database, with its schema in place."""
    # Several runs may share one SQLite state file; wait for a lock instead of failing.
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
    engine = sa.create_engine(url, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        sa.event.listen(engine, "connect", _postgres_settings)
    with engine.begin() as conn:
        # Two runs starting at once on a new database must not both create the tables.
        lock(conn)
        _rebuild_changed_caches(conn)
        _add_gone_column(conn)
        metadata.create_all(conn)
        _queue_owed_work(conn)
        # create_all adds missing tables only; an index added since a table was made is added here.
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        for name in _RETIRED_INDEXES:
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    return engine


def _rebuild_changed_caches(conn: Connection) -> None:
    """Drop key_states when its columns are not this version's: it only caches resolution
    checkpoints, so the members are replayed from the ledger and it fills again."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(key_states.name):
        return
    present = {column["name"] for column in inspector.get_columns(key_states.name)}
    if present != {column.name for column in key_states.columns}:
        key_states.drop(conn)


def _add_gone_column(conn: Connection) -> None:
    """Add `gone` to activity_records made before it (no record of theirs is gone)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(activity_records.name):
        return
    if "gone" not in {column["name"] for column in inspector.get_columns(activity_records.name)}:
        conn.execute(
            sa.text("ALTER TABLE activity_records ADD COLUMN gone BOOLEAN NOT NULL DEFAULT false")
        )


# Tables of the generation counters that work_queue replaced (2026-12-02). A database that has
# them may hold work they owed: its members are queued once, and the tables dropped.
_RETIRED_TABLES: tuple[str, ...] = (
    "ledger_generation",
    "resolution_generation",
    "pending_writes",
    "unresolved_slices",
)


def _queue_owed_work(conn: Connection) -> None:
    """Queue what a database of the counters' era still owed: members with an undecided event
    for resolution, and members a pending run decided for their whole history's writes."""
    inspector = sa.inspect(conn)
    retired = [name for name in _RETIRED_TABLES if inspector.has_table(name)]
    if not retired:
        return
    now = datetime.now(UTC).replace(tzinfo=None)
    ledger, queue = event_ledger, work_queue
    member = [ledger.c.master_customer_id, ledger.c.sub_customer_id]
    decided = sa.exists().where(decisions.c.event_id == ledger.c.event_id)
    owed = [sa.select(sa.literal("resolve"), *member).where(~decided).distinct()]
    if "pending_writes" in retired:
        pending = sa.table("pending_writes", sa.column("run_id"), sa.column("target"))
        owed.append(
            sa.select(pending.c.target, *member)
            .join(decisions, decisions.c.event_id == ledger.c.event_id)
            .join(pending, pending.c.run_id == decisions.c.decided_in_run)
            .distinct()
        )
    names = ["step", "master_customer_id", "sub_customer_id", "ticket", "queued_at"]
    for select in owed:
        stamped = select.add_columns(sa.literal("upgrade"), sa.literal(now, sa.DateTime))
        conn.execute(queue.insert().from_select(names, stamped))
    for name in retired:
        conn.execute(sa.text(f"DROP TABLE {name}"))


# Indexes an older version made that nothing reads any more, but every insert would maintain.
_RETIRED_INDEXES: tuple[str, ...] = ("ix_decisions_member", "ix_decisions_run")


# One advisory lock for every subsync transaction that writes state on PostgreSQL.
STATE_LOCK_KEY = int.from_bytes(b"subsyncS", "big") & 0x7FFFFFFFFFFFFFFF


def lock(conn: Connection) -> None:
    """Make this state transaction exclusive among subsync's runs, from its first statement.

    Runs for overlapping days (a sensor launching one per day, a backfill) read and then replace
    the same rows; without this, two of them can both delete and then both insert. A savepoint
    (a preview's step, `core/preview.py`) is inside a transaction that took the lock already.
    """
    if conn.in_nested_transaction():
        return
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(STATE_LOCK_KEY)))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _postgres_settings(dbapi_connection: Any, _record: Any) -> None:
    # PostgreSQL's default random_page_cost (4) prices an index probe for a spinning disk: with
    # it the planner answered a day's 100k probes into a 10M-event ledger by reading the whole
    # ledger (bench/RESULTS.md item 12). The indexes subsync probes are hot in cache; 1.1 is the
    # usual figure for SSD or cached data, and is set for subsync's own sessions only.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET random_page_cost = 1.1")
    cursor.close()
    # Committed, so the pool's rollback on check-in does not undo it.
    dbapi_connection.commit()
