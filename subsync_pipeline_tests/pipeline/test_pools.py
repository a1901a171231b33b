"""Runs take turns at the concurrency pools however they were launched (issue 18 §2): a
`daily_sync_job` run and a plain asset selection (what "Materialize all" in the UI launches, with
none of the job's tags) started at once, on an instance configured as the project's dagster.yaml.
The second waits for the first at the Personify pool, says so in its events, and both succeed with
Personify equal to an in-order pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from subsync_pipeline.pools import PERSONIFY_POOL
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
DAY1, DAY2 = "2026-11-19", "2026-11-20"
MEMBERS = [f"{n:06d}" for n in range(100, 110)]
# Holds the first run inside its CUS_OPT_IN write (day 1's subscribes only) until the test has
# seen the second run wait at the Personify pool (a row in release_slow), however slowly the
# second run starts on a busy machine; two minutes at most.
SLOW_OPT_IN = """
CREATE TABLE release_slow (released int);
CREATE FUNCTION slow_opt_in() RETURNS trigger AS $$
DECLARE
    until timestamptz := clock_timestamp() + interval '120 seconds';
BEGIN
    IF NEW."MASTER_CUSTOMER_ID" = '000100' AND NEW."OPT_IN_FLAG" = 'Y' THEN
        WHILE NOT EXISTS (SELECT 1 FROM release_slow) AND clock_timestamp() < until LOOP
            PERFORM pg_sleep(0.1);
        END LOOP;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow BEFORE INSERT ON "CUS_OPT_IN" FOR EACH ROW EXECUTE FUNCTION slow_opt_in();
"""


def land(deployment: Deployment) -> None:
    deployment.land(
        "day1.csv", [event(f"A{m}", m, "subscribe", "form", f"{DAY1}T09:00:00") for m in MEMBERS]
    )
    deployment.land(
        "day2.csv",
        [event(f"B{m}", m, "unsubscribe", "api", f"{DAY2}T09:00:00") for m in MEMBERS[::2]],
    )


def launch(deployment: Deployment, home: Path, command: list[str]) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SUBSYNC_CONFIG": str(deployment.config_path),
        "SUBSYNC_LANDING_DIR": str(deployment.landing),
        "PERSONIFY_DB_URL": deployment.personify_url,
        "SUBSYNC_DB_URL": deployment.state_url,
        "SUBSYNC_REPORTS_DIR": str(deployment.reports),
    }
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(dagster), *command, "-m", "subsync_pipeline.definitions"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_sleep(port: int, database: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            if conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
                (database,),
            ).fetchone():
                return
            time.sleep(0.05)
    out, err = process.communicate(timeout=30) if process.poll() is not None else ("", "")
    pytest.fail(f"the first run never reached its Personify write\n{out[-2000:]}\n{err[-3000:]}")


def blocked_steps(instance: dg.DagsterInstance, run_id: str) -> list[str | None]:
    return [
        entry.dagster_event.step_key
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
        and entry.dagster_event.is_engine_event
        and f"blocked by limit for pool {PERSONIFY_POOL}" in (entry.message or "")
    ]


def wait_until_blocked(home: Path, process: subprocess.Popen[str]) -> None:
    """Until the run of DAY2 says a step waits at the Personify pool (or its process ends)."""
    deadline = time.monotonic() + 120
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline and process.poll() is None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": DAY2}))
            if runs and blocked_steps(instance, runs[0].run_id):
                return
            time.sleep(0.2)


@pytest.mark.postgres
def test_a_ui_style_run_waits_for_the_job_at_the_personify_pool(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    reference = deploy(
        tmp_path / "reference",
        personify_url=postgres_server.create_database("pools_ref"),
        members=MEMBERS,
    )
    land(reference)
    for day in (DAY1, DAY2):
        assert reference.materialize(day).success

    deployment = deploy(
        tmp_path / "runs",
        personify_url=postgres_server.create_database("pools_personify"),
        state_url=postgres_server.create_database("pools_state"),
        members=MEMBERS,
    )
    land(deployment)
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(SLOW_OPT_IN)
    engine.dispose()
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The project's own instance settings: the pools' limit comes from there.
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text(), encoding="utf-8")

    job = launch(
        deployment,
        home,
        ["job", "execute", "-j", "daily_sync_job", "--tags", f'{{"dagster/partition": "{DAY1}"}}'],
    )
    database = sa.make_url(deployment.personify_url).database or ""
    wait_for_sleep(postgres_server.port, database, job)
    selection = launch(
        deployment, home, ["asset", "materialize", "--select", "*", "--partition", DAY2]
    )
    wait_until_blocked(home, selection)
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO release_slow VALUES (1)")
    engine.dispose()
    for process in (job, selection):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{out[-2000:]}\n{err[-4000:]}"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {run.tags.get("dagster/partition"): run for run in instance.get_runs()}
        assert set(runs) == {DAY1, DAY2}
        assert runs[DAY1].job_name == "daily_sync_job"
        assert runs[DAY2].job_name == "__ASSET_JOB"
        blocked = blocked_steps(instance, runs[DAY2].run_id)
        # The second run's Personify steps waited for the first run's to finish.
        assert blocked and set(blocked) <= {"personify_cus_opt_in", "personify_cus_activity"}
        assert instance.get_run_by_id(runs[DAY2].run_id).is_success  # type: ignore[union-attr]

    pd.testing.assert_frame_equal(deployment.opt_in(), reference.opt_in())
    pd.testing.assert_frame_equal(deployment.activity(), reference.activity())
