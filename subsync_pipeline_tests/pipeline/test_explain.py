"""`subsync explain` on SPEC §4's five worked examples, each member's events spread over two days
and materialised through Dagster; then a member edited in Personify, rejected rows, masking."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
import sqlalchemy as sa

from subsync_pipeline.cli import main
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.explain import Explanation, explain, explain_members, parse_member
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline.explanation import EXPLANATION, explain_member_job
from subsync_pipeline_tests.harness import MEMBERS, Deployment, deploy, event

DAY1, DAY2 = "2026-11-19", "2026-11-20"
T1, T2, T3 = "2026-11-19T09:00:00", "2026-11-20T09:00:00", "2026-11-20T10:00:00"
M1, M2, M3, M4, M5, EDITED = "000101", "000102", "000103", "000104", "000105", "000106"
STAMPED = "2026-10-01T00:00:00Z"
Found = TypeVar("Found")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    deployment = deploy(tmp_path_factory.mktemp("explain"), members=[*MEMBERS, f"{M1}|2"])
    deployment.land(
        "day1.csv",
        [
            event("A1", M1, "subscribe", "form", T1),
            event("B1", M2, "unsubscribe", "preference_centre", T1),
            event("C1", M3, "subscribe", "api", T1),
            event("D1", M4, "unsubscribe", "third_party", T1, force=True),
            event("E1", M5, "subscribe", "importer", T1),
            event("F1", EDITED, "subscribe", "api", T1),
            # Rejected: an event type Real Magnet does not send, from a member with an email.
            {**event("R1", M1, "resubscribe", "api", T1), "email": "jane.doe@example.org"},
            # M1's sub-customer 2: another member with the same master id.
            event("S1", f"{M1}|2", "unsubscribe", "form", T1),
            event("R2", f"{M1}|2", "resubscribe", "form", T1),
        ],
    )
    deployment.land(
        "day2.csv",
        [
            event("A2", M1, "unsubscribe", "third_party", T2),
            event("B2", M2, "subscribe", "api", T2),
            event("B3", M2, "subscribe", "preference_centre", T3),
            event("C2", M3, "unsubscribe", "csv_upload", T2),
            event("D2", M4, "subscribe", "preference_centre", T2),
            event("D3", M4, "subscribe", "form", T3, force=True),
            event("E2", M5, "subscribe", "api", T2, timestamp_subscribed=STAMPED),
        ],
    )
    deployment.materialize(DAY1)
    deployment.materialize(DAY2)
    return deployment


def opened(deployment: Deployment, how: Callable[..., Found]) -> Found:
    """`how(state_conn, personify_conn, config, tables)` on the deployment's databases."""
    config = parse_config(deployment.config)
    state = create_state_engine(deployment.state_url)
    personify = deployment.engine()
    with state.connect() as state_conn, personify.connect() as personify_conn:
        found = how(state_conn, personify_conn, config, personify_tables(config.personify))
    state.dispose()
    personify.dispose()
    return found


def explained(deployment: Deployment, member: str, **options: Any) -> Explanation:
    return opened(deployment, lambda *databases: explain(*databases, member, **options))


def decisions_and_rules(explanation: Explanation) -> list[tuple[str, str, str]]:
    [area] = explanation.areas
    return [(e.event_id, e.decision, e.rule) for e in area.events]


def test_example_1_names_the_stronger_source_that_set_the_status(
    deployment: Deployment,
) -> None:
    found = explained(deployment, M1)
    [first, second] = decisions_and_rules(found)
    assert first[:2] == ("A1", "applied") and "first request" in first[2]
    assert second[:2] == ("A2", "blocked_by_precedence")
    assert second[2] == (
        "blocked: the status was set at 2026-11-19 09:00 EST by form (rank 3); "
        "a third_party unsubscribe (rank 5) cannot override it"
    )
    assert found.areas[0].status == "subscribed" and found.differences == []


def test_example_2_preference_centre_yields_only_to_itself(deployment: Deployment) -> None:
    rules = decisions_and_rules(explained(deployment, M2))
    assert [r[1] for r in rules] == ["applied", "blocked_by_precedence", "applied"]
    assert "by preference_centre (rank 1); a api subscribe (rank 2) cannot" in rules[1][2]
    assert rules[2][2].startswith("applied: the status was set at 2026-11-19 09:00 EST by ")
    assert "preference_centre subscribe (rank 1) is at least as strong" in rules[2][2]


def test_example_3_equal_weight(deployment: Deployment) -> None:
    rules = decisions_and_rules(explained(deployment, M3))
    assert [r[1] for r in rules] == ["applied", "applied"]
    assert "by api (rank 2); a csv_upload unsubscribe (rank 2) is at least as strong" in rules[1][2]
    assert rules[1][2].endswith("now unsubscribed; it is the area's first unsubscribe")


def test_example_4_forced(deployment: Deployment) -> None:
    found = explained(deployment, M4)
    rules = decisions_and_rules(found)
    assert [r[1] for r in rules] == ["applied", "blocked_by_forced", "applied"]
    assert rules[0][2].startswith("applied: a forced third_party unsubscribe (rank 5) overrides")
    assert rules[1][2].startswith("blocked: the forced status was set at 2026-11-19 09:00 EST")
    assert "this preference_centre subscribe (rank 1) is not forced" in rules[1][2]
    assert "forced form subscribe" in rules[2][2] and "sets the status to subscribed" in rules[2][2]
    assert found.areas[0].status_line.startswith("subscribed, forced since 2026-11-20 10:00 EST")


