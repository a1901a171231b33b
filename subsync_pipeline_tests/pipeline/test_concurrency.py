"""Runs at once: two processes materialising overlapping days both succeed, and Personify ends
equal to an in-order pass (under the write lock, a writer whose resolution was overtaken writes the
newer one from the state database, or nothing once it is written).

The two processes are made to meet at the write lock (issue 18 §4): a writer that has taken it
holds it until the test has seen, in PostgreSQL's pg_locks, the other process's session waiting
for that same advisory lock.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import psycopg
from sqlalchemy import Connection

from subsync_pipeline.core import queue, sync
from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.personify.writers import WRITE_LOCK_KEY, PostgresWriter
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer
from subsync_pipeline_tests.pipeline.test_convergence import DAYS, land_all

# How long the test waits for the second writer to queue behind the first; the first holds the
# lock at most a little longer, so a missed meeting fails the test rather than hanging it.
MEETING_TIMEOUT = 30.0
# The session waiting for subsync's write lock in a database, and the one holding it. A bigint
# advisory lock shows as classid (high 32 bits), objid (low 32 bits) and objsubid 1.
WAITING_FOR_WRITE_LOCK = """
SELECT holder.pid, waiter.pid, activity.wait_event_type, activity.wait_event
FROM pg_locks AS waiter
JOIN pg_database AS db ON db.oid = waiter.database
JOIN pg_stat_activity AS activity ON activity.pid = waiter.pid
JOIN pg_locks AS holder
    ON holder.locktype = 'advisory' AND holder.granted
    AND holder.database = waiter.database AND holder.classid = waiter.classid
    AND holder.objid = waiter.objid AND holder.objsubid = waiter.objsubid
WHERE waiter.locktype = 'advisory' AND NOT waiter.granted AND db.datname = %s
    AND waiter.classid::bigint = %s AND waiter.objid::bigint = %s AND waiter.objsubid = 1
"""


def materialize_in_process(deployment: Deployment, day: str, gate: Path) -> bool:
    """Materialise `day`; each time this process takes subsync's Personify write lock it then
    holds it, inside the write's transaction, until `gate` exists."""
    take_lock = PostgresWriter.lock

    def lock_and_hold(writer: PostgresWriter, conn: Connection) -> None:
        take_lock(writer, conn)
        deadline = time.monotonic() + MEETING_TIMEOUT + 10
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    with mock.patch.object(PostgresWriter, "lock", lock_and_hold):
        return deployment.materialize(day).success


def open_gate_when_writers_meet(
    port: int, database: str, gate: Path, meetings: list[tuple[Any, ...]]
) -> None:
    """Wait for a session queued for the write lock another session holds, note the pair, and
    open `gate` (also after MEETING_TIMEOUT without one, so that the runs can end)."""
    key = (WRITE_LOCK_KEY >> 32, WRITE_LOCK_KEY & 0xFFFFFFFF)
    deadline = time.monotonic() + MEETING_TIMEOUT
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(WAITING_FOR_WRITE_LOCK, (database, *key)).fetchone()
                if row:
                    meetings.append(tuple(row))
                    return
                time.sleep(0.02)
    finally:
        gate.touch()


def test_overlapping_days_at_once_on_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    def make(name: str) -> Deployment:
        deployment = deploy(
            tmp_path / name,
            personify_url=postgres_server.create_database(f"personify_{name}"),
            state_url=postgres_server.create_database(f"state_{name}"),
        )
        land_all(deployment)
        return deployment

    reference = make("reference")
    for day in DAYS:
        reference.materialize(day)

    concurrent = make("concurrent")
    database = concurrent.personify_url.rsplit("/", 1)[1]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for n, pair in enumerate(([DAYS[2], DAYS[0]], [DAYS[3], DAYS[1]], [DAYS[1], DAYS[2]])):
            gate = tmp_path / f"gate-{n}"
            meetings: list[tuple[Any, ...]] = []
            watcher = threading.Thread(
                target=open_gate_when_writers_meet,
                args=(postgres_server.port, database, gate, meetings),
            )
            watcher.start()
            results = list(pool.map(materialize_in_process, [concurrent] * 2, pair, [gate] * 2))
            watcher.join()
            assert results == [True, True], pair
            # One writer held the lock while the other's session waited for it in PostgreSQL.
            assert len(meetings) == 1, f"{pair}: the second writer never waited for the first"
            holder, waiter, wait_type, wait_event = meetings[0]
            assert holder != waiter
            assert (wait_type, wait_event) == ("Lock", "advisory"), pair

    assert_same_rows(concurrent, concurrent.opt_in(), reference.opt_in())
    assert_same_rows(concurrent, concurrent.activity(), reference.activity())


