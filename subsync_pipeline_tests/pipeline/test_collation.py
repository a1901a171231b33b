"""One order of events whatever the database's collation (issue 18 §1): ties on occurred_at are
broken by event_id in code-point order (SPEC §4), as pandas compares, even where the state
database sorts text otherwise.

The state database here is PostgreSQL initialised with ICU en-US, where `k_1` < `k-2` (ICU puts
'_' before '-') and `k` < `K`; by code point `k-2` < `k_1` and `K` < `k`. The SQL that can see the
difference is the checkpoint test of a late event: an event at the checkpoint's instant whose id
is before the checkpoint's must replay the member, else it is never decided.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

M = "000100"
DAY1, DAY2 = "2026-11-19", "2026-11-20"
T1, T2 = f"{DAY1}T09:00:00", f"{DAY2}T09:00:00"
# Ids differing only by case and by '-', '_', '.'; in code-point order within each instant.
DAY1_EVENTS = [
    event("EV.a", M, "subscribe", "api", T1),
    event("ev-A", M, "subscribe", "form", T1),
    event("ev_a", M, "unsubscribe", "form", T1),
]
DAY2_EVENTS = [
    event("K-1", M, "unsubscribe", "preference_centre", T2),
    event("k-1", M, "subscribe", "preference_centre", T2),
    event("k.1", M, "subscribe", "form", T2),
    event("k_1", M, "unsubscribe", "api", T2),
]
# Lands after both days, at the checkpoint's instant (T2, "k_1"): by code point before it.
LATE = [event("k-2", M, "unsubscribe", "preference_centre", T2)]


def land(deployment: Deployment, *, late: bool) -> None:
    deployment.land("day1.csv", DAY1_EVENTS)
    deployment.land("day2.csv", DAY2_EVENTS)
    if late:
        deployment.land("late.csv", LATE)


@pytest.mark.postgres
def test_the_icu_server_sorts_ids_unlike_code_points(icu_postgres_server: PostgresServer) -> None:
    """The premise: without COLLATE "C" this server orders the ids otherwise than Python."""
    engine = sa.create_engine(icu_postgres_server.create_database("collation_premise"))
    with engine.connect() as conn:
        ordered = conn.execute(
            sa.text(
                "SELECT id FROM (VALUES ('k_1'), ('k-2'), ('K-1'), ('k-1')) AS t(id) ORDER BY id"
            )
        ).scalars()
        assert list(ordered) != sorted(["k_1", "k-2", "K-1", "k-1"])
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("order", [(DAY1, DAY2), (DAY2, DAY1)])
def test_ties_break_by_code_point_on_an_icu_state_database(
    tmp_path: Path, icu_postgres_server: PostgresServer, order: tuple[str, str]
) -> None:
    reference = deploy(tmp_path / "reference")
    land(reference, late=True)
    for day in (DAY1, DAY2):
        assert reference.materialize(day).success

    icu = deploy(
        tmp_path / "icu",
        state_url=icu_postgres_server.create_database(f"collation_{order[0]}"),
    )
    land(icu, late=False)
    for day in order:
        assert icu.materialize(day).success
    land(icu, late=True)
    assert icu.materialize(DAY2).success

    decisions = icu.state("SELECT event_id, decision FROM decisions").set_index("event_id")
    assert decisions.loc["k-2", "decision"] == "applied"
    assert decisions.loc["k_1", "decision"] == "blocked_by_precedence"
    pd.testing.assert_frame_equal(icu.opt_in(), reference.opt_in())
    pd.testing.assert_frame_equal(icu.activity(), reference.activity())
    assert icu.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
