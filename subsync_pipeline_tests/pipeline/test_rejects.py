"""Validation and rejects (SPEC §3): every reason code is produced, rejects keep every original
value, and a file that fails as a whole never stops the other files of the day.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.manifest import fallback_day
from subsync_pipeline.core.validation import REASON_CODES
from subsync_pipeline_tests.harness import Deployment, deploy, event

DAY = "2026-11-20"
T = "2026-11-20T09:00:00"
GOOD = "000100"


def rejects(deployment: Deployment) -> pd.DataFrame:
    return deployment.state(
        "select source_file, line_number, event_id, reasons, error, original_values "
        "from rejected_records order by source_file, line_number"
    )


def reasons_by_event(deployment: Deployment) -> dict[str, set[str]]:
    frame = rejects(deployment).dropna(subset=["event_id"])
    return {row.event_id: set(row.reasons.split(";")) for row in frame.itertuples()}


def test_every_row_reason_code_is_produced(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    rows = [
        event("OK1", GOOD, "subscribe", "api", T),
        event("R_MISSING", "", "subscribe", "api", T),
        event("R_INVALID", "12AB", "subscribe", "api", T),
        event("R_BADSUB", f"{GOOD}|x", "subscribe", "api", T),
        event("R_UNKNOWN", "999999", "subscribe", "api", T),
        event("R_TYPE", GOOD, "resubscribe", "api", T),
        event("R_SCOPE", GOOD, "subscribe", "api", T, scope_type="list"),
        event("R_SOURCE", GOOD, "subscribe", "carrier_pigeon", T),
        event("R_TIME", GOOD, "subscribe", "api", "2026-13-45T99:00"),
        event("R_TSUB", GOOD, "subscribe", "api", T, timestamp_subscribed="yesterday"),
        event("R_EARLY", GOOD, "subscribe", "api", "2025-06-01T09:00:00"),
        event("R_SCOPEID", GOOD, "subscribe", "api", T, scope_id=""),
        {**event("R_FORCE", GOOD, "subscribe", "api", T), "force_optin": "perhaps"},
        event("X" * 65, GOOD, "subscribe", "api", T),
        event("R_DUP", GOOD, "subscribe", "api", T),
    ]
    deployment.land("a.csv", rows)
    # The same event id with other content in a file recorded later: that version is rejected.
    deployment.land("b.csv", [event("R_DUP", GOOD, "unsubscribe", "api", T)])
    deployment.materialize(DAY)

    found = reasons_by_event(deployment)
    assert found["R_MISSING"] == {"missing_member_id"}
    assert found["R_INVALID"] == {"invalid_member_id"}
    assert found["R_BADSUB"] == {"invalid_member_id"}
    assert found["R_UNKNOWN"] == {"unknown_member"}
    assert found["R_TYPE"] == {"invalid_event_type"}
    assert found["R_SCOPE"] == {"invalid_scope_type"}
    assert found["R_SOURCE"] == {"invalid_source"}
    assert found["R_TIME"] == {"invalid_timestamp"}
    assert found["R_TSUB"] == {"invalid_timestamp"}
    assert found["R_EARLY"] == {"invalid_timestamp"}
    assert found["R_SCOPEID"] == {"missing_scope_id"}
    assert found["R_FORCE"] == {"invalid_force_optin"}
    assert found["X" * 65] == {"invalid_event_id"}
    assert found["R_DUP"] == {"duplicate_event"}
    assert "OK1" not in found

    table = rejects(deployment)
    dup = table.loc[table["event_id"].eq("R_DUP")].iloc[0]
    assert dup["source_file"].endswith("b.csv") and dup["line_number"] == 2
    original = json.loads(table.loc[table["event_id"].eq("R_INVALID"), "original_values"].iloc[0])
    assert original["custom_member_id"] == "12AB" and original["email"] == "m12AB@example.org"

    ledger = deployment.state("select event_id from event_ledger order by event_id")
    assert ledger["event_id"].tolist() == ["OK1", "R_DUP"]
    # R_DUP's first-recorded version re-states OK1's subscription: kept, but no status change.
    assert deployment.activity()["event_id"].tolist() == ["OK1"]


def test_tracking_disabled_rejects_that_event_type(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(tracking={"subscribe_enabled": True, "unsubscribe_enabled": False})
    deployment.land(
        "a.csv",
        [
            event("S1", GOOD, "subscribe", "api", T),
            event("U1", GOOD, "unsubscribe", "api", "2026-11-20T10:00:00"),
        ],
    )
    deployment.materialize(DAY)
    assert reasons_by_event(deployment) == {"U1": {"tracking_disabled"}}
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["Y"]

    # Once config changes, re-running the day takes the row in: nothing was lost.
    deployment.set_config(tracking={"subscribe_enabled": True, "unsubscribe_enabled": True})
    deployment.materialize(DAY)
    assert reasons_by_event(deployment) == {}
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]


def test_every_spec_reason_code_is_known() -> None:
    spec_codes = {
        "missing_member_id",
        "invalid_member_id",
        "unknown_member",
        "invalid_event_type",
        "invalid_scope_type",
        "invalid_source",
        "invalid_timestamp",
        "tracking_disabled",
        "duplicate_event",
    }
    assert spec_codes <= set(REASON_CODES)


def test_duplicate_rule_holds_whatever_order_days_run(tmp_path: Path) -> None:
    """The first-recorded version wins even when its day is processed after the other's."""
    deployment = deploy(tmp_path)
    deployment.land("a.csv", [event("D1", GOOD, "subscribe", "api", "2026-11-19T09:00:00")])
    deployment.land("b.csv", [event("D1", GOOD, "unsubscribe", "api", T)])
    deployment.materialize(DAY)
    deployment.materialize("2026-11-19")
    assert reasons_by_event(deployment) == {"D1": {"duplicate_event"}}
    table = rejects(deployment)
    assert table["source_file"].str.endswith("b.csv").all()
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["Y"]