def test_example_5_first_subscribe_without_timestamp(deployment: Deployment) -> None:
    rules = decisions_and_rules(explained(deployment, M5))
    assert [r[1] for r in rules] == ["applied", "no_change"]
    assert "no first subscribe event will ever be generated" in rules[0][2]
    assert rules[1][2].startswith("no change:") and "first subscribe" not in rules[1][2]


def test_every_event_names_its_file_line_and_stored_decision(deployment: Deployment) -> None:
    [area] = explained(deployment, M2).areas
    assert [(Path(e.file).name, e.line) for e in area.events] == [
        ("day1.csv", 3),
        ("day2.csv", 3),
        ("day2.csv", 4),
    ]
    assert all(e.stored_decision == e.decision for e in area.events)


def test_a_member_edited_in_personify_is_flagged(deployment: Deployment) -> None:
    assert explained(deployment, EDITED).differences == []
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'UPDATE "CUS_OPT_IN" SET "OPT_IN_FLAG" = \'N\' WHERE "MASTER_CUSTOMER_ID" = :m'
            ),
            {"m": EDITED},
        )
        conn.execute(
            sa.text('DELETE FROM "CUS_ACTIVITY" WHERE "MASTER_CUSTOMER_ID" = :m'), {"m": EDITED}
        )
    engine.dispose()
    found = explained(deployment, EDITED)
    assert any("flag is 'N' in Personify, subsync decided 'Y'" in d for d in found.differences)
    assert any("gone from Personify" in d for d in found.differences)
    assert "DIFFERENCE: NEWSLETTER: CUS_OPT_IN flag" in found.text()


def test_rejected_rows_show_with_reasons_and_masked_emails(deployment: Deployment) -> None:
    [rejected] = explained(deployment, M1).rejected
    assert (rejected["event_id"], rejected["reasons"], rejected["line"]) == (
        "R1",
        "invalid_event_type",
        8,
    )
    assert "jane.doe@" not in rejected["original_values"]
    assert "j***@example.org" in rejected["original_values"]
    [shown] = explained(deployment, M1, show_emails=True).rejected
    assert "jane.doe@example.org" in shown["original_values"]


def test_explaining_many_members_at_once_keeps_each_to_its_own_rows(
    deployment: Deployment,
) -> None:
    """The report explains its sample in one read per table; nothing may cross between members,
    not even between the subs of one master id."""
    members = [M1, f"{M1}|2", M2, EDITED, "000999"]
    together = opened(
        deployment,
        lambda state, personify, config, tables: explain_members(
            state, personify, config, tables, [parse_member(m, config) for m in members]
        ),
    )
    assert together == [explained(deployment, member) for member in members]
    sub = together[1]
    assert sub.member == f"{M1}|2"
    assert [e.event_id for a in sub.areas for e in a.events] == ["S1"]
    assert [row["event_id"] for row in sub.rejected] == ["R2"]
    assert [row["event_id"] for row in together[0].rejected] == ["R1"]
    assert together[-1].areas == [] and together[-1].rejected == []


def test_area_filter(deployment: Deployment) -> None:
    assert [a.area for a in explained(deployment, M1, area="NEWSLETTER").areas] == ["NEWSLETTER"]
    assert explained(deployment, M1, area="group:9999").areas == []


def test_cli_prints_text_and_json_and_never_an_unmasked_email(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUBSYNC_CONFIG", str(deployment.config_path))
    monkeypatch.setenv("SUBSYNC_DB_URL", deployment.state_url)
    monkeypatch.setenv("PERSONIFY_DB_URL", deployment.personify_url)
    assert main(["explain", M1]) == 0
    text = capsys.readouterr().out
    assert "cannot override it (blocked_by_precedence)" in text
    assert "invalid_event_type" in text and "jane.doe@" not in text
    assert main(["explain", f"{M1}|0", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["member"] == M1
    assert [e["decision"] for e in document["areas"][0]["events"]] == [
        "applied",
        "blocked_by_precedence",
    ]
    assert main(["explain", "not a member"]) == 2
    assert "MASTER or MASTER|SUB" in capsys.readouterr().err


def test_the_ui_job_writes_the_explanation_as_markdown_metadata(deployment: Deployment) -> None:
    resources = deployment.resources()
    del resources["landing"], resources["reports"]
    result = explain_member_job.execute_in_process(
        run_config={"ops": {"explain_member": {"config": {"member": M1}}}},
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    [materialized] = [
        event.step_output_data.metadata for event in result.all_events if event.is_successful_output
    ]
    markdown = materialized[EXPLANATION].value
    assert (
        "## Member 000101" in markdown and "cannot override it (blocked_by_precedence)" in markdown
    )
    assert "jane.doe@" not in markdown and "invalid_event_type" in markdown
    failed = explain_member_job.execute_in_process(
        run_config={"ops": {"explain_member": {"config": {"member": "nobody"}}}},
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    [failure] = failed.get_step_failure_events()
    assert "MASTER or MASTER|SUB" in failure.step_failure_data.error.message  # type: ignore[union-attr]
