"""The work queue (issue 19): one row per step and member, whichever batches queued it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline.core import queue
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.pg_server import PostgresServer

NOW = datetime(2026, 11, 20, 12)


def members(*rows: tuple[str, str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "master_customer_id": [member for member, _ in rows],
            "sub_customer_id": 0,
            "since_at": pd.to_datetime([since for _, since in rows]),
        }
    )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return create_state_engine(f"sqlite:///{tmp_path / 'state.db'}")


def rows(engine: sa.Engine, step: str) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        frame = queue.queued(conn, step)
    return [
        (m, None if pd.isna(s) else str(s), None if pd.isna(b) else b)
        for m, s, b in frame[["master_customer_id", "since_at", "batch_id"]].itertuples(index=False)
    ]


def test_a_member_queued_twice_keeps_one_row_with_the_earlier_since(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        queue.enqueue(conn, [queue.OPT_IN], members(("A", "2026-11-19"), ("B", None)), "v1", NOW)
        queue.enqueue(
            conn, [queue.OPT_IN], members(("A", "2026-11-18"), ("B", "2026-11-01")), "v2", NOW
        )
        # One call for both writers' queues: each step keeps its own row.
        queue.enqueue(conn, [queue.OPT_IN, queue.ACTIVITY], members(("A", "2026-11-30")), "v2", NOW)
    # NULL (the whole history) wins over any time; a second batch clears the batch.
    assert sorted(rows(engine, queue.OPT_IN)) == [
        ("A", "2026-11-18 00:00:00", None),
        ("B", None, None),
    ]
    assert rows(engine, queue.ACTIVITY) == [("A", "2026-11-30 00:00:00", "v2")]


def test_the_batch_stays_only_while_one_batch_queued_the_member(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        queue.enqueue(conn, [queue.RESOLVE], members(("A", None), ("B", None)), "v1", NOW)
        # The same batch again (a retried step) keeps it; another batch's member loses it.
        queue.enqueue(conn, [queue.RESOLVE], members(("A", None)), "v1", NOW)
        queue.enqueue(conn, [queue.RESOLVE], members(("B", None), ("C", None)), "v2", NOW)
    assert sorted(rows(engine, queue.RESOLVE)) == [
        ("A", None, "v1"),
        ("B", None, None),
        ("C", None, "v2"),
    ]


def test_a_dequeue_leaves_a_member_queued_again_since_it_was_taken(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        queue.enqueue(conn, [queue.OPT_IN], members(("A", None), ("B", None)), None, NOW)
    with engine.connect() as conn:
        taken = queue.queued(conn, queue.OPT_IN)
    with engine.begin() as conn:
        queue.enqueue(conn, [queue.OPT_IN], members(("B", None)), None, NOW)
        queue.dequeue(conn, queue.OPT_IN, taken)
    assert rows(engine, queue.OPT_IN) == [("B", None, None)]


@pytest.mark.postgres
def test_an_enqueue_leaves_the_planner_the_queue_s_size(postgres_server: PostgresServer) -> None:
    """The queue fills and empties within a run, faster than autovacuum analyses it; planned
    from statistics of a nearly empty queue, a writer's dequeue of 78,000 contacts ran as a
    nested loop for minutes. An enqueue analyses the queue (autovacuum is off here, so nothing
    else does)."""
    engine = create_state_engine(postgres_server.create_database("queue_statistics"))
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE work_queue SET (autovacuum_enabled = false)")
    many = pd.DataFrame({"master_customer_id": [f"{n:06d}" for n in range(20_000)]})
    many["sub_customer_id"] = 0
    with engine.begin() as conn:
        queue.enqueue(conn, [queue.ACTIVITY], many, None, NOW)
    with engine.connect() as conn:
        estimate = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE relname = 'work_queue'"
        ).scalar_one()
    engine.dispose()
    assert estimate == 20_000
