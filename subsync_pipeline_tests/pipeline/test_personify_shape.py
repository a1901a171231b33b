"""A Personify that is not the default shape (SPEC §5): renamed and reduced tables synced by
config alone; Personify's optimistic lock (CONCURRENCY_ID) kept; CUS_ACTIVITY rows known by
the ids subsync recorded, not by any column of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline_tests.harness import Deployment, deploy, event

DAY1, DAY2 = "2026-11-19", "2026-11-20"
MEMBERS = [f"{n:06d}" for n in range(100, 110)]
EVENTS = {"scope_type": "message_category", "scope_id": "77"}

# The site's own names for every field subsync writes; extras off, MODOPER/MODDATE absent from
# its activity table, and one NOT NULL column per table that only a constant can fill.
SITE_COLUMNS: dict[str, dict[str, Any]] = {
    "opt_in": {
        "master_customer_id": "MCID",
        "sub_customer_id": "SCID",
        "option_type": "OPT_TYPE",
        "code": "IA_CODE",
        "subcode": "IA_SUBCODE",
        "flag": "IS_OPTED_IN",
        "opt_in_date": "START_DT",
        "opt_out_date": "END_DT",
        "opt_out_reason": "END_REASON",
        "add_oper": "ADD_USER",
        "add_date": "ADD_DT",
        "mod_oper": "MOD_USER",
        "mod_date": "MOD_DT",
        "concurrency_id": "ROW_VERSION",
    },
    "activity": {
        "id": "ACT_ID",
        "master_customer_id": "MCID",
        "sub_customer_id": "SCID",
        "subsystem": "SUBSYS",
        "activity_code": "ACT_CODE",
        "activity_subcode": "ACT_SUBCODE",
        "activity_date": "ACT_DT",
        "text": "NOTE",
        "add_oper": "ADD_USER",
        "add_date": "ADD_DT",
        "mod_oper": None,
        "mod_date": None,
        "concurrency_id": None,
    },
}
CONSTANTS = {"opt_in": {"ORG_ID": "ASSOC1"}, "activity": {"ORG_ID": "ASSOC1"}}


def site_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    text = sa.String(60)
    opt_in = sa.Table(
        "MEMBER_OPTINS",
        metadata,
        sa.Column("MCID", sa.String(24), primary_key=True),
        sa.Column("SCID", sa.Integer, primary_key=True),
        sa.Column("OPT_TYPE", sa.String(24), primary_key=True),
        sa.Column("IA_CODE", sa.String(24), primary_key=True),
        sa.Column("IA_SUBCODE", sa.String(24), primary_key=True),
        sa.Column("IS_OPTED_IN", sa.CHAR(1), nullable=False),
        sa.Column("START_DT", sa.DateTime),
        sa.Column("END_DT", sa.DateTime),
        sa.Column("END_REASON", sa.String(24)),
        sa.Column("ORG_ID", sa.String(24), nullable=False),
        sa.Column("ADD_USER", text, nullable=False),
        sa.Column("ADD_DT", sa.DateTime, nullable=False),
        sa.Column("MOD_USER", text),
        sa.Column("MOD_DT", sa.DateTime),
        sa.Column("ROW_VERSION", sa.Integer, nullable=False),
    )
    activity = sa.Table(
        "MEMBER_ACTIVITY",
        metadata,
        sa.Column("ACT_ID", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("MCID", sa.String(24), nullable=False),
        sa.Column("SCID", sa.Integer, nullable=False),
        sa.Column("SUBSYS", sa.String(24), nullable=False),
        sa.Column("ACT_CODE", sa.String(24), nullable=False),
        sa.Column("ACT_SUBCODE", sa.String(24)),
        sa.Column("ACT_DT", sa.DateTime, nullable=False),
        sa.Column("NOTE", sa.String(2000)),
        sa.Column("ORG_ID", sa.String(24), nullable=False),
        sa.Column("ADD_USER", text, nullable=False),
        sa.Column("ADD_DT", sa.DateTime, nullable=False),
    )
    return opt_in, activity


def land(deployment: Deployment) -> None:
    deployment.land(
        "day1.csv",
        [event(f"A{m}", m, "subscribe", "form", f"{DAY1}T09:00:00") for m in MEMBERS]
        + [
            event(f"U{m}", m, "subscribe", "api", f"{DAY1}T09:30:00", scope_id="555")
            for m in MEMBERS[:3]
        ],
    )
    deployment.land(
        "day2.csv",
        [event(f"B{m}", m, "unsubscribe", "api", f"{DAY2}T09:00:00") for m in MEMBERS[::2]]
        + [event(f"C{m}", m, "subscribe", "api", f"{DAY2}T09:00:00", **EVENTS) for m in MEMBERS],
    )


def renamed(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """A default-shape table under the site's names, with only the columns the site has."""
    mapping = {
        default: SITE_COLUMNS[table][field]
        for field, default in _DEFAULT_NAMES[table].items()
        if SITE_COLUMNS[table].get(field)
    }
    return frame[[c for c in frame.columns if c in mapping]].rename(columns=mapping)


