"""The event ledger, decisions and rejects in the state database.

The ledger holds every validated event ever seen, keyed by event_id, so a day is always resolved
over the full history of the contacts it touches — the basis of convergence in any day order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.sql import insert_frame, read_frame, temp_table

MEMBER: list[str] = ["master_customer_id", "sub_customer_id"]


def _member_stage(conn: Connection, members: pd.DataFrame) -> sa.Table:
    table = temp_table(
        conn,
        "subsync_members",
        [
            sa.Column("master_customer_id", sa.String(24), primary_key=True),
            sa.Column("sub_customer_id", sa.Integer, primary_key=True),
        ],
    )
    insert_frame(conn, table, members[MEMBER].drop_duplicates(), staging=True)
    return table


def _of_members(table: sa.Table, members: sa.Table) -> sa.ColumnElement[bool]:
    # A semi-join the planners drive from the (small) member list through the member index.
    return sa.tuple_(table.c.master_customer_id, table.c.sub_customer_id).in_(
        sa.select(members.c.master_customer_id, members.c.sub_customer_id)
    )


def store_validation(
    conn: Connection,
    days: list[str],
    file_ids: list[int],
    events: pd.DataFrame,
    rejects: pd.DataFrame,
    run_id: str,
    now: datetime,
) -> pd.DataFrame:
    """Replace the days' slice of the ledger and of the rejects; return the members touched.

    The slice is what the files read now say about these days; events of files that are no longer
    readable stay, so nothing validated is lost. Touched members are those with an event in the
    slice before or after, so a contact whose event disappeared is re-resolved as well.
    """
    ledger = state.event_ledger
    before = read_frame(
        conn,
        sa.select(ledger.c.master_customer_id, ledger.c.sub_customer_id)
        .where(ledger.c.day.in_(days))
        .distinct(),
    )
    stage = temp_table(
        conn,
        "subsync_events",
        [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in ledger.columns],
    )
    insert_frame(conn, stage, events, staging=True)
    if file_ids:
        conn.execute(ledger.delete().where(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids)))
    conn.execute(ledger.delete().where(ledger.c.event_id.in_(sa.select(stage.c.event_id))))
    conn.execute(ledger.insert().from_select([c.name for c in ledger.columns], sa.select(*stage.c)))
    stage.drop(conn)
    _bump_generation(conn)

    rejected = state.rejected_records
    conn.execute(rejected.delete().where(rejected.c.day.in_(days)))
    insert_frame(conn, rejected, rejects.assign(rejected_in_run=run_id, rejected_at=now))

    touched = pd.concat([before, events[MEMBER]], ignore_index=True)
    touched["sub_customer_id"] = touched["sub_customer_id"].astype("int64")
    return touched.drop_duplicates().reset_index(drop=True)


def _bump_generation(conn: Connection) -> None:
    table = state.ledger_generation
    bumped = conn.execute(
        table.update().where(table.c.id == 1).values(generation=table.c.generation + 1)
    ).rowcount
    if not bumped:
        conn.execute(table.insert().values(id=1, generation=1))


def generation(conn: Connection) -> int:
    """How many times the ledger has changed; callers hold the state lock or accept a race."""
    table = state.ledger_generation
    value = conn.execute(sa.select(table.c.generation).where(table.c.id == 1)).scalar()
    return int(value or 0)


def member_history(
    conn: Connection,
    members: pd.DataFrame,
    besides: tuple[list[str], list[int]] | None = None,
) -> pd.DataFrame:
    """Every ledger event of `members`, whatever day it came from.

    `besides=(days, file_ids)` leaves out the slice those days' files own, for a caller that
    holds that slice in memory already (it has just stored it).
    """
    ledger = state.event_ledger
    stage = _member_stage(conn, members)
    query = sa.select(ledger).where(_of_members(ledger, stage))
    if besides is not None and besides[1]:
        days, file_ids = besides
        query = query.where(~sa.and_(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids)))
    history = read_frame(conn, query)
    stage.drop(conn)
    for column in ("occurred_at", "timestamp_subscribed"):
        history[column] = pd.to_datetime(history[column]).astype("datetime64[ns]")
    history["force_optin"] = history["force_optin"].astype(bool)
    history["sub_customer_id"] = history["sub_customer_id"].astype("int64")
    return history


def store_decisions(
    conn: Connection, members: pd.DataFrame, decided: pd.DataFrame, run_id: str, now: datetime
) -> int:
    """Replace the decisions of `members` (the audit trail) with those of this resolution."""
    table = state.decisions
    stage = _member_stage(conn, members)
    conn.execute(table.delete().where(_of_members(table, stage)))
    stage.drop(conn)
    rows: dict[str, Any] = {
        name: decided[name] for name in state.DECISION_COLUMNS if name in decided
    }
    frame = pd.DataFrame(rows).assign(decided_in_run=run_id, decided_at=now)
    return insert_frame(conn, table, frame)
