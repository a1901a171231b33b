"""Atomicity (SPEC §4): a failure in the middle of a Personify write leaves that table exactly as
it was; running again then succeeds. The failure is real: a SQLite trigger aborts one insert after
earlier statements of the same write have already changed rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from subsync_pipeline_tests.harness import deploy, event

A, B, C = "000100", "000101", "000102"


def add_trigger(url: str, table: str, condition: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TRIGGER boom BEFORE INSERT ON "{table}" WHEN {condition} '
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    engine.dispose()


def drop_trigger(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER boom")
    engine.dispose()


def test_failed_opt_in_write_leaves_table_as_before(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land(
        "d1.csv",
        [
            event("A1", A, "subscribe", "api", "2026-11-19T09:00:00"),
            event("B1", B, "subscribe", "api", "2026-11-19T09:00:00"),
        ],
    )
    deployment.materialize("2026-11-19")
    before = deployment.table("opt_in")

    # Day 2's upsert updates A's row and inserts C's, which is made to fail: A must stay too.
    deployment.land(
        "d2.csv",
        [
            event("A2", A, "unsubscribe", "api", "2026-11-20T09:00:00"),
            event("C1", C, "subscribe", "api", "2026-11-20T09:00:00"),
        ],
    )
    add_trigger(deployment.personify_url, "CUS_OPT_IN", f"NEW.MASTER_CUSTOMER_ID = '{C}'")
    result = deployment.materialize("2026-11-20", raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert any("injected failure" in str(e.event_specific_data) for e in failures)
    pd.testing.assert_frame_equal(deployment.table("opt_in"), before)

    drop_trigger(deployment.personify_url)
    deployment.materialize("2026-11-20")
    flags = deployment.opt_in().set_index("MASTER_CUSTOMER_ID")["OPT_IN_FLAG"].to_dict()
    assert flags == {A: "N", B: "Y", C: "Y"}


def test_failed_activity_write_leaves_table_as_before(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land(
        "late.csv",
        [
            event(
                "A1",
                A,
                "subscribe",
                "form",
                "2026-11-20T09:00:00",
                timestamp_subscribed="2026-11-20",
            )
        ],
    )
    deployment.materialize("2026-11-20")
    before = deployment.table("activity")
    assert deployment.activity()["event_id"].tolist() == ["A1"]

    # An earlier day arrives late: Z0 becomes A's first change, so A1's row must be deleted and
    # Z0's inserted; the insert is made to fail after the delete has run.
    deployment.land("early.csv", [event("Z0", A, "subscribe", "api", "2026-11-18T09:00:00")])
    add_trigger(deployment.personify_url, "CUS_ACTIVITY", "NEW.ACTIVITY_DATE LIKE '2026-11-18%'")
    result = deployment.materialize("2026-11-18", raise_on_error=False)
    assert not result.success
    pd.testing.assert_frame_equal(deployment.table("activity"), before)

    drop_trigger(deployment.personify_url)
    deployment.materialize("2026-11-18")
    assert deployment.activity()["event_id"].tolist() == ["Z0"]
