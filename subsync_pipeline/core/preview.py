"""A dry run: everything a sync of some days would do, except write Personify.

The state steps run as they always do, each in a savepoint of one state transaction that is
rolled back at the end, so the state database ends as if the preview never ran and the real run
afterwards starts from the very state the preview started from. Personify is only read: the
writers stage the rows they would write in temporary tables and query what would change, by the
same conditions as their statements.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import state, sync
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.personify.tables import check_tables, personify_tables
from subsync_pipeline.core.personify.writers import Changes, writer_for

INSERT, UPDATE, DELETE = "insert", "update", "delete"
ACTIONS = (INSERT, UPDATE, DELETE)
OPT_IN, ACTIVITY = "CUS_OPT_IN", "CUS_ACTIVITY"
TABLES = (OPT_IN, ACTIVITY)
CHANGE_COLUMNS = ["table", "action", "row", "column", "old", "new"]


class _OneTransaction:
    """Stands in for the state engine: every `begin()` is a savepoint of one connection's
    transaction, every `connect()` that connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.conn.begin_nested():
            yield self.conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self.conn


@contextmanager
def rolled_back(url: str) -> Iterator[Engine]:
    """An engine-like view of the state database whose every change is undone on exit.

    SQLite through pysqlite needs its transactions begun by SQLAlchemy for savepoints to work
    (SQLAlchemy's documented recipe); the transaction is begun IMMEDIATE, so it holds the
    write lock a run's own transactions take.
    """
    engine = state.create_state_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:

        @sa.event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection: object, _record: object) -> None:
            dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # The connection that made the schema was opened before these listeners.
        engine.dispose()
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            if not sqlite:
                state.lock(conn)
            try:
                yield _OneTransaction(conn)  # type: ignore[misc]
            finally:
                transaction.rollback()
                sync.forget_kept()
    finally:
        engine.dispose()


class _Spill:
    """The long change list, a part at a time, pickled into an unnamed temporary file (gone
    when closed, or when the process ends): a first backfill's millions of changes would not
    fit in memory. Parts are read back one at a time, each from its own offset."""

    def __init__(self) -> None:
        # Open for as long as the preview is used; closing it (when collected) removes it.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self._parts: list[tuple[str, int, int]] = []

    def add(self, table: str, part: pd.DataFrame) -> None:
        data = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        start = self._file.seek(0, os.SEEK_END)
        self._file.write(data)
        self._parts.append((table, start, len(data)))

    def parts(self, table: str | None) -> Iterator[pd.DataFrame]:
        for name, start, size in self._parts:
            if table in (None, name):
                self._file.seek(start)
                yield pickle.loads(self._file.read(size))


@dataclass(frozen=True)
class Preview:
    """What a sync of `days` would change in Personify, and the figures of its steps: the
    number of rows each table would insert, update and delete, and every change in the long
    form of CHANGE_COLUMNS, kept on disk (`_Spill`)."""

    days: tuple[str, ...]
    rows_read: int
    rows_rejected: int
    files_failed: int
    tallies: dict[str, dict[str, int]] = field(
        default_factory=lambda: {table: dict.fromkeys(ACTIONS, 0) for table in TABLES}
    )
    spill: _Spill = field(default_factory=_Spill)

    def add(self, table: str, changes: Changes) -> None:
        """Count and spill one table's changes (a table's may come in several batches)."""
        rows = (changes.inserted, changes.updated, changes.deleted)
        for action, frame in zip(ACTIONS, rows, strict=True):
            self.tallies[table][action] += len(frame)
        for part in _long(table, changes):
            self.spill.add(table, part)

    def counts(self) -> dict[str, dict[str, int]]:
        return {table: dict(actions) for table, actions in self.tallies.items()}

    def change_parts(self, table: str | None = None) -> Iterator[pd.DataFrame]:
        """Every change (of `table`), one row per column changed (an insert or delete: one per
        column), with the row it belongs to named by its key; in parts of one table, action and
        column (per batch of members, for CUS_ACTIVITY), in the order they were compared, so a
        first backfill's millions of cells never sit in memory at once."""
        return self.spill.parts(table)

    def changes(self) -> pd.DataFrame:
        """Every change in one frame (see `change_parts`)."""
        return _joined(list(self.change_parts()))

    def sample(self, size: int, table: str | None = None) -> pd.DataFrame:
        """The first `size` changes (of `table`), built from no more parts than they need."""
        parts: list[pd.DataFrame] = []
        taken = 0
        for part in self.change_parts(table):
            if taken >= size:
                break
            parts.append(part.head(size - taken))
            taken += len(parts[-1])
        return _joined(parts)

    @property
    def label(self) -> str:
        """The report folder's name for these days."""
        return self.days[0] if len(self.days) == 1 else f"{self.days[0]}_to_{self.days[-1]}"


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CHANGE_COLUMNS)


