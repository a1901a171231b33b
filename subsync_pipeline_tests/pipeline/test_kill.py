"""SIGKILL in the middle of a run (issue 7): `dagster asset materialize` of a day, from the CLI as
an operator runs it, is killed (the whole process group) while its CUS_OPT_IN write is inside its
transaction. That table is left as it was before the run; running the day again makes Personify
equal to an uninterrupted run of the same days, every column compared except the audit dates
(ADDDATE, MODDATE: when the row was written) and the generated CUS_ACTIVITY_ID.

The CUS_ACTIVITY write spans two databases (issue 17): it logs its inserted ids in the state
database, commits Personify, then records them. The run is killed at both points in between:
while Personify commits (log committed, Personify rolled back) and right after (Personify
committed, record not yet written). Neither may leave a duplicate or an unknown row.
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
CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON "CUS_OPT_IN" FOR EACH ROW
    EXECUTE FUNCTION slow_upsert();
"""
OPT_IN_AUDIT = ["ADDDATE", "MODDATE"]
ACTIVITY_GENERATED = ["CUS_ACTIVITY_ID", "ADDDATE"]
# Sleeps in the Personify transaction's COMMIT, after the state database has the write's log:
# a deferred trigger runs at commit time.
SLOW_ACTIVITY_COMMIT = """
CREATE FUNCTION slow_commit() RETURNS trigger AS $$
BEGIN
    IF NEW."MASTER_CUSTOMER_ID" = '000138' AND NEW."ACTIVITY_SUBCODE" = 'NEWSLETTER' THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON "CUS_ACTIVITY" DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""
# Sleeps in the state database's record of the write, after Personify committed.
SLOW_RECORD = """
CREATE FUNCTION slow_record() RETURNS trigger AS $$
BEGIN
    PERFORM pg_sleep(30);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow BEFORE INSERT ON activity_records FOR EACH STATEMENT
    EXECUTE FUNCTION slow_record();
"""


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
        opt_in.sort_values(list(opt_in.columns)).reset_index(drop=True),
        activity.sort_values(list(activity.columns)).reset_index(drop=True),
    )


def wait_for_sleeping_writer(
    port: int, database: str | list[str], process: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) "
                "AND wait_event = 'PgSleep'",
                ([database] if isinstance(database, str) else database,),
            ).fetchone()
            if row:
                return
            time.sleep(0.05)
    out, err = process.communicate(timeout=30) if process.poll() is not None else ("", "")
    pytest.fail(f"the run never reached the slow write\n{out[-2000:]}\n{err[-3000:]}")


def end_sleeping_sessions(port: int, databases: list[str]) -> None:
    """End the server sessions the killed run left sleeping: a backend notices its client is
    gone only when it next talks to it, so one asleep inside COMMIT would go on to commit."""
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND wait_event = 'PgSleep'",
            (databases,),
        )


def wait_until_idle(port: int, database: str | list[str]) -> None:
    """Until the killed client's server processes have rolled back and gone."""
    deadline = time.monotonic() + 60
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)",
                ([database] if isinstance(database, str) else database,),
            ).fetchone()
            if busy == (0,):
                return
            time.sleep(0.1)
    pytest.fail("the killed run's database session never ended")


def launch(deployment: Deployment, home: Path, day: str) -> subprocess.Popen[str]:
    """`dagster asset materialize` of the day, as an operator runs it, in a process group."""
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SUBSYNC_CONFIG": str(deployment.config_path),
        "SUBSYNC_LANDING_DIR": str(deployment.landing),
        "PERSONIFY_DB_URL": deployment.personify_url,
        "SUBSYNC_DB_URL": deployment.state_url,
        "SUBSYNC_REPORTS_DIR": str(deployment.reports),
    }
    home.mkdir(exist_ok=True)
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "asset", "materialize", "-m", "subsync_pipeline.definitions"]
    return subprocess.Popen(
        [*command, "--select", "*", "--partition", day],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


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

    process = launch(killed, tmp_path / "dagster_home", DAY2)
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


@pytest.mark.postgres
@pytest.mark.parametrize("moment", ["while_personify_commits", "after_personify_committed"])
def test_sigkill_between_the_two_commits_neither_duplicates_nor_orphans(
    tmp_path: Path, password_role: PasswordRole, moment: str
) -> None:
    reference = deploy(
        tmp_path / "reference",
        personify_url=password_role.database(f"between_ref_personify_{moment}"),
        state_url=password_role.database(f"between_ref_state_{moment}"),
    )
    land_days(reference)
    reference.materialize(DAY1)
    reference.materialize(DAY2)
    expected_opt_in, expected_activity = personify(reference)

    killed = deploy(
        tmp_path / "killed",
        personify_url=password_role.database(f"between_personify_{moment}"),
        state_url=password_role.database(f"between_state_{moment}"),
    )
    land_days(killed)
    killed.materialize(DAY1)
    slowed = killed.personify_url if moment == "while_personify_commits" else killed.state_url
    engine = sa.create_engine(slowed)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            SLOW_ACTIVITY_COMMIT if moment == "while_personify_commits" else SLOW_RECORD
        )
    engine.dispose()

    process = launch(killed, tmp_path / "dagster_home", DAY2)
    databases = [
        sa.make_url(url).database or "" for url in (killed.personify_url, killed.state_url)
    ]
    port = password_role.server.port
    wait_for_sleeping_writer(port, databases, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    end_sleeping_sessions(port, databases)
    wait_until_idle(port, databases)

    logged = killed.state("SELECT count(*) AS n FROM activity_write_log")["n"].iloc[0]
    # The write's log outlived it: that is what the next writer settles.
    assert logged > 0
    held = killed.table("activity")
    if moment == "after_personify_committed":
        # Personify holds the day's rows, which the record does not know yet.
        recorded = killed.state("SELECT activity_id FROM activity_records")["activity_id"]
        assert (~held["CUS_ACTIVITY_ID"].isin(recorded)).sum() > 0

    engine = sa.create_engine(slowed)
    with engine.begin() as conn:
        table = '"CUS_ACTIVITY"' if moment == "while_personify_commits" else "activity_records"
        conn.exec_driver_sql(f"DROP TRIGGER slow ON {table}")
    engine.dispose()
    assert killed.materialize(DAY2).success
    opt_in, activity = personify(killed)
    pd.testing.assert_frame_equal(opt_in, expected_opt_in)
    pd.testing.assert_frame_equal(activity, expected_activity)
    # Every row of CUS_ACTIVITY is recorded against exactly one event, the log is settled.
    rows = killed.activity()
    assert rows["event_id"].notna().all() and rows["event_id"].is_unique
    assert killed.state("SELECT count(*) AS n FROM activity_write_log")["n"].iloc[0] == 0
