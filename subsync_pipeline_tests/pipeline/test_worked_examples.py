"""SPEC §4's five worked examples, each through the real pipeline into a Personify on SQLite, on
PostgreSQL (psycopg, COPY staging) and on PostgreSQL through pyodbc (the production driver path).

Events of one key are spread over two days, materialised in order, then CUS_OPT_IN, CUS_ACTIVITY
and the decisions audit trail are read back from the databases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from subsync_pipeline_tests.harness import Deployment, deploy, event

M = "000100"
DAY1, DAY2 = "2026-11-19", "2026-11-20"
T1, T2, T3 = "2026-11-19T09:00:00", "2026-11-20T09:00:00", "2026-11-20T10:00:00"


@pytest.fixture(params=["sqlite", "postgresql", "pyodbc"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Deployment]:
    """A new deployment with subsync's extras mapped, its Personify on the parametrised engine."""

    def make() -> Deployment:
        if request.param == "sqlite":
            return deploy(tmp_path, extras=True)
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"{request.node.originalname}_{request.param}")
        deployment = deploy(tmp_path, personify_url=url, extras=True)
        if request.param == "pyodbc":
            deployment.personify_url = (
                make_url(url)
                .set(drivername="postgresql+pyodbc", query={"driver": "PostgreSQL Unicode"})
                .render_as_string(hide_password=False)
            )
        return deployment

    return make


def run_days(
    fresh: Callable[[], Deployment], day1: list[dict[str, str]], day2: list[dict[str, str]]
) -> tuple[Deployment, pd.DataFrame]:
    deployment = fresh()
    deployment.land("day1.csv", day1)
    deployment.land("day2.csv", day2)
    deployment.materialize(DAY1)
    deployment.materialize(DAY2)
    decisions = deployment.state("select event_id, decision, first_time from decisions")
    return deployment, decisions.set_index("event_id")


def opt_in_row(deployment: Deployment) -> pd.Series:
    rows = deployment.opt_in()
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_example_1_weaker_source_is_blocked_by_precedence(fresh: Callable[[], Deployment]) -> None:
    deployment, decisions = run_days(
        fresh,
        [event("X1", M, "subscribe", "form", T1)],
        [event("X2", M, "unsubscribe", "third_party", T2)],
    )
    assert decisions.loc["X1", "decision"] == "applied"
    assert decisions.loc["X2", "decision"] == "blocked_by_precedence"
    row = opt_in_row(deployment)
    assert (row["OPT_IN_FLAG"], row["OPT_IN_SOURCE"], row["FORCED_FLAG"]) == ("Y", "form", "N")
    # The blocked request still moves its request date: status and newer request coexist.
    assert row["LAST_UNSUBSCRIBE_REQUEST_DATE"] == pd.Timestamp("2026-11-20T14:00:00")
    assert deployment.activity()["event_id"].tolist() == ["X1"]


def test_example_2_preference_centre_only_yields_to_itself(fresh: Callable[[], Deployment]) -> None:
    deployment, decisions = run_days(
        fresh,
        [event("X1", M, "unsubscribe", "preference_centre", T1)],
        [
            event("X2", M, "subscribe", "api", T2),
            event("X3", M, "subscribe", "preference_centre", T3),
        ],
    )
    assert decisions["decision"].to_dict() == {
        "X1": "applied",
        "X2": "blocked_by_precedence",
        "X3": "applied",
    }
    row = opt_in_row(deployment)
    assert (row["OPT_IN_FLAG"], row["OPT_IN_SOURCE"]) == ("Y", "preference_centre")
    assert row["OPT_IN_DATE"] == pd.Timestamp("2026-11-20T15:00:00")
    # Subscribed again: no end date, no opt-out reason; the documented key columns are filled.
    assert pd.isna(row["OPT_OUT_DATE"]) and pd.isna(row["OPT_OUT_REASON_CODE"])
    assert (row["OPTION_TYPE_CODE"], row["OPTION_SHORT_NAME"], row["OPTION_SHORT_SUBNAME"]) == (
        "INTEREST_AREA",
        "NEWSLETTER",
        "NEWSLETTER",
    )
    assert row["FIRST_UNSUBSCRIBED_DATE"] == pd.Timestamp("2026-11-19T14:00:00")
    activity = deployment.activity()
    assert activity["event_id"].tolist() == ["X1", "X3"]
    # external_id is mapped here (subsync's extras): the event id is written too.
    assert activity["EXTERNAL_ID"].tolist() == ["X1", "X3"]
    assert activity["ACTIVITY_CODE"].tolist() == ["RM_UNSUBSCRIBE", "RM_SUBSCRIBE"]
    assert activity["ACTIVITY_SUBCODE"].tolist() == ["NEWSLETTER", "NEWSLETTER"]


