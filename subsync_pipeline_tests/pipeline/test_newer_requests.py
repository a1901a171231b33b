"""The day's count of keys whose latest request is newer than their status (a blocked request),
on a state database on SQLite and on PostgreSQL: the resolve step's metadata and the report's
sample, first keys in key order."""

from __future__ import annotations

from pathlib import Path

import pytest

from subsync_pipeline.core import ledger
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.harness import deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

DAY1, DAY2 = "2026-11-19", "2026-11-20"
T1, T1_LATER, T2 = "2026-11-19T09:00:00", "2026-11-19T10:00:00", "2026-11-20T09:00:00"
A, B, C, D, E = "000101", "000102", "000103", "000104", "000105"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_blocked_requests_are_counted_per_day_and_sampled_in_key_order(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state_url = None
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        state_url = server.create_database("state_newer_requests")
    deployment = deploy(tmp_path, state_url=state_url)
    deployment.land(
        "day1.csv",
        [
            *(event(f"S{m}", m, "subscribe", "form", T1) for m in (A, B, C, D, E)),
            # E's weaker unsubscribe is blocked on day 1 already.
            event("E1", E, "unsubscribe", "third_party", T1_LATER),
        ],
    )
    deployment.land(
        "day2.csv",
        [
            # Blocked: a third party cannot override a form.
            *(event(f"U{m}", m, "unsubscribe", "third_party", T2) for m in (C, A, B)),
            # Applied: the form may override itself; D's status is the newest request.
            event("UD", D, "unsubscribe", "form", T2),
        ],
    )
    deployment.materialize(DAY1)
    result = deployment.materialize(DAY2)
    [resolved] = result.asset_materializations_for_node("contact_subscription_status")
    assert resolved.metadata["keys_with_newer_request"].value == 3

    engine = create_state_engine(deployment.state_url)
    with engine.connect() as conn:
        count, sample = ledger.blocked_keys(conn, [DAY2], 2)
        assert count == 3
        assert sample["master_customer_id"].tolist() == [A, B]
        assert ledger.blocked_keys(conn, [DAY1], 50)[0] == 4
        assert ledger.blocked_keys(conn, ["2026-11-21"], 50)[0] == 0
    engine.dispose()
