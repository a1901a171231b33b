"""Checkpoints (issue 6): a day resumes each contact from its stored state instead of replaying
its whole history, and still ends exactly where one in-order pass over every event ends (the
guarantees of SPEC §4), including after a late day and after a run that died half-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from subsync_pipeline.core import sync
from subsync_pipeline.core.config import DEFAULT_SOURCE_RANKS, load_config
from subsync_pipeline.core.personify.connection import create_personify_engine
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

A, B = "000100", "000101"
EVENTS = {"scope_type": "message_category", "scope_id": "77"}

DAYS: dict[str, list[dict[str, str]]] = {
    "2026-11-18": [
        event(
            "A1", A, "subscribe", "form", "2026-11-18T09:00:00", timestamp_subscribed="2026-11-18"
        ),
        event("B1", B, "subscribe", "api", "2026-11-18T10:00:00"),
        # A's second key (EVENTS): no event of it on 2026-11-20, so its checkpoint row keeps the
        # older through while the NEWSLETTER row moves on.
        event("A1E", A, "subscribe", "form", "2026-11-18T12:00:00", **EVENTS),
    ],
    "2026-11-19": [
        event("A2", A, "unsubscribe", "third_party", "2026-11-19T09:00:00"),
        event("A3", A, "unsubscribe", "form", "2026-11-19T11:00:00"),
        # Late for A's member checkpoint (A4), though after its EVENTS row's through (A1E).
        event("A2E", A, "unsubscribe", "api", "2026-11-19T10:00:00", **EVENTS),
    ],
    "2026-11-20": [
        event("A4", A, "subscribe", "api", "2026-11-20T09:00:00"),
        event("B2", B, "unsubscribe", "preference_centre", "2026-11-20T09:30:00"),
    ],
}


QUEUED = "SELECT step, master_customer_id FROM work_queue ORDER BY step, master_customer_id"
# A day of B's alone: a run for it touches none of A's contacts.
B_ONLY = {"2026-11-21": [event("B3", B, "subscribe", "preference_centre", "2026-11-21T09:00:00")]}


def run_part_way(deployment: Deployment, day: str, *, resolve: bool) -> None:
    """What a run that dies after validating (or after resolving) a day leaves behind."""
    config = load_config(deployment.config_path)
    state_engine = create_state_engine(deployment.state_url)
    personify_engine = create_personify_engine(deployment.personify_url)
    sync.ingest(state_engine, deployment.landing, config, [day])
    sync.validate_days(state_engine, personify_engine, config, [day], f"dead-{day}")
    if resolve:
        sync.resolve_queued(state_engine, config, (day,), f"dead-{day}")
    state_engine.dispose()
    personify_engine.dispose()


def land_all(deployment: Deployment) -> None:
    for day, rows in DAYS.items():
        deployment.land(f"{day}.csv", rows)


def resolve_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("contact_subscription_status")
    return {name: value.value for name, value in materialization.metadata.items()}


@pytest.fixture(scope="module")
def in_order(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CUS_OPT_IN and CUS_ACTIVITY after one in-order pass over every day: the expected end."""
    reference = deploy(tmp_path_factory.mktemp("reference"))
    land_all(reference)
    for day in DAYS:
        reference.materialize(day)
    return reference.opt_in(), reference.activity()