def _long(table: str, changes: Changes) -> Iterator[pd.DataFrame]:
    """One table's changes in the long form of CHANGE_COLUMNS, a part per action and column."""
    key = _key_columns(changes)
    for action, frame in ((INSERT, changes.inserted), (DELETE, changes.deleted)):
        if frame.empty:
            continue
        rows = _row_names(frame, key)
        for column in frame.columns.difference(key, sort=False):
            value = frame[column].astype(object).where(frame[column].notna(), None)
            old, new = (None, value) if action == INSERT else (value, None)
            yield _frame(table, action, rows, column, old, new)
    updated = changes.updated
    if updated.empty:
        return
    rows = _row_names(updated, key)
    for column in [c.removesuffix(" (old)") for c in updated.columns if c.endswith(" (old)")]:
        old = updated[f"{column} (old)"].astype(object)
        new = updated[f"{column} (new)"].astype(object)
        same = (old == new) | (old.isna() & new.isna())
        keep = ~same.to_numpy(bool)
        if keep.any():
            yield _frame(table, UPDATE, rows[keep], column, old[keep], new[keep])


def _row_names(frame: pd.DataFrame, key: list[str]) -> pd.Series:
    """Each row's key values joined by `|`, column by column: a join per row took 50 of the
    145 s of a 5-day preview (bench/RESULTS.md item 18)."""
    names = frame[key[0]].astype(str)
    for column in key[1:]:
        names = names + "|" + frame[column].astype(str)
    return names


def _key_columns(changes: Changes) -> list[str]:
    """What names a changed row: its event, for an activity row (whose id a new row only gets
    when written); the key columns, for an opt-in row (those neither old nor new)."""
    if "event_id" in changes.updated.columns:
        return ["event_id"]
    return [c for c in changes.updated.columns if not c.endswith((" (old)", " (new)"))]


def _frame(
    table: str, action: str, rows: pd.Series, column: str, old: object, new: object
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": table,
            "action": action,
            "row": rows.to_numpy(),
            "column": column,
            "old": old.to_numpy() if isinstance(old, pd.Series) else old,
            "new": new.to_numpy() if isinstance(new, pd.Series) else new,
        }
    )


def preview(
    state_url: str,
    personify_engine: Engine,
    landing_dir: Path,
    config: SubsyncConfig,
    days: list[str],
    run_id: str,
) -> Preview:
    """Run the days' sync up to Personify, list what the writes would change, undo the rest.

    As a ranged run does: the days in chunks, so memory stays that of one big day however many
    days (the work queues carry what the chunks leave to the writes at the end); CUS_ACTIVITY
    compared in the real write's batches of members, each batch's changes spilled to disk as
    soon as they are read.
    """
    tables = personify_tables(config.personify)
    with rolled_back(state_url) as state_engine:
        raw = sync.ingest(state_engine, landing_dir, config, days)
        validated = sync.validate_days(state_engine, personify_engine, config, days, run_id)
        figures = validated.figures
        sync.resolve_queued(state_engine, config, raw.days, run_id, figures.validated)
        failed = len(raw.failed_files) + len(raw.recorded_failures)
        found = Preview(tuple(sorted(days)), figures.rows, figures.rejected, failed)
        with personify_engine.connect() as conn:
            writer = writer_for(conn, tables, config.personify.operator)
            written = [
                shape.table
                for shape, enabled in (
                    (tables.opt_in, config.personify.write_opt_in),
                    (tables.activity, config.personify.write_activity),
                )
                if enabled
            ]
            check_tables(conn, written)
            found.add(
                OPT_IN, writer.preview_opt_in(conn, sync.opt_in_owed(state_engine, config)[1])
            )
            _, batches = sync.activity_batches(state_engine, config)
            for number, batch in enumerate(batches, 1):
                records, rows = sync.activity_owed(state_engine, config, batch, gone=number == 1)
                found.add(ACTIVITY, writer.preview_activity(conn, records, rows))
            conn.rollback()
    return found
