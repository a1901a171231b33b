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
from subsync_pipeline.core.ledger import since_join, stage_since
from subsync_pipeline.core.sql import in_stage, insert_frame, read_frame, stage_distinct

INSERT = "insert"
DELETE = "delete"
_PAIR = ["event_id", "activity_id"]


def records(conn: Connection, members: pd.DataFrame, gone: bool) -> pd.DataFrame:
    """(event_id, activity_id, gone) of subsync's rows of `members` (MEMBER, `since_at`): those
    of their ledger events from each one's `since_at` on (NULL: all), and, when `gone`, every
    record whose event left the ledger (its row must go; it has no member to find it by, so a
    write in several batches takes these once)."""
    table, ledger = state.activity_records, state.event_ledger
    stage = stage_since(conn, members)
    columns = [table.c.event_id, table.c.activity_id, table.c.gone]
    of_members = (
        sa.select(*columns)
        .join(ledger, ledger.c.event_id == table.c.event_id)
        .join(stage, since_join(ledger, ledger.c.occurred_at, stage))
        .where(~table.c.gone)
    )
    left = sa.select(*columns).where(table.c.gone)
    found = read_frame(conn, sa.union_all(of_members, left) if gone else of_members)
    stage.drop(conn)
    return found.astype({"event_id": str, "activity_id": "int64", "gone": bool})


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
        _apply(conn, [write_id], now)


def recover(state_engine: Engine, exists: Callable[[pd.Series], pd.Series], now: datetime) -> None:
    """Settle the logs of writes that died between their log and their finalize (step 1).

    `exists` tells which activity ids Personify holds, read under the Personify write lock.
    """
    log = state.activity_write_log
    query = sa.select(log.c.write_id, log.c.event_id, log.c.activity_id, log.c.action)
    with state_engine.connect() as conn:
        entries = read_frame(conn, query).astype({"event_id": str, "activity_id": "int64"})
    if entries.empty:
        return
    held = exists(entries["activity_id"]).to_numpy(bool)
    committed = (entries["action"].eq(INSERT).to_numpy(bool) & held) | (
        entries["action"].eq(DELETE).to_numpy(bool) & ~held
    )
    rolled_back = entries.loc[~committed]
    with state_engine.begin() as conn:
        state.lock(conn)
        # What Personify rolled back is dropped from the log; the rest is applied. A write that
        # finalized meanwhile took its entries already, and applying the same entries is a no-op.
        if len(rolled_back):
            entry = ["write_id", *_PAIR]
            stage = stage_distinct(conn, "subsync_activity", log, rolled_back, entry)
            conn.execute(log.delete().where(in_stage(log, stage, entry)))
            stage.drop(conn)
        _apply(conn, sorted(set(entries["write_id"])), now)


def _apply(conn: Connection, write_ids: list[str], now: datetime) -> None:
    """Make the record follow the logged entries of `write_ids`, then drop them, all inside
    the state database: a day's log is as big as its inserts."""
    log, records = state.activity_write_log, state.activity_records
    logged = log.c.write_id.in_(write_ids)
    deleted = sa.select(log.c.event_id, log.c.activity_id).where(logged, log.c.action == DELETE)
    inserted = sa.select(log.c.event_id).where(logged, log.c.action == INSERT)
    conn.execute(
        records.delete().where(sa.tuple_(records.c.event_id, records.c.activity_id).in_(deleted))
    )
    # An event inserted again (its row had gone) replaces its old record.
    conn.execute(records.delete().where(records.c.event_id.in_(inserted)))
    conn.execute(
        records.insert().from_select(
            ["event_id", "activity_id", "recorded_at"],
            inserted.add_columns(log.c.activity_id, sa.literal(now, sa.DateTime)),
        )
    )
    conn.execute(log.delete().where(logged))
