"""The dry run (issue 20): a preview lists exactly what the real run then writes, on SQLite and on
PostgreSQL, and leaves the state database as it found it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.core import state
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.personify.tables import ACTIVITY_DATA, OPT_IN_DATA, personify_tables
from subsync_pipeline.core.preview import Preview, preview
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.browser import new_page, screenshot
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pipeline.test_report import unmasked_emails

DAY1, DAY2 = "2026-11-19", "2026-11-20"
T1, T2 = "2026-11-19T09:00:00", "2026-11-20T09:00:00"
M1, M2, M3, M4, M5 = "000101", "000102", "000103", "000104", "000105"
OPT_IN_KEY = [
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "OPTION_TYPE_CODE",
    "OPTION_SHORT_NAME",
    "OPTION_SHORT_SUBNAME",
]
DAY1_ROWS = [
    event("A1", M1, "subscribe", "api", T1),
    event("B1", M2, "subscribe", "api", T1),
    event("C1", M3, "unsubscribe", "form", T1),
    event("E1", M5, "subscribe", "form", T1),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Deployment]:
    def make() -> Deployment:
        if request.param == "sqlite":
            return deploy(tmp_path, extras=True)
        server = request.getfixturevalue("postgres_server")
        name = request.node.originalname
        return deploy(
            tmp_path,
            personify_url=server.create_database(f"{name}_personify"),
            state_url=server.create_database(f"{name}_state"),
            extras=True,
        )

    return make


def previewed(deployment: Deployment, days: list[str]) -> Preview:
    personify = deployment.engine()
    try:
        return preview(
            deployment.state_url,
            personify,
            deployment.landing,
            parse_config(deployment.config),
            days,
            "preview-test",
        )
    finally:
        personify.dispose()


def state_rows(deployment: Deployment) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every state table, sorted: the state database's whole content."""
    engine = create_state_engine(deployment.state_url)
    with engine.connect() as conn:
        dump = {
            table.name: sorted(
                (tuple(map(repr, row)) for row in conn.execute(sa.select(table))), key=str
            )
            for table in state.metadata.sorted_tables
        }
    engine.dispose()
    return dump


def _text(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if hasattr(value, "isoformat"):
        return pd.Timestamp(value).isoformat()
    return str(value).strip()


def personify_rows(deployment: Deployment) -> dict[str, pd.DataFrame]:
    """CUS_OPT_IN by key and subsync's CUS_ACTIVITY rows by event, as Personify holds them."""
    opt_in = deployment.table("opt_in")
    opt_in.index = opt_in[OPT_IN_KEY].astype(str).agg("|".join, axis=1)
    activity = deployment.table("activity")
    records = deployment.state("SELECT event_id, activity_id FROM activity_records")
    by_id = dict(zip(records["activity_id"].astype(int), records["event_id"], strict=True))
    activity.index = activity["CUS_ACTIVITY_ID"].astype(int).map(by_id)
    return {"CUS_OPT_IN": opt_in, "CUS_ACTIVITY": activity}


def changes_between(
    before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame], columns: dict[str, set[str]]
) -> set[tuple[str, str, str, str, str, str]]:
    """What a real run changed, in the preview's long form, over the columns it compares."""
    found = set()
    for table in before:
        old, new = before[table], after[table]
        for row in new.index.difference(old.index):
            found |= {(table, "insert", row, c, "", _text(new.at[row, c])) for c in columns[table]}
        for row in old.index.difference(new.index):
            found |= {(table, "delete", row, c, _text(old.at[row, c]), "") for c in columns[table]}
        for row in old.index.intersection(new.index):
            for column in columns[table]:
                was, now = _text(old.at[row, column]), _text(new.at[row, column])
                if was != now:
                    found.add((table, "update", row, column, was, now))
    return found


def listed(preview: Preview) -> set[tuple[str, ...]]:
    """The preview's changes with values as text (activity ids aside: a new row's is unknown)."""
    return {
        (r.table, r.action, r.row, r.column, _text(r.old), _text(r.new))
        for r in preview.changes().itertuples()
        if r.column != "activity_id"
    }


def written_columns(deployment: Deployment) -> dict[str, set[str]]:
    """The data columns subsync writes, under this deployment's names."""
    tables = personify_tables(parse_config(deployment.config).personify)
    return {
        "CUS_OPT_IN": set(tables.opt_in.names(OPT_IN_DATA)),
        "CUS_ACTIVITY": set(tables.activity.names(ACTIVITY_DATA)),
    }


def assert_real_run_writes_what_was_previewed(deployment: Deployment, days: list[str]) -> Preview:
    before_state = state_rows(deployment)
    found = previewed(deployment, days)
    assert state_rows(deployment) == before_state, "the preview left a trace in the state database"
    before = personify_rows(deployment)
    for day in days:
        deployment.materialize(day)
    real = changes_between(before, personify_rows(deployment), written_columns(deployment))
    assert real == listed(found)
    return found


