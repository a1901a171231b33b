"""A Personify connection killed in the middle of a write (pg_terminate_backend): the write is
rolled back, retried, and nothing is lost or doubled.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import psycopg
import sqlalchemy as sa

from subsync_pipeline_tests.harness import deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

SLOW_INSERT = """
CREATE FUNCTION slow_insert() RETURNS trigger AS $$
BEGIN
    IF NEW."MASTER_CUSTOMER_ID" = '000101' THEN PERFORM pg_sleep(2); END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow BEFORE INSERT ON "CUS_ACTIVITY" FOR EACH ROW EXECUTE FUNCTION slow_insert();
"""


def kill_first_sleeping_writer(server: PostgresServer, database: str, killed: list[int]) -> None:
    deadline = time.monotonic() + 60
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline and not killed:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
                (database,),
            ).fetchone()
            if row:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                killed.append(row[0])
            time.sleep(0.05)


def test_killed_connection_is_retried_without_loss_or_doubles(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database("personify_kill")
    deployment = deploy(tmp_path, personify_url=url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(SLOW_INSERT)
    engine.dispose()
    deployment.land(
        "a.csv",
        [
            event("FAST1", "000100", "subscribe", "api", "2026-11-20T09:00:00"),
            event("SLOW", "000101", "subscribe", "api", "2026-11-20T09:00:00"),
            event("FAST2", "000102", "unsubscribe", "form", "2026-11-20T09:00:00"),
        ],
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_first_sleeping_writer, args=(postgres_server, url.rsplit("/", 1)[1], killed)
    )
    killer.start()
    with dg.instance_for_test() as instance:
        result = deployment.materialize("2026-11-20", instance=instance)
    killer.join()

    assert killed, "the writer was never caught mid-write"
    assert result.success
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert [e.step_key for e in restarts] == ["personify_cus_activity"]
    assert deployment.activity()["event_id"].tolist() == ["FAST1", "FAST2", "SLOW"]
