"""The CUS_ACTIVITY write and its preview in batches of members (a first load owes millions of
rows): a write in several batches leaves Personify and the state database's record exactly as a
write in one batch, a record whose event left the ledger deleted once; a preview in several
batches lists exactly what the real run then changes. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from subsync_pipeline.core import sync
from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.personify.writers import WriteCounts
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.harness import MEMBERS, Deployment, deploy, event
from subsync_pipeline_tests.pipeline.test_preview import (
    changes_between,
    listed,
    personify_rows,
    previewed,
    state_rows,
    written_columns,
)

DAY1, DAY2 = "2026-11-19", "2026-11-20"
CONTACTS = MEMBERS[:12]
# The last contact's only day-1 event leaves the re-landed file: its record is `gone`, and its
# contact sorts into the last batch, far from the batch that deletes the record's row.
GONE = f"A{CONTACTS[-1]}"
# Far below the ~40 status changes owed after day 2.
SMALL = 5


def day1_rows() -> list[dict[str, str]]:
    return [
        row
        for m in CONTACTS
        for row in (
            event(f"A{m}", m, "subscribe", "form", f"{DAY1}T09:00:00"),
            event(
                f"E{m}",
                m,
                "subscribe",
                "api",
                f"{DAY1}T10:00:00",
                scope_type="message_category",
                scope_id="77",
            ),
        )
    ]


def day2_rows() -> list[dict[str, str]]:
    return [
        row
        for m in CONTACTS
        for row in (
            event(f"B{m}", m, "unsubscribe", "api", f"{DAY2}T09:00:00"),
            event(f"C{m}", m, "subscribe", "preference_centre", f"{DAY2}T11:00:00"),
        )
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Deployment]:
    """A deployment on the parameter's databases whose day 1 is written; then day 1 re-landed
    without GONE's event and day 2 landed, to be synced."""

    def make(name: str) -> Deployment:
        if request.param == "sqlite":
            deployment = deploy(tmp_path / name)
        else:
            server = request.getfixturevalue("postgres_server")
            deployment = deploy(
                tmp_path / name,
                personify_url=server.create_database(f"batches_{name}_personify"),
                state_url=server.create_database(f"batches_{name}_state"),
            )
        deployment.land("day1.csv", day1_rows())
        deployment.materialize(DAY1)
        deployment.land("day1.csv", [row for row in day1_rows() if row["event_id"] != GONE])
        deployment.land("day2.csv", day2_rows())
        return deployment

    return make


def sync_days(deployment: Deployment, days: list[str]) -> tuple[WriteCounts, list[str]]:
    """A ranged run's steps by hand: the CUS_ACTIVITY write's counts and progress lines."""
    config = load_config(deployment.config_path)
    state, personify = create_state_engine(deployment.state_url), deployment.engine()
    lines: list[str] = []
    try:
        sync.ingest(state, deployment.landing, config, days)
        validated = sync.validate_days(state, personify, config, days, "run", lines.append)
        sync.resolve_queued(
            state, config, tuple(days), "run", validated.figures.validated, lines.append
        )
        sync.write_opt_in(personify, state, config)
        counts = sync.write_activity(personify, state, config, "run", lines.append)
    finally:
        state.dispose()
        personify.dispose()
    return counts, [line for line in lines if "CUS_ACTIVITY batch" in line]


def records(deployment: Deployment) -> pd.DataFrame:
    frame = deployment.state("SELECT event_id, gone FROM activity_records ORDER BY event_id")
    return frame.astype({"gone": bool})


def test_a_write_in_batches_equals_one_write(fresh: Callable[[str], Deployment]) -> None:
    one, many = fresh("one"), fresh("many")
    assert records(many)["gone"].eq(False).all() and GONE in set(records(many)["event_id"])
    many.set_config(chunk_events=SMALL)
    one_counts, one_batches = sync_days(one, [DAY1, DAY2])
    many_counts, many_batches = sync_days(many, [DAY1, DAY2])
    assert one_batches == [] and len(many_batches) > 2, many_batches
    # The gone row is deleted once: logged twice under one write id, the log's key would refuse.
    assert many_counts == one_counts
    assert many_counts.deleted == 1 and many_counts.mismatched == 0
    activity = many.activity()
    pd.testing.assert_frame_equal(activity, one.activity())
    pd.testing.assert_frame_equal(many.opt_in(), one.opt_in())
    pd.testing.assert_frame_equal(records(many), records(one))
    # Every record names a row of ours, every row of ours has a record, and the gone one left.
    assert activity["event_id"].notna().all() and len(activity) == len(records(many))
    assert GONE not in set(activity["event_id"]) and not records(many)["gone"].any()
    assert many.state("SELECT * FROM activity_write_log").empty
    assert many.state("SELECT * FROM work_queue").empty


def test_a_preview_in_batches_lists_what_the_real_run_changes(
    fresh: Callable[[str], Deployment],
) -> None:
    deployment = fresh("preview")
    deployment.set_config(chunk_events=SMALL)
    before_state = state_rows(deployment)
    found = previewed(deployment, [DAY1, DAY2])
    assert state_rows(deployment) == before_state, "the preview left a trace in the state database"
    # Each batch's changes are their own parts: one inserted ACTIVITY_CODE part per batch.
    codes = [
        part
        for part in found.change_parts("CUS_ACTIVITY")
        if part["action"].iloc[0] == "insert" and part["column"].iloc[0] == "ACTIVITY_CODE"
    ]
    assert len(codes) > 2
    counts = found.counts()["CUS_ACTIVITY"]
    assert counts["delete"] == 1 and counts["insert"] == sum(map(len, codes))
    before = personify_rows(deployment)
    _, batches = sync_days(deployment, [DAY1, DAY2])
    assert len(batches) > 2
    real = changes_between(before, personify_rows(deployment), written_columns(deployment))
    assert real == listed(found)
    assert ("CUS_ACTIVITY", "delete", GONE) in {change[:3] for change in real}