def assert_same_rows(deployment: Deployment, rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    """assert_frame_equal, but a difference first names the rows only one side has and what the
    state database holds of their members: a race seen once under load must say where it was."""
    differ = rows.merge(expected, how="outer", indicator=True).query("_merge != 'both'")
    if len(differ):
        member = next(c for c in differ.columns if c.lower() == "master_customer_id")
        ids = ", ".join(f"'{m}'" for m in differ[member].unique())
        held = {
            table: deployment.state(f"SELECT * FROM {table} WHERE master_customer_id IN ({ids})")
            for table in ("key_states", "work_queue")
        }
        details = "\n".join(f"{name}:\n{frame.to_string()}" for name, frame in held.items())
        raise AssertionError(f"rows only on one side:\n{differ.to_string()}\n{details}")
    pd.testing.assert_frame_equal(rows, expected)


def two_days(
    tmp_path: Path,
) -> tuple[Deployment, Callable[[str], sync.Resolved], Callable[[str], None]]:
    """One contact subscribed on day 1 and unsubscribed on day 2; each run's steps by hand."""
    deployment = deploy(tmp_path)
    member = "000100"
    deployment.land("d1.csv", [event("A1", member, "subscribe", "api", "2026-11-19T09:00:00")])
    deployment.land("d2.csv", [event("B1", member, "unsubscribe", "api", "2026-11-20T09:00:00")])
    config = load_config(deployment.config_path)
    state = create_state_engine(deployment.state_url)
    personify = deployment.engine()

    def resolve_day(day: str) -> sync.Resolved:
        sync.ingest(state, deployment.landing, config, [day])
        sync.validate_days(state, personify, config, [day], f"run-{day}")
        return sync.resolve_queued(state, config, (day,), f"run-{day}")

    def write(run_id: str) -> None:
        sync.write_opt_in(personify, state, config)
        sync.write_activity(personify, state, config, run_id)

    return deployment, resolve_day, write


QUEUED = "SELECT step, master_customer_id, since_at FROM work_queue ORDER BY 1, 2"


def test_a_late_writer_does_not_regress_a_newer_change(tmp_path: Path) -> None:
    """Run A resolves day 1; run B then resolves and writes day 2; A writes last. A must not
    write the stale state it resolved: the queue holds members, not results."""
    deployment, resolve_day, write = two_days(tmp_path)
    run_a = resolve_day("2026-11-19")
    assert run_a.decisions["applied"] == 1
    resolve_day("2026-11-20")
    # One row per step and member, whichever runs queued it. Day 1 saw the member first, so
    # its rows lag over its whole history (`since_at` NULL), which day 2's later time keeps.
    queued = deployment.state(QUEUED)
    assert queued[["step", "master_customer_id"]].values.tolist() == [
        ["activity", "000100"],
        ["opt_in", "000100"],
    ]
    assert queued["since_at"].isna().all()
    write("run-2026-11-20")
    assert deployment.state(QUEUED).empty
    write("run-2026-11-19")

    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]


def test_a_member_queued_again_while_a_write_runs_stays_queued(tmp_path: Path) -> None:
    """A writer dequeues only the rows it took: a member queued again by a resolution that
    committed meanwhile keeps its row (a new ticket), so its newer state is written next."""
    deployment, resolve_day, _write = two_days(tmp_path)
    resolve_day("2026-11-19")
    config = load_config(deployment.config_path)
    state = create_state_engine(deployment.state_url)
    with state.connect() as conn:
        taken = queue.queued(conn, queue.OPT_IN)
    resolve_day("2026-11-20")
    with state.begin() as conn:
        queue.dequeue(conn, queue.OPT_IN, taken)
    assert deployment.state(QUEUED)["step"].tolist() == ["activity", "opt_in"]
    sync.write_opt_in(deployment.engine(), state, config)
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.state(QUEUED)["step"].tolist() == ["activity"]


def test_a_late_writer_writes_the_newer_resolution_it_finds(tmp_path: Path) -> None:
    """As above, but A writes before B: A writes B's newer state, not the one it resolved."""
    deployment, resolve_day, write = two_days(tmp_path)
    resolve_day("2026-11-19")
    resolve_day("2026-11-20")
    write("run-2026-11-19")
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]
    write("run-2026-11-20")
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]
    assert deployment.state(QUEUED).empty