_DEFAULT_NAMES = {
    "opt_in": {
        "master_customer_id": "MASTER_CUSTOMER_ID",
        "sub_customer_id": "SUB_CUSTOMER_ID",
        "option_type": "OPTION_TYPE_CODE",
        "code": "OPTION_SHORT_NAME",
        "subcode": "OPTION_SHORT_SUBNAME",
        "flag": "OPT_IN_FLAG",
        "opt_in_date": "OPT_IN_DATE",
        "opt_out_date": "OPT_OUT_DATE",
        "opt_out_reason": "OPT_OUT_REASON_CODE",
    },
    "activity": {
        "master_customer_id": "MASTER_CUSTOMER_ID",
        "sub_customer_id": "SUB_CUSTOMER_ID",
        "subsystem": "SUBSYSTEM",
        "activity_code": "ACTIVITY_CODE",
        "activity_subcode": "ACTIVITY_SUBCODE",
        "activity_date": "ACTIVITY_DATE",
        "text": "ACTIVITY_TEXT",
        "add_oper": "ADDOPER",
    },
}


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns).reset_index(drop=True)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_renamed_and_reduced_personify_syncs_with_config_alone(
    tmp_path: Path, dialect: str, request: pytest.FixtureRequest
) -> None:
    urls: list[str | None] = [None, None]
    if dialect == "postgresql":
        server = request.getfixturevalue("postgres_server")
        urls = [server.create_database("shape_default"), server.create_database("shape_site")]
    reference = deploy(tmp_path / "default", personify_url=urls[0], members=MEMBERS)
    site = deploy(tmp_path / "site", personify_url=urls[1], members=MEMBERS)
    engine = site.engine()
    with engine.begin() as conn:
        for name in ("CUS_OPT_IN", "CUS_ACTIVITY"):
            conn.exec_driver_sql(f'DROP TABLE "{name}"')
        site_tables(meta := sa.MetaData())
        meta.create_all(conn)
    engine.dispose()
    site.set_config(
        personify={
            "tables": {"opt_in": "MEMBER_OPTINS", "activity": "MEMBER_ACTIVITY"},
            "columns": SITE_COLUMNS,
            "constants": CONSTANTS,
        }
    )
    for deployment in (reference, site):
        land(deployment)
        for day in (DAY1, DAY2):
            assert deployment.materialize(day).success

    expected = renamed(reference.table("opt_in"), "opt_in")
    opt_in = site.table("opt_in")
    pd.testing.assert_frame_equal(ordered(opt_in[list(expected.columns)]), ordered(expected))
    assert set(opt_in["ORG_ID"]) == {"ASSOC1"} and set(opt_in["ADD_USER"]) == {"SUBSYNC"}
    # Unsubscribed on day 2: updated once (ROW_VERSION 1, MOD_* set); the others never touched.
    moved = opt_in["IS_OPTED_IN"].eq("N")
    assert moved.sum() == len(MEMBERS[::2])
    assert (
        opt_in.loc[moved, "ROW_VERSION"].eq(1).all()
        and opt_in.loc[moved, "MOD_USER"].eq("SUBSYNC").all()
    )
    assert (
        opt_in.loc[~moved, "ROW_VERSION"].eq(0).all() and opt_in.loc[~moved, "MOD_DT"].isna().all()
    )

    expected_activity = renamed(reference.table("activity"), "activity")
    activity = site.table("activity")
    pd.testing.assert_frame_equal(
        ordered(activity[list(expected_activity.columns)]), ordered(expected_activity)
    )
    assert set(activity["ORG_ID"]) == {"ASSOC1"}
    # Unmapped scope 555 still gets activity rows, never opt-ins.
    assert activity["ACT_SUBCODE"].isna().sum() == 3

    before = site.table("opt_in"), site.table("activity")
    assert site.materialize(DAY2).success and site.materialize(DAY1).success
    pd.testing.assert_frame_equal(site.table("opt_in"), before[0])
    pd.testing.assert_frame_equal(site.table("activity"), before[1])


