"""Convergence (SPEC §4 Guarantees): the same days materialised in random orders, some twice,
or as ranged runs (a backfill's one run over many days, read in chunks and resolved in batches),
leave Personify exactly as one in-order pass of one run per day — on SQLite and on a real
PostgreSQL server.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from subsync_pipeline.core.config import SOURCES
from subsync_pipeline_tests.harness import MEMBERS, Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

pytestmark = pytest.mark.slow

DAYS = ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
SCOPES = [("group", "1201"), ("message_category", "77"), ("group", "5555")]


def tracking_files(seed: int = 11) -> dict[str, list[dict[str, str]]]:
    """Events of 12 contacts over four days, in three files that each span several days."""
    rng = random.Random(seed)
    rows = []
    for n in range(160):
        day = rng.choice(DAYS)
        hour = rng.choice([1, 9, 9, 13, 22, 23])  # equal times and local-day edges
        scope_type, scope_id = rng.choice(SCOPES)
        rows.append(
            event(
                f"RM{n:04d}",
                rng.choice(MEMBERS[:12]),
                rng.choice(["subscribe", "unsubscribe"]),
                rng.choice(SOURCES),
                f"{day}T{hour:02d}:30:00",
                scope_type=scope_type,
                scope_id=scope_id,
                force=rng.random() < 0.08,
                timestamp_subscribed=rng.choice(["", "", "2026-01-05T00:00:00Z"]),
            )
        )
    rows.append(event("BAD1", "not-a-member", "subscribe", "api", f"{DAYS[1]}T10:00:00"))
    rows.append(event("BAD2", "999999", "subscribe", "api", f"{DAYS[2]}T10:00:00"))
    rng.shuffle(rows)
    return {"a.csv": rows[:60], "b.csv": rows[60:120], "c.csv": rows[120:]}


def land_all(deployment: Deployment) -> None:
    for name, rows in tracking_files().items():
        deployment.land(name, rows)


def personify_rows(deployment: Deployment) -> tuple[pd.DataFrame, pd.DataFrame]:
    return deployment.opt_in(), deployment.activity()


def random_orders(seed: int, count: int) -> list[list[str]]:
    """Orders covering every day, shuffled, with one or two days repeated."""
    rng = random.Random(seed)
    orders = []
    for _ in range(count):
        order = DAYS.copy()
        rng.shuffle(order)
        order += rng.sample(DAYS, rng.choice([1, 2]))
        orders.append(order)
    return orders


def check_convergence(make: Callable[[str], Deployment]) -> None:
    reference = make("reference")
    land_all(reference)
    for day in DAYS:
        reference.materialize(day)
    expected_opt_in, expected_activity = personify_rows(reference)
    assert len(expected_opt_in) > 10 and len(expected_activity) > 20

    for index, order in enumerate(random_orders(seed=5, count=2)):
        deployment = make(f"order{index}")
        land_all(deployment)
        for day in order:
            deployment.materialize(day)
        opt_in, activity = personify_rows(deployment)
        pd.testing.assert_frame_equal(opt_in, expected_opt_in, obj=f"CUS_OPT_IN after {order}")
        pd.testing.assert_frame_equal(
            activity, expected_activity, obj=f"CUS_ACTIVITY after {order}"
        )

    # One run over every day, its days in chunks of a day or two and its contacts resolved in
    # batches (chunk_events far below the ~40 rows a day); then the later half before the earlier.
    for name, chunk_events, ranges, chunked in (
        ("ranged_chunks", 50, [(DAYS[0], DAYS[-1])], True),
        ("ranged_halves", 1_000_000, [(DAYS[2], DAYS[3]), (DAYS[0], DAYS[1])], False),
    ):
        deployment = make(name)
        deployment.set_config(chunk_events=chunk_events)
        land_all(deployment)
        for first, last in ranges:
            result = deployment.materialize_range(first, last)
            days = DAYS[DAYS.index(first) : DAYS.index(last) + 1]
            validated = [
                m
                for m in result.asset_materializations_for_node(
                    "validated_and_rejected_tracking_records"
                )
                if m.asset_key.to_user_string() == "validated_tracking_records"
            ]
            resolved = result.asset_materializations_for_node("contact_subscription_status")
            assert sorted(m.partition for m in validated) == days
            assert (validated[0].metadata["chunks"].value > 1) == chunked
            assert (resolved[0].metadata["batches"].value > 1) == chunked
        opt_in, activity = personify_rows(deployment)
        pd.testing.assert_frame_equal(opt_in, expected_opt_in, obj=f"CUS_OPT_IN after {name}")
        pd.testing.assert_frame_equal(activity, expected_activity, obj=f"CUS_ACTIVITY after {name}")


def test_convergence_on_sqlite(tmp_path: Path) -> None:
    check_convergence(lambda name: deploy(tmp_path / name))


@pytest.mark.postgres
def test_convergence_on_postgresql(tmp_path: Path, postgres_server: PostgresServer) -> None:
    def make(name: str) -> Deployment:
        return deploy(
            tmp_path / name,
            personify_url=postgres_server.create_database(f"personify_{name}"),
            state_url=postgres_server.create_database(f"state_{name}"),
        )

    check_convergence(make)


def test_rerunning_a_day_changes_nothing(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    land_all(deployment)
    for day in DAYS:
        deployment.materialize(day)
    before_opt_in = deployment.table("opt_in")
    before_activity = deployment.table("activity")
    deployment.materialize(DAYS[1])
    # Idempotent to the last column: audit dates and generated ids included.
    pd.testing.assert_frame_equal(deployment.table("opt_in"), before_opt_in)
    pd.testing.assert_frame_equal(deployment.table("activity"), before_activity)
