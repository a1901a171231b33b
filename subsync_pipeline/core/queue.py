"""The work queue of the state database: which members each step still owes (`state.work_queue`).

Each step enqueues the members it leaves work for in the transaction that stores that work, and
dequeues the members it took once its own work is committed. A member queued again in between
(another run stored newer work for it) gets a new ticket, so a dequeue that names the ticket it
took never forgets the newer work.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.ledger import MEMBER, same_member
from subsync_pipeline.core.sql import analyze, in_stage, read_frame, stage_distinct

RESOLVE = "resolve"
OPT_IN = "opt_in"
ACTIVITY = "activity"

QUEUED: list[str] = [*MEMBER, "since_at", "batch_id", "ticket"]


def _stage(conn: Connection, frame: pd.DataFrame, names: list[str]) -> sa.Table:
    return stage_distinct(conn, "subsync_queue", state.work_queue, frame, names, MEMBER)


def enqueue(
    conn: Connection,
    steps: Sequence[str],
    members: pd.DataFrame,
    batch_id: str | None,
    now: datetime,
) -> None:
    """Queue `members` (MEMBER, optional `since_at`) for each of `steps`.

    A member already queued keeps one row: the earlier `since_at` (NULL, the whole history,
    wins) and no batch unless it is `batch_id` again (a retried step).
    """
    frame = members[MEMBER].copy()
    frame["since_at"] = members.get("since_at", pd.NaT)
    frame = (
        frame.sort_values("since_at", na_position="first")
        .drop_duplicates(MEMBER)
        .astype({"sub_customer_id": "int64"})
    )
    if frame.empty or not steps:
        return
    stage = _stage(conn, frame, [*MEMBER, "since_at"])
    enqueue_staged(conn, steps, stage, batch_id, now)
    stage.drop(conn)


def enqueue_staged(
    conn: Connection, steps: Sequence[str], stage: sa.Table, batch_id: str | None, now: datetime
) -> int:
    """`enqueue` for members already in a table (distinct MEMBER, `since_at`); returns how many."""
    ticket = uuid.uuid4().hex
    for step in steps:
        _enqueue_step(conn, step, stage, batch_id, ticket, now)
    # The queue swings from empty to every contact of a range and back within one run, faster
    # than autovacuum analyses it. Planned from statistics taken while it was nearly empty, a
    # writer's dequeue of 78,000 contacts ran as a nested loop over both tables for minutes
    # (the activity step's stall of bench/RESULTS.md items 17 and 21).
    analyze(conn, state.work_queue)
    return int(conn.execute(sa.select(sa.func.count()).select_from(stage)).scalar_one())


def _enqueue_step(
    conn: Connection,
    step: str,
    stage: sa.Table,
    batch_id: str | None,
    ticket: str,
    now: datetime,
) -> None:
    queue = state.work_queue
    either_whole = sa.or_(queue.c.since_at.is_(None), stage.c.since_at.is_(None))
    conn.execute(
        queue.update()
        .where(queue.c.step == step, same_member(queue, stage))
        .values(
            since_at=sa.case(
                (either_whole, sa.null()),
                (stage.c.since_at < queue.c.since_at, stage.c.since_at),
                else_=queue.c.since_at,
            ),
            batch_id=sa.case((queue.c.batch_id == batch_id, queue.c.batch_id), else_=sa.null()),
            ticket=ticket,
            queued_at=now,
        )
    )
    present = sa.exists().where(queue.c.step == step, same_member(queue, stage))
    conn.execute(
        queue.insert().from_select(
            ["step", *MEMBER, "since_at", "batch_id", "ticket", "queued_at"],
            sa.select(
                sa.literal(step, queue.c.step.type),
                *(stage.c[name] for name in MEMBER),
                stage.c.since_at,
                sa.literal(batch_id, queue.c.batch_id.type),
                sa.literal(ticket, queue.c.ticket.type),
                sa.literal(now, queue.c.queued_at.type),
            )
            .where(~present)
            # In key order: the queue's primary key then grows page by page, not at random.
            .order_by(*(stage.c[name] for name in MEMBER)),
        )
    )


def queued(conn: Connection, step: str) -> pd.DataFrame:
    """Every member queued for `step` (QUEUED columns)."""
    queue = state.work_queue
    frame = read_frame(
        conn, sa.select(*(queue.c[name] for name in QUEUED)).where(queue.c.step == step)
    )
    frame["since_at"] = pd.to_datetime(frame["since_at"]).astype("datetime64[ns]")
    return frame.astype({"master_customer_id": str, "sub_customer_id": "int64"})


def dequeue(conn: Connection, step: str, taken: pd.DataFrame) -> None:
    """Forget the rows of `taken` (as `queued` returned them) still holding the same ticket."""
    if taken.empty:
        return
    queue = state.work_queue
    stage = _stage(conn, taken, [*MEMBER, "ticket"])
    conn.execute(
        queue.delete().where(queue.c.step == step, in_stage(queue, stage, [*MEMBER, "ticket"]))
    )
    stage.drop(conn)