def test_a_row_staff_changed_is_still_updated_and_its_concurrency_id_incremented(
    tmp_path: Path,
) -> None:
    deployment = deploy(tmp_path)
    member = "000100"
    deployment.land("day1.csv", [event("A1", member, "subscribe", "form", f"{DAY1}T09:00:00")])
    deployment.land("day2.csv", [event("B1", member, "unsubscribe", "api", f"{DAY2}T09:00:00")])
    assert deployment.materialize(DAY1).success
    row = deployment.table("opt_in").iloc[0]
    assert (row["CONCURRENCY_ID"], row["ADDOPER"]) == (0, "SUBSYNC")
    assert pd.isna(row["MODOPER"]) and pd.isna(row["MODDATE"])

    # Staff edit the row in Personify's screens: its optimistic lock moves to 7.
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql('UPDATE "CUS_OPT_IN" SET "CONCURRENCY_ID" = 7, "MODOPER" = \'STAFF\'')
    engine.dispose()

    assert deployment.materialize(DAY2).success
    row = deployment.table("opt_in").iloc[0]
    assert (row["OPT_IN_FLAG"], row["CONCURRENCY_ID"], row["MODOPER"]) == ("N", 8, "SUBSYNC")
    assert row["OPT_OUT_DATE"] == pd.Timestamp(f"{DAY2}T14:00:00")
    after = deployment.table("opt_in")

    assert deployment.materialize(DAY2).success and deployment.materialize(DAY1).success
    pd.testing.assert_frame_equal(deployment.table("opt_in"), after)


def recorded(deployment: Deployment) -> dict[str, int]:
    rows = deployment.state("SELECT event_id, activity_id FROM activity_records")
    return {str(e): int(i) for e, i in rows.itertuples(index=False)}


def test_reexported_day_without_an_event_deletes_exactly_subsyncs_row(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    member = "000100"
    day = [
        event("E1", member, "subscribe", "form", f"{DAY1}T09:00:00"),
        event("E2", member, "unsubscribe", "form", f"{DAY1}T10:00:00"),
    ]
    deployment.land("day1.csv", day)
    assert deployment.materialize(DAY1).success
    ours = recorded(deployment)
    assert sorted(ours) == ["E1", "E2"]
    assert set(deployment.table("activity")["CUS_ACTIVITY_ID"]) == set(ours.values())

    # Someone else enters a row with exactly the values of subsync's row for E2.
    columns = ", ".join(
        f'"{c}"'
        for c in [
            "MASTER_CUSTOMER_ID",
            "SUB_CUSTOMER_ID",
            "SUBSYSTEM",
            "ACTIVITY_CODE",
            "ACTIVITY_SUBCODE",
            "ACTIVITY_DATE",
            "ACTIVITY_TEXT",
            "ADDOPER",
            "ADDDATE",
            "MODOPER",
            "MODDATE",
            "CONCURRENCY_ID",
        ]
    )
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'INSERT INTO "CUS_ACTIVITY" ({columns}) SELECT {columns} FROM "CUS_ACTIVITY" '
            f'WHERE "CUS_ACTIVITY_ID" = {ours["E2"]}'
        )
    engine.dispose()
    (foreign,) = set(deployment.table("activity")["CUS_ACTIVITY_ID"]) - set(ours.values())

    # Real Magnet re-exports the day without E2.
    deployment.land("day1.csv", day[:1])
    assert deployment.materialize(DAY1).success
    assert recorded(deployment) == {"E1": ours["E1"]}
    assert set(deployment.table("activity")["CUS_ACTIVITY_ID"]) == {ours["E1"], foreign}
