"""SIGKILL in the middle of a run (issue 7): `dagster asset materialize` of a day, from the CLI as
an operator runs it, is killed (the whole process group) while its CUS_OPT_IN write is inside its
transaction. That table is left as it was before the run; running the day again makes Personify
equal to an uninterrupted run of the same days, every column compared except the audit dates
(ADDDATE, MODDATE: when the row was written) and the generated ACTIVITY_ID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from subsync_pipeline_tests.conftest import PasswordRole
from subsync_pipeline_tests.harness import Deployment, deploy, event

DAY1, DAY2 = "2026-11-19", "2026-11-20"
# Sleeps inside the write's transaction, once rows of the day have already been upserted: on the
# last contact whose NEWSLETTER status day 2 changes (unchanged keys are not written again).
SLOW_UPSERT = """
CREATE FUNCTION slow_upsert() RETURNS trigger AS $$
BEGIN
    IF NEW."MASTER_CUSTOMER_ID" = '000138' THEN PERFORM pg_sleep(2); END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow BEFORE INSERT ON "CUS_OPT_IN" FOR EACH ROW EXECUTE FUNCTION slow_upsert();
"""
OPT_IN_AUDIT = ["ADDDATE", "MODDATE"]
ACTIVITY_GENERATED = ["ACTIVITY_ID", "ADDDATE"]


def land_days(deployment: Deployment) -> None:
    members = [f"{n:06d}" for n in range(100, 140)]
    deployment.land(
        "day1.csv",
        [event(f"A{m}", m, "subscribe", "form", f"{DAY1}T09:00:00") for m in members],
    )
    deployment.land(
        "day2.csv",
        [
            event(f"B{m}", m, "unsubscribe", "api", f"{DAY2}T09:00:00", scope_id="77")
            for m in members
        ]
        + [event(f"C{m}", m, "unsubscribe", "api", f"{DAY2}T10:00:00") for m in members[::2]],
    )


def personify(deployment: Deployment) -> tuple[pd.DataFrame, pd.DataFrame]:
    opt_in = deployment.table("opt_in").drop(columns=OPT_IN_AUDIT)
    activity = deployment.table("activity").drop(columns=ACTIVITY_GENERATED)
    return (
        opt_in.sort_values(["MASTER_CUSTOMER_ID", "OPT_IN_CODE"]).reset_index(drop=True),
        activity.sort_values("EXTERNAL_ID").reset_index(drop=True),
    )


def wait_for_sleeping_writer(port: int, database: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
                (database,),
            ).fetchone()
            if row:
                return
            time.sleep(0.05)
    out, err = process.communicate(timeout=30) if process.poll() is not None else ("", "")
    pytest.fail(f"the run never reached the slow write\n{out[-2000:]}\n{err[-3000:]}")


def wait_until_idle(port: int, database: str) -> None:
    """Until the killed client's server process has rolled back and gone."""
    deadline = time.monotonic() + 60
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()
            if busy == (0,):
                return
            time.sleep(0.1)
    pytest.fail("the killed run's database session never ended")


@pytest.mark.postgres
def test_sigkill_mid_write_then_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, password_role: PasswordRole
) -> None:
    reference = deploy(
        tmp_path / "reference",
        personify_url=password_role.database("kill_ref_personify"),
        state_url=password_role.database("kill_ref_state"),
    )
    land_days(reference)
    reference.materialize(DAY1)
    reference.materialize(DAY2)
    expected_opt_in, expected_activity = personify(reference)

    killed = deploy(
        tmp_path / "killed",
        personify_url=password_role.database("kill_personify"),
        state_url=password_role.database("kill_state"),
    )
    land_days(killed)
    killed.materialize(DAY1)
    engine = killed.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(SLOW_UPSERT)
    engine.dispose()
    before = killed.table("opt_in"), killed.table("activity")

    environment = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SUBSYNC_CONFIG": str(killed.config_path),
        "SUBSYNC_LANDING_DIR": str(killed.landing),
        "PERSONIFY_DB_URL": killed.personify_url,
        "SUBSYNC_DB_URL": killed.state_url,
        "SUBSYNC_REPORTS_DIR": str(killed.reports),
    }
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "asset", "materialize", "-m", "subsync_pipeline.definitions"]
    process = subprocess.Popen(
        [*command, "--select", "*", "--partition", DAY2],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    database = sa.make_url(killed.personify_url).database or ""
    port = password_role.server.port
    wait_for_sleeping_writer(port, database, process)
    os.killpg(process.pid, signal.SIGKILL)
    out, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert password_role.password not in out + err

    wait_until_idle(port, database)
    # The killed transaction rolled back whole; CUS_ACTIVITY, written in a step of its own
    # (before or after, as Dagster orders them), holds either none or all of the day.
    pd.testing.assert_frame_equal(killed.table("opt_in"), before[0])
    activity_now = killed.table("activity")
    if not activity_now.equals(before[1]):
        pd.testing.assert_frame_equal(personify(killed)[1], expected_activity)

    engine = killed.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql('DROP TRIGGER slow ON "CUS_OPT_IN"')
    engine.dispose()
    assert killed.materialize(DAY2).success
    opt_in, activity = personify(killed)
    pd.testing.assert_frame_equal(opt_in, expected_opt_in)
    pd.testing.assert_frame_equal(activity, expected_activity)