def test_exact_repeats_are_dropped_silently(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    row = event("E1", GOOD, "subscribe", "api", T)
    deployment.land("a.csv", [row, row])
    deployment.land("b.csv", [row])
    result = deployment.materialize(DAY)
    assert rejects(deployment).empty
    assert deployment.activity()["event_id"].tolist() == ["E1"]
    raw = result.asset_materializations_for_node("raw_tracking_log")[0].metadata
    assert raw["repeats_dropped"].value == 2


def test_broken_files_are_rejected_whole_while_others_land(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land("good.csv", [event("G1", GOOD, "subscribe", "api", T)])
    (deployment.landing / "empty.csv").write_bytes(b"")
    deployment.land("header_only.csv", [])
    deployment.land(
        "no_source.csv",
        [event("N1", GOOD, "subscribe", "api", T)],
        columns=[
            "event_id",
            "email",
            "custom_member_id",
            "event_type",
            "scope_type",
            "scope_id",
            "occurred_at",
        ],
    )
    (deployment.landing / "binary.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert deployment.materialize(DAY).success
    assert deployment.activity()["event_id"].tolist() == ["G1"]
    # A file with no readable timestamp is reported under the day it was recorded.
    landed_day = fallback_day(parse_config(deployment.config), datetime.now(UTC))
    assert deployment.materialize(landed_day).success

    table = rejects(deployment).set_index("source_file")
    by_file = {Path(name).name: row for name, row in table.iterrows()}
    assert by_file["empty.csv"]["reasons"] == "file_unreadable"
    assert "empty" in by_file["empty.csv"]["error"]
    assert by_file["no_source.csv"]["reasons"] == "missing_columns"
    assert "source" in by_file["no_source.csv"]["error"]
    assert by_file["binary.csv.gz"]["reasons"] == "file_unreadable"
    assert "header_only.csv" not in by_file
    manifest = deployment.state("select path, status, row_count from file_manifest")
    statuses = {Path(p).name: s for p, s in zip(manifest["path"], manifest["status"], strict=True)}
    assert statuses["header_only.csv"] == "ok" and statuses["good.csv"] == "ok"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_re_exported_day_takes_back_the_activity_of_events_now_rejected_or_gone(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        server = request.getfixturevalue("postgres_server")
        deployment = deploy(
            tmp_path,
            personify_url=server.create_database("personify_reexport"),
            state_url=server.create_database("state_reexport"),
        )
    else:
        deployment = deploy(tmp_path)
    first = [
        event("E1", "000100", "subscribe", "api", T),
        event("E2", "000101", "subscribe", "api", T),
        event("E3", "000102", "subscribe", "api", T),
    ]
    deployment.land("export.csv", first)
    deployment.materialize(DAY)
    assert sorted(deployment.activity()["event_id"]) == ["E1", "E2", "E3"]

    # Real Magnet re-exports the day: E1's member id is now one Personify does not have, E3 is
    # gone from the file. Neither may keep a CUS_ACTIVITY row.
    again = [{**first[0], "custom_member_id": "999999"}, first[1]]
    deployment.land("export.csv", again)
    deployment.materialize(DAY)
    assert deployment.activity()["event_id"].tolist() == ["E2"]
    assert reasons_by_event(deployment) == {"E1": {"unknown_member"}}
