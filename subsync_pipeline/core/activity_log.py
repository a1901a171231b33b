"""Which CUS_ACTIVITY rows are subsync's: the record of their ids by event, kept in the state
database across the two databases' separate commits.

Personify and the state database cannot commit together. A write therefore goes:
1. under the Personify write lock, `recover` the log of any write that died (its Personify
   transaction is over, committed or not, because the lock is ours now);
2. reconcile CUS_ACTIVITY inside the Personify transaction, reading back the ids it inserts;
3. `log` what it inserted and deleted, committed in the state database;
4. commit Personify;
5. `finalize`: apply the log to `activity_records` and drop it.

A crash after 3 leaves a log that the next writer checks against what Personify holds: an
inserted id that exists was committed and is recorded; a deleted id that no longer exists was
committed and is forgotten; anything else rolled back and is dropped. A crash before 3 leaves
nothing anywhere (Personify rolled back). So no row is ever duplicated or left unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import state
from subsync_pipeline.core.sql import insert_frame, read_frame, temp_table

INSERT = "insert"
DELETE = "delete"
_PAIR = ["event_id", "activity_id"]


def _stage(conn: Connection, frame: pd.DataFrame, names: list[str]) -> sa.Table:
    log = state.activity_write_log
    table = temp_table(
        conn,
        "subsync_activity",
        [sa.Column(name, log.c[name].type, primary_key=True) for name in names],
    )
    insert_frame(conn, table, frame[names].drop_duplicates(), staging=True)
    return table


def records(conn: Connection, event_ids: pd.Series) -> pd.DataFrame:
    """(event_id, activity_id) of subsync's rows for these events."""
    if event_ids.empty:
        return pd.DataFrame(
            {"event_id": pd.Series(dtype=str), "activity_id": pd.Series(dtype="int64")}
        )
    stage = _stage(conn, pd.DataFrame({"event_id": event_ids.astype(str)}), ["event_id"])
    table = state.activity_records
    found = read_frame(
        conn,
        sa.select(table.c.event_id, table.c.activity_id).join(
            stage, stage.c.event_id == table.c.event_id
        ),
    )
    stage.drop(conn)
    return found.astype({"event_id": str, "activity_id": "int64"})


def log(
    state_engine: Engine,
    write_id: str,
    inserted: pd.DataFrame,
    deleted: pd.DataFrame,
    now: datetime,
) -> None:
    """Commit what a write is about to commit in Personify (step 3)."""
    entries = pd.concat(
        [inserted[_PAIR].assign(action=INSERT), deleted[_PAIR].assign(action=DELETE)],
        ignore_index=True,
    )
    if entries.empty:
        return
    with state_engine.begin() as conn:
        state.lock(conn)
        insert_frame(
            conn, state.activity_write_log, entries.assign(write_id=write_id, logged_at=now)
        )


def finalize(state_engine: Engine, write_id: str, now: datetime) -> None:
    """Apply a committed write's log to the record (step 5). A log another writer recovered
    first is gone, and nothing is applied twice."""
    with state_engine.begin() as conn:
        state.lock(conn)
        entries = _entries(conn, [write_id])
        _apply(conn, entries, now)


def recover(
    state_engine: Engine,
    exists: Callable[[pd.Series], pd.Series],
    now: datetime,
) -> int:
    """Settle the logs of writes that died between their log and their finalize (step 1).

    `exists` tells which activity ids Personify holds, read under the Personify write lock.
    Returns how many logged changes were kept.
    """
    with state_engine.connect() as conn:
        entries = _entries(conn, None)
    if entries.empty:
        return 0
    held = exists(entries["activity_id"]).to_numpy(bool)
    committed = (entries["action"].eq(INSERT).to_numpy(bool) & held) | (
        entries["action"].eq(DELETE).to_numpy(bool) & ~held
    )
    kept = entries.loc[committed]
    with state_engine.begin() as conn:
        state.lock(conn)
        # A write that finalized meanwhile took its entries: only those still logged apply.
        still = _entries(conn, sorted(set(entries["write_id"])))
        both = still.merge(kept[["write_id", *_PAIR]], on=["write_id", *_PAIR], how="inner")
        _apply(conn, both, now, written=still)
    return len(kept)


def _entries(conn: Connection, write_ids: list[str] | None) -> pd.DataFrame:
    log = state.activity_write_log
    query = sa.select(log.c.write_id, log.c.event_id, log.c.activity_id, log.c.action)
    if write_ids is not None:
        query = query.where(log.c.write_id.in_(write_ids))
    return read_frame(conn, query.order_by(log.c.logged_at)).astype(
        {"event_id": str, "activity_id": "int64"}
    )


def _apply(
    conn: Connection, kept: pd.DataFrame, now: datetime, written: pd.DataFrame | None = None
) -> None:
    """Make the record follow the `kept` entries, then drop the log of their writes (all of
    `written`'s writes, kept or not)."""
    table = state.activity_records
    deleted = kept.loc[kept["action"].eq(DELETE)]
    inserted = kept.loc[kept["action"].eq(INSERT)]
    if len(deleted):
        stage = _stage(conn, deleted, _PAIR)
        conn.execute(
            table.delete().where(
                sa.tuple_(table.c.event_id, table.c.activity_id).in_(
                    sa.select(stage.c.event_id, stage.c.activity_id)
                )
            )
        )
        stage.drop(conn)
    if len(inserted):
        stage = _stage(conn, inserted, ["event_id"])
        conn.execute(table.delete().where(table.c.event_id.in_(sa.select(stage.c.event_id))))
        stage.drop(conn)
        insert_frame(conn, table, inserted[_PAIR].assign(recorded_at=now))
    write_ids = sorted(set((kept if written is None else written)["write_id"]))
    if write_ids:
        log = state.activity_write_log
        conn.execute(log.delete().where(log.c.write_id.in_(write_ids)))
