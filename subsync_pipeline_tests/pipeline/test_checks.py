"""Asset checks: all pass on a clean day; an unreadable file fails with ERROR; a day under the
member match-rate threshold fails with WARN.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from subsync_pipeline.checks import (
    ACTIVITY_RECONCILED,
    FILES_READABLE,
    MEMBER_MATCH_RATE,
    ONE_ROW_PER_EVENT,
    OPT_IN_RECONCILED,
    REJECT_RATE,
)
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.manifest import fallback_day
from subsync_pipeline_tests.harness import deploy, event

ALL_CHECKS = {
    FILES_READABLE,
    MEMBER_MATCH_RATE,
    REJECT_RATE,
    OPT_IN_RECONCILED,
    ACTIVITY_RECONCILED,
    ONE_ROW_PER_EVENT,
}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {
        e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()
    }


def test_checks_pass_on_a_clean_day(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land(
        "a.csv",
        [
            event(f"C{n}", f"{100 + n:06d}", "subscribe", "api", "2026-11-20T09:00:00")
            for n in range(10)
        ],
    )
    found = evaluations(deployment.materialize("2026-11-20"))
    assert set(found) == ALL_CHECKS
    assert all(passed for passed, _ in found.values()), found


def test_an_unreadable_file_fails_with_error(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    today = fallback_day(parse_config(deployment.config), datetime.now(UTC))
    deployment.land("good.csv", [event("G1", "000100", "subscribe", "api", f"{today}T00:30:00")])
    (deployment.landing / "broken.csv.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    result = deployment.materialize(today)
    found = evaluations(result)
    assert found[FILES_READABLE] == (False, "ERROR")
    assert found[OPT_IN_RECONCILED] == (True, "ERROR")
    assert deployment.activity()["event_id"].tolist() == ["G1"]


def test_a_low_member_match_rate_warns(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    rows = [
        event(f"K{n}", f"{100 + n:06d}", "subscribe", "api", "2026-11-20T09:00:00")
        for n in range(8)
    ]
    rows += [
        event(f"U{n}", f"{900000 + n}", "subscribe", "api", "2026-11-20T09:00:00") for n in range(2)
    ]
    deployment.land("a.csv", rows)
    found = evaluations(deployment.materialize("2026-11-20"))
    assert found[MEMBER_MATCH_RATE] == (False, "WARN")
    assert found[REJECT_RATE] == (False, "WARN")
    assert found[FILES_READABLE] == (True, "ERROR")


TAMPERING = {
    "opt_in": (
        'CREATE TRIGGER tamper AFTER INSERT ON "CUS_OPT_IN" BEGIN '
        'UPDATE "CUS_OPT_IN" SET "OPT_OUT_REASON_CODE" = \'tampered\' '
        'WHERE "MASTER_CUSTOMER_ID" = NEW."MASTER_CUSTOMER_ID"; END',
        OPT_IN_RECONCILED,
    ),
    "activity": (
        'CREATE TRIGGER tamper AFTER INSERT ON "CUS_ACTIVITY" BEGIN '
        'UPDATE "CUS_ACTIVITY" SET "ACTIVITY_TEXT" = \'tampered\' '
        'WHERE "CUS_ACTIVITY_ID" = NEW."CUS_ACTIVITY_ID"; END',
        ACTIVITY_RECONCILED,
    ),
}


@pytest.mark.parametrize("table", sorted(TAMPERING))
def test_a_write_that_does_not_reconcile_fails_with_error(tmp_path: Path, table: str) -> None:
    """A trigger in Personify rewrites what subsync inserted: the check counted in the database
    after the write catches it, on that table only."""
    trigger, failing = TAMPERING[table]
    deployment = deploy(tmp_path)
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(trigger)
    engine.dispose()
    deployment.land("a.csv", [event("T1", "000100", "subscribe", "api", "2026-11-20T09:00:00")])
    found = evaluations(deployment.materialize("2026-11-20"))
    for check in (OPT_IN_RECONCILED, ACTIVITY_RECONCILED):
        assert found[check] == (check != failing, "ERROR")


def test_a_broken_file_is_reported_by_the_run_that_records_it(tmp_path: Path) -> None:
    """A backfill of a past day that records a broken upload says so, though the file (with no
    readable day) is filed under the day it was recorded; that day's report lists it too."""
    deployment = deploy(tmp_path)
    deployment.land("good.csv", [event("P1", "000100", "subscribe", "api", "2026-11-20T09:00")])
    (deployment.landing / "broken.csv").write_bytes(b"\x00\x9f\x92 not a tracking log")
    result = deployment.materialize("2026-11-20")
    assert evaluations(result)[FILES_READABLE] == (False, "ERROR")
    (raw,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_tracking_log")
    ]
    recorded = fallback_day(parse_config(deployment.config), datetime.now(UTC))
    assert raw.metadata["files_failed"].value == 1
    listed = str(raw.metadata["files_failed_filed_elsewhere"].value)
    assert "broken.csv" in listed and recorded in listed
    # Only the run that records it: the same day again is clean.
    assert evaluations(deployment.materialize("2026-11-20"))[FILES_READABLE] == (True, "ERROR")

    assert evaluations(deployment.materialize(recorded))[FILES_READABLE] == (False, "ERROR")
    rejects = (deployment.reports / recorded / "rejected_rows.csv").read_text(encoding="utf-8")
    assert "broken.csv" in rejects