def test_example_3_equal_weight_sources_override_each_other(
    fresh: Callable[[], Deployment],
) -> None:
    deployment, decisions = run_days(
        fresh,
        [event("X1", M, "subscribe", "api", T1)],
        [event("X2", M, "unsubscribe", "csv_upload", T2)],
    )
    assert decisions["decision"].to_dict() == {"X1": "applied", "X2": "applied"}
    row = opt_in_row(deployment)
    assert (row["OPT_IN_FLAG"], row["OPT_IN_SOURCE"]) == ("N", "csv_upload")
    assert deployment.activity()["ACTIVITY_CODE"].tolist() == ["RM_SUBSCRIBE", "RM_UNSUBSCRIBE"]


def test_example_4_forced_status_only_yields_to_forced(fresh: Callable[[], Deployment]) -> None:
    deployment, decisions = run_days(
        fresh,
        [event("X1", M, "unsubscribe", "third_party", T1, force=True)],
        [
            event("X2", M, "subscribe", "preference_centre", T2),
            event("X3", M, "subscribe", "form", T3, force=True),
        ],
    )
    assert decisions["decision"].to_dict() == {
        "X1": "applied",
        "X2": "blocked_by_forced",
        "X3": "applied",
    }
    row = opt_in_row(deployment)
    assert (row["OPT_IN_FLAG"], row["OPT_IN_SOURCE"], row["FORCED_FLAG"]) == ("Y", "form", "Y")
    text = deployment.activity().set_index("event_id")["ACTIVITY_TEXT"]
    assert "(forced)" in text["X3"] and "third party" in text["X1"]


def test_example_5_first_subscribe_needs_timestamp_subscribed(
    fresh: Callable[[], Deployment],
) -> None:
    deployment, decisions = run_days(
        fresh,
        [event("X1", M, "subscribe", "importer", T1)],
        [event("X2", M, "subscribe", "api", T2, timestamp_subscribed="2026-10-01T00:00:00Z")],
    )
    assert decisions["decision"].to_dict() == {"X1": "applied", "X2": "no_change"}
    assert decisions["first_time"].isna().all()
    row = opt_in_row(deployment)
    assert pd.isna(row["FIRST_SUBSCRIBED_DATE"])
    assert (row["OPT_IN_FLAG"], row["OPT_IN_SOURCE"]) == ("Y", "importer")
    assert deployment.activity()["event_id"].tolist() == ["X1"]


@pytest.mark.parametrize("order", [(DAY1, DAY2), (DAY2, DAY1)])
def test_old_day_never_overwrites_a_newer_change(
    fresh: Callable[[], Deployment], order: tuple[str, str]
) -> None:
    deployment = fresh()
    deployment.land("day1.csv", [event("X1", M, "subscribe", "api", T1)])
    deployment.land("day2.csv", [event("X2", M, "unsubscribe", "api", T2)])
    for day in order:
        deployment.materialize(day)
    deployment.materialize(DAY1)
    row = opt_in_row(deployment)
    assert row["OPT_IN_FLAG"] == "N"
    # The opt-out sets the end date; the opted-in date stays that of the last opt-in.
    assert row["OPT_OUT_DATE"] == pd.Timestamp("2026-11-20T14:00:00")
    assert row["OPT_IN_DATE"] == pd.Timestamp("2026-11-19T14:00:00")
    assert deployment.activity()["event_id"].tolist() == ["X1", "X2"]


def test_unmapped_scope_writes_activity_but_no_opt_in(fresh: Callable[[], Deployment]) -> None:
    deployment = fresh()
    deployment.land("day.csv", [event("U1", M, "subscribe", "api", T2, scope_id="9999")])
    deployment.materialize(DAY2)
    assert deployment.opt_in().empty
    activity = deployment.activity()
    assert activity["event_id"].tolist() == ["U1"]
    assert activity["ACTIVITY_SUBCODE"].isna().all()
    decisions = deployment.state("select area, mapped from decisions")
    assert decisions.to_dict("records") == [{"area": "group:9999", "mapped": 0}]


@pytest.mark.parametrize(
    ("switch", "untouched"), [("write_opt_in", "opt_in"), ("write_activity", "activity")]
)
def test_write_switches_leave_their_table_alone(
    fresh: Callable[[], Deployment], switch: str, untouched: str
) -> None:
    deployment = fresh()
    deployment.set_config(personify={**deployment.config["personify"], switch: False})
    deployment.land("day.csv", [event("W1", M, "subscribe", "api", T2)])
    result = deployment.materialize(DAY2)
    assert deployment.table(untouched).empty
    other = "activity" if untouched == "opt_in" else "opt_in"
    assert len(deployment.table(other)) == 1
    asset = f"personify_cus_{untouched}"
    assert result.asset_materializations_for_node(asset)[0].metadata["skipped"].value is True