def test_preview_of_new_and_changed_days_equals_the_real_run(
    fresh: Callable[[], Deployment],
) -> None:
    deployment = fresh()
    deployment.land("day1.csv", DAY1_ROWS)
    deployment.materialize(DAY1)
    # Day 2 flips M1 and adds M4; day 1's file loses M2's event, whose row must go.
    deployment.land(
        "day2.csv",
        [event("A2", M1, "unsubscribe", "api", T2), event("D2", M4, "subscribe", "api", T2)],
    )
    deployment.land("day1.csv", [row for row in DAY1_ROWS if row["event_id"] != "B1"])
    found = assert_real_run_writes_what_was_previewed(deployment, [DAY1, DAY2])
    counts = found.counts()
    assert counts["CUS_OPT_IN"]["insert"] == 1 and counts["CUS_OPT_IN"]["update"] >= 1
    assert counts["CUS_ACTIVITY"] == {"insert": 2, "update": 0, "delete": 1}
    changes = found.changes()
    flag = changes.loc[changes["column"].eq("OPT_IN_FLAG") & changes["action"].eq("update")]
    assert flag[["old", "new"]].values.tolist() == [["Y", "N"]]
    assert flag["row"].iloc[0].startswith(f"{M1}|0|")
    # Previewing again after the real run: nothing left to change.
    assert previewed(deployment, [DAY1, DAY2]).changes().empty


def test_preview_after_a_config_change_lists_the_rows_it_touches(
    fresh: Callable[[], Deployment],
) -> None:
    deployment = fresh()
    deployment.land(
        "day1.csv",
        [*DAY1_ROWS, event("E2", M5, "unsubscribe", "third_party", T1[:-8] + "10:00:00")],
    )
    deployment.materialize(DAY1)
    # Third party now outranks the form: M5's blocked unsubscribe applies.
    deployment.set_config(source_ranks={"third_party": 1})
    found = assert_real_run_writes_what_was_previewed(deployment, [DAY1])
    rows = set(found.changes()["row"])
    assert rows and all(row.startswith(M5) or row == "E2" for row in rows), rows


def test_cli_preview_writes_the_changes_csv(
    fresh: Callable[[], Deployment],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from subsync_pipeline.cli import main

    deployment = fresh()
    deployment.land("day1.csv", DAY1_ROWS)
    monkeypatch.setenv("SUBSYNC_CONFIG", str(deployment.config_path))
    monkeypatch.setenv("SUBSYNC_DB_URL", deployment.state_url)
    monkeypatch.setenv("PERSONIFY_DB_URL", deployment.personify_url)
    monkeypatch.setenv("SUBSYNC_LANDING_DIR", str(deployment.landing))
    monkeypatch.setenv("SUBSYNC_REPORTS_DIR", str(deployment.reports))
    before = state_rows(deployment)
    assert main(["preview", DAY1]) == 0
    out = capsys.readouterr().out
    assert "CUS_OPT_IN: 4 to insert, 0 to update, 0 to delete" in out
    csv = deployment.reports / DAY1 / "preview.csv"
    assert str(csv) in out
    written = pd.read_csv(csv)
    assert list(written.columns) == ["table", "action", "row", "column", "old", "new"]
    assert set(written["action"]) == {"insert"}
    assert state_rows(deployment) == before
    assert deployment.opt_in().empty, "a preview wrote to Personify"


def test_dry_run_of_the_daily_job_writes_nothing_and_reports_the_preview(
    fresh: Callable[[], Deployment], browser: Browser
) -> None:
    deployment = fresh()
    deployment.land("day1.csv", DAY1_ROWS)
    deployment.materialize(DAY1)
    deployment.land("day2.csv", [event("A2", M1, "unsubscribe", "api", T2)])
    before_state, before = state_rows(deployment), personify_rows(deployment)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            sync_assets,
            partition_key=DAY2,
            resources=deployment.resources(),
            instance=instance,
            run_config={"ops": {"raw_tracking_log": {"config": {"dry_run": True}}}},
        )
        assert result.success
        assert result.get_asset_materialization_events() == []
        observed = {
            event.asset_key.to_user_string(): event.asset_observation_data.asset_observation
            for event in result.all_events
            if event.event_type_value == "ASSET_OBSERVATION"
        }
    assert state_rows(deployment) == before_state
    assert all(frame.equals(before[t]) for t, frame in personify_rows(deployment).items())
    counts = previewed(deployment, [DAY2]).counts()
    assert counts["CUS_OPT_IN"]["update"] == 1 and counts["CUS_ACTIVITY"]["insert"] == 1
    for table, asset in (
        ("CUS_OPT_IN", "personify_cus_opt_in"),
        ("CUS_ACTIVITY", "personify_cus_activity"),
    ):
        metadata = observed[asset].metadata
        assert observed[asset].partition == DAY2
        assert {a: metadata[f"would_{a}"].value for a in counts[table]} == counts[table]
    page, watch = new_page(browser)
    page.goto((deployment.reports / DAY2 / "preview.html").as_uri())
    box = page.locator("#preview").bounding_box()
    assert box and box["height"] > 40
    body = page.inner_text("body")
    assert "OPT_IN_FLAG" in body and "Nothing was written" in body
    assert not unmasked_emails(body)
    screenshot(page, "preview-2026-11-20")
    assert watch.console_errors == [] and watch.page_errors == []
    page.close()
    # The real run afterwards: the change the dry run listed is made.
    deployment.materialize(DAY2)
    assert personify_rows(deployment)["CUS_OPT_IN"].loc[
        lambda f: f["MASTER_CUSTOMER_ID"].eq(M1), "OPT_IN_FLAG"
    ].tolist() == ["N"]