def deployments(tmp_path: Path, postgres_server: PostgresServer | None) -> Deployment:
    if postgres_server is None:
        return deploy(tmp_path / "run")
    name = tmp_path.name[-20:].lower()
    return deploy(
        tmp_path / "run",
        personify_url=postgres_server.create_database(f"personify_ck_{name}"),
        state_url=postgres_server.create_database(f"state_ck_{name}"),
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    return deployments(tmp_path, server)


def test_later_days_resume_and_a_late_day_replays(
    deployment: Deployment, in_order: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    land_all(deployment)

    first = resolve_metadata(deployment.materialize("2026-11-18"))
    assert (first["contacts_replayed"], first["events_resolved"]) == (2, 3)

    # A day after the checkpoints: only its own events are resolved, nobody is replayed, and
    # only the keys they touch get new checkpoint rows.
    last = resolve_metadata(deployment.materialize("2026-11-20"))
    assert (last["contacts_replayed"], last["events_resolved"]) == (0, 2)
    throughs = "SELECT master_customer_id, area, through_event_id FROM key_states ORDER BY 1, 2"
    assert deployment.state(throughs).values.tolist() == [
        [A, "EVENTS", "A1E"],
        [A, "NEWSLETTER", "A4"],
        [B, "NEWSLETTER", "B2"],
    ]

    # A day before A's checkpoint (a late file): A is replayed over its whole history, even for
    # the EVENTS event that is after that key's own row; B, which the day does not touch, is not.
    late = resolve_metadata(deployment.materialize("2026-11-19"))
    assert (late["contacts_replayed"], late["events_resolved"]) == (1, 6)

    # Re-running a day whose files did not change decides nothing again and writes nothing.
    again = deployment.materialize("2026-11-20")
    assert resolve_metadata(again)["events_resolved"] == 0
    assert resolve_metadata(again)["decision_applied"] == 2
    expected_opt_in, expected_activity = in_order
    pd.testing.assert_frame_equal(deployment.opt_in(), expected_opt_in)
    pd.testing.assert_frame_equal(deployment.activity(), expected_activity)
    assert deployment.state(throughs).values.tolist() == [
        [A, "EVENTS", "A4"],
        [A, "NEWSLETTER", "A4"],
        [B, "NEWSLETTER", "B2"],
    ]
    assert deployment.state(QUEUED).empty


def test_a_run_that_dies_half_way_is_caught_up_by_the_next_one(
    deployment: Deployment, in_order: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    land_all(deployment)
    deployment.materialize("2026-11-18")
    # 2026-11-19 is validated (its events are in the ledger) but never resolved or written:
    # its members stay queued for resolution.
    run_part_way(deployment, "2026-11-19", resolve=False)
    assert deployment.state(QUEUED).values.tolist() == [["resolve", A]]
    # 2026-11-20 is resolved, then its Personify steps never run. Its resolution took every
    # member queued, whichever run left it, and queued them all for both writes.
    run_part_way(deployment, "2026-11-20", resolve=True)
    assert deployment.state(QUEUED).values.tolist() == [
        ["activity", A],
        ["activity", B],
        ["opt_in", A],
        ["opt_in", B],
    ]

    # The next run for some other reason (2026-11-18 again) writes everything still owed: the
    # events of 2026-11-19 were resolved with those of 2026-11-20, from A's checkpoint on.
    deployment.materialize("2026-11-18")

    expected_opt_in, expected_activity = in_order
    pd.testing.assert_frame_equal(deployment.opt_in(), expected_opt_in)
    pd.testing.assert_frame_equal(deployment.activity(), expected_activity)
    assert deployment.state(QUEUED).empty


@pytest.fixture(scope="module")
def b_only_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CUS_OPT_IN and CUS_ACTIVITY after 2026-11-18, -19 and B's 2026-11-21, in order."""
    reference = deploy(tmp_path_factory.mktemp("b_only"))
    for day in ("2026-11-18", "2026-11-19"):
        reference.land(f"{day}.csv", DAYS[day])
        reference.materialize(day)
    for day, rows in B_ONLY.items():
        reference.land(f"{day}.csv", rows)
        reference.materialize(day)
    return reference.opt_in(), reference.activity()


def test_a_member_left_queued_is_caught_up_by_a_run_that_does_not_touch_it(
    deployment: Deployment, b_only_reference: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    for day in ("2026-11-18", "2026-11-19"):
        deployment.land(f"{day}.csv", DAYS[day])
    for day, rows in B_ONLY.items():
        deployment.land(f"{day}.csv", rows)
    deployment.materialize("2026-11-18")
    # A's 2026-11-19 events are stored, never decided.
    run_part_way(deployment, "2026-11-19", resolve=False)

    # A run of B's day alone still decides and writes A's events.
    caught_up = resolve_metadata(deployment.materialize("2026-11-21"))
    assert caught_up["contacts_resolved"] == 2
    assert caught_up["events_resolved"] == 4  # B3, and A2, A3 and A2E after A's checkpoint
    assert deployment.state(QUEUED).empty
    expected_opt_in, expected_activity = b_only_reference
    pd.testing.assert_frame_equal(deployment.opt_in(), expected_opt_in)
    pd.testing.assert_frame_equal(deployment.activity(), expected_activity)

    # Nothing is left queued now: the next run resolves its own contacts only.
    again = resolve_metadata(deployment.materialize("2026-11-21"))
    assert (again["contacts_resolved"], again["events_resolved"]) == (1, 0)


def test_a_database_of_the_counters_era_queues_what_it_owed(tmp_path: Path) -> None:
    """A state database made before work_queue, where a run died after validating 2026-11-19
    and another after resolving 2026-11-20: opening it queues that work, and the next run of
    any day writes what one in-order pass would have."""
    deployment = deploy(tmp_path)
    land_all(deployment)
    deployment.materialize("2026-11-18")
    run_part_way(deployment, "2026-11-19", resolve=False)
    engine = create_state_engine(deployment.state_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM work_queue")
        conn.exec_driver_sql("CREATE TABLE unresolved_slices (run_id TEXT, days TEXT)")
        conn.exec_driver_sql("CREATE TABLE pending_writes (run_id TEXT, target TEXT)")
        conn.exec_driver_sql("CREATE TABLE ledger_generation (id INTEGER, generation INTEGER)")
        # What the old resolution of 2026-11-18 left owed to both writes.
        conn.exec_driver_sql(
            "INSERT INTO pending_writes SELECT DISTINCT decided_in_run, 'opt_in' FROM decisions"
        )
    engine.dispose()
    create_state_engine(deployment.state_url).dispose()
    assert deployment.state(QUEUED).values.tolist() == [
        ["opt_in", A],
        ["opt_in", B],
        ["resolve", A],
    ]
    tables = deployment.state(
        "SELECT name FROM sqlite_master WHERE name IN ('pending_writes', 'unresolved_slices')"
    )
    assert tables.empty

    caught_up = resolve_metadata(deployment.materialize("2026-11-20"))
    assert caught_up["contacts_resolved"] == 2
    assert deployment.state(QUEUED).empty
    expected = deploy(tmp_path / "reference")
    land_all(expected)
    for day in ("2026-11-18", "2026-11-19", "2026-11-20"):
        expected.materialize(day)
    pd.testing.assert_frame_equal(deployment.opt_in(), expected.opt_in())
    pd.testing.assert_frame_equal(deployment.activity(), expected.activity())


def test_a_member_resumes_after_its_latest_event_when_its_keys_throughs_differ(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A member's checkpoint is its latest (occurred_at, event_id) over its key rows, not the
    latest time with the highest event id from another row: an event at the latest time with an
    id between the two is after the checkpoint and must be decided."""
    t1, t2 = "2026-11-18T09:00:00", "2026-11-19T09:00:00"
    first = {"2026-11-18.csv": [event("E5", A, "subscribe", "form", t1)]}
    second = [event("E3", A, "subscribe", "form", t2, **EVENTS)]
    # Re-exported with one more event at t2 whose id sorts between E3 and E5.
    second_again = [*second, event("E4", A, "unsubscribe", "preference_centre", t2)]

    reference = deploy(tmp_path / "reference")
    reference.land("2026-11-18.csv", first["2026-11-18.csv"])
    reference.land("2026-11-19.csv", second_again)
    for day in ("2026-11-18", "2026-11-19"):
        reference.materialize(day)

    deployment.land("2026-11-18.csv", first["2026-11-18.csv"])
    deployment.materialize("2026-11-18")
    deployment.land("2026-11-19.csv", second)
    deployment.materialize("2026-11-19")
    # NEWSLETTER's row keeps (t1, E5); EVENTS' row moved to (t2, E3).
    throughs = "SELECT area, through_event_id FROM key_states ORDER BY area"
    assert deployment.state(throughs).values.tolist() == [["EVENTS", "E3"], ["NEWSLETTER", "E5"]]

    deployment.land("2026-11-19.csv", second_again)
    deployment.materialize("2026-11-19")
    pd.testing.assert_frame_equal(deployment.opt_in(), reference.opt_in())
    pd.testing.assert_frame_equal(deployment.activity(), reference.activity())
    assert "E4" in deployment.activity()["event_id"].tolist()


def test_a_setting_that_decides_nothing_replays_no_history(tmp_path: Path) -> None:
    """The checkpoints' fingerprint covers only what changes a decision: quality thresholds,
    the schedule and the file limit leave them good; a source rank does not."""
    deployment = deploy(tmp_path)
    land_all(deployment)
    deployment.materialize("2026-11-18")
    deployment.set_config(
        quality={"min_member_match_rate": 0.5, "max_reject_rate": 0.5},
        schedule_time="05:30:00",
        max_file_mb=64,
    )
    resumed = resolve_metadata(deployment.materialize("2026-11-19"))
    assert (resumed["contacts_replayed"], resumed["events_resolved"]) == (0, 3)

    ranks = {**deployment.config.get("source_ranks", {}), "third_party": 0}
    deployment.set_config(source_ranks={**DEFAULT_SOURCE_RANKS, **ranks})
    replayed = resolve_metadata(deployment.materialize("2026-11-20"))
    assert replayed["contacts_replayed"] == 2


def test_an_event_taken_out_of_its_file_re_resolves_its_member(deployment: Deployment) -> None:
    """B's only event of a day leaves the file: B is queued from the replaced slice alone (no
    event of the new slice names B) and resolved again from its remaining history."""
    deployment.land("2026-11-18.csv", DAYS["2026-11-18"])
    deployment.land("2026-11-19.csv", [event("B9", B, "unsubscribe", "api", "2026-11-19T09:00:00")])
    deployment.materialize("2026-11-18")
    deployment.materialize("2026-11-19")
    flags = "SELECT master_customer_id, status FROM key_states WHERE area = 'NEWSLETTER' ORDER BY 1"
    assert deployment.state(flags).values.tolist() == [[A, "subscribed"], [B, "unsubscribed"]]

    deployment.land("2026-11-19.csv", [event("A9", A, "subscribe", "api", "2026-11-19T09:00:00")])
    rerun = resolve_metadata(deployment.materialize("2026-11-19"))
    assert rerun["contacts_resolved"] == 2
    assert deployment.state(flags).values.tolist() == [[A, "subscribed"], [B, "subscribed"]]
    opt_in = deployment.opt_in().set_index("MASTER_CUSTOMER_ID")
    assert opt_in.loc[B, "OPT_IN_FLAG"] == "Y"
    assert "B9" not in deployment.activity()["event_id"].tolist()
    assert deployment.state(QUEUED).empty
