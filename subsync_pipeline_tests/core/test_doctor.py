"""`subsync doctor`: each check passes on a good sandbox and fails (or warns) on one broken the way
a real site can be, against real SQLite files and a real PostgreSQL server; the CLI's exit code
and the Dagster job's checklist, with no password anywhere in what they print.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
import yaml
from psycopg import sql

from subsync_pipeline.core.config import SubsyncConfig, parse_config
from subsync_pipeline.core.doctor import (
    CODE,
    CONNECTION,
    FAIL,
    GRANT,
    MEMBER_ID,
    NOT_NULL,
    OK,
    SCOPE,
    TABLE,
    WARN,
    Finding,
    _check_grants,
    doctor,
    exit_code,
)
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.sandbox import (
    DEMO_CONFIG_YAML,
    DEMO_HEADERS,
    create_sandbox_personify,
    ddl_statements,
    demo_customers,
    statement_table,
)
from subsync_pipeline.preflight import CHECKLIST, personify_preflight_job
from subsync_pipeline.resources import (
    LandingFolderResource,
    PersonifyDatabaseResource,
    SubsyncConfigResource,
)
from subsync_pipeline_tests.conftest import PasswordRole
from subsync_pipeline_tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def config(**personify: Any) -> SubsyncConfig:
    """The demo config (three interest areas), with `personify` keys replaced."""
    data = yaml.safe_load(DEMO_CONFIG_YAML)
    data["personify"].update(personify)
    return parse_config(data)


def sqlite_sandbox(tmp_path: Path, table: str = "", edits: dict[str, str] | None = None) -> str:
    """A sandbox Personify in a SQLite file; `edits` (old -> new text) change the DDL of `table`,
    which is created first, so the sandbox adds only the others."""
    url = f"sqlite:///{tmp_path / 'personify.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in ddl_statements("sqlite"):
            if statement.startswith("CREATE TABLE") and statement_table(statement) == table:
                edited = statement
                for old, new in (edits or {}).items():
                    assert old in edited, old
                    edited = edited.replace(old, new)
                conn.exec_driver_sql(edited)
    engine.dispose()
    create_sandbox_personify(url, demo_customers(20))
    return url


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def of(findings: list[Finding], check: str, status: str | None = None) -> list[Finding]:
    return [f for f in findings if f.check == check and status in (None, f.status)]


def assert_all_ok(findings: list[Finding], check: str) -> None:
    found = of(findings, check)
    assert found and all(f.status == OK for f in found), [f.line() for f in found]


def test_good_sandbox_passes_every_check(tmp_path: Path) -> None:
    findings = doctor(config(), sqlite_sandbox(tmp_path))
    assert [f.status for f in findings] == [OK] * len(findings), [f.line() for f in findings]
    for check in (CONNECTION, TABLE, NOT_NULL, GRANT, CODE, MEMBER_ID):
        assert of(findings, check), check
    assert of(findings, GRANT)[0].message.startswith("SQLite has no grants")
    assert exit_code(findings) == 0


def test_renamed_column_fails_until_the_config_maps_it(tmp_path: Path) -> None:
    url = sqlite_sandbox(tmp_path)
    execute(url, 'ALTER TABLE "CUS_OPT_IN" RENAME COLUMN "OPT_IN_FLAG" TO "OPTIN_FLG"')
    findings = doctor(config(), url)
    failed = of(findings, TABLE, FAIL)
    assert len(failed) == 1 and "CUS_OPT_IN has no column OPT_IN_FLAG" in failed[0].message
    assert "personify.columns.opt_in" in failed[0].fix
    assert exit_code(findings) == 1

    mapped = doctor(config(columns={"opt_in": {"flag": "OPTIN_FLG"}, "activity": {}}), url)
    assert_all_ok(mapped, TABLE)
    assert exit_code(mapped) == 0


def test_a_column_shorter_than_subsync_may_write_warns(tmp_path: Path) -> None:
    url = sqlite_sandbox(
        tmp_path, "CUS_ACTIVITY", {'"ACTIVITY_TEXT" VARCHAR(2000)': '"ACTIVITY_TEXT" VARCHAR(255)'}
    )
    findings = doctor(config(), url)
    warned = [f.message for f in of(findings, TABLE, WARN)]
    assert any("ACTIVITY_TEXT is VARCHAR(255)" in m and "up to 2000" in m for m in warned), warned
    assert not of(findings, TABLE, FAIL)


def test_too_short_and_incompatible_columns_fail(tmp_path: Path) -> None:
    url = sqlite_sandbox(
        tmp_path,
        "CUS_ACTIVITY",
        {
            '"ACTIVITY_CODE" VARCHAR(24)': '"ACTIVITY_CODE" VARCHAR(10)',
            '"ACTIVITY_DATE" DATETIME': '"ACTIVITY_DATE" VARCHAR(30)',
        },
    )
    failed = [f.message for f in of(doctor(config(), url), TABLE, FAIL)]
    assert any(
        # RM_UNSUBSCRIBE is 14 characters: this config's codes cannot fit.
        "CUS_ACTIVITY: column ACTIVITY_CODE is VARCHAR(10)" in m and "needs 14" in m
        for m in failed
    ), failed
    assert any(
        "column ACTIVITY_DATE is VARCHAR(30) (text)" in m and "as datetime" in m for m in failed
    ), failed
    assert len(failed) == 2


def test_activity_id_must_be_generated(tmp_path: Path) -> None:
    url = sqlite_sandbox(
        tmp_path,
        "CUS_ACTIVITY",
        {'"CUS_ACTIVITY_ID" INTEGER PRIMARY KEY AUTOINCREMENT': '"CUS_ACTIVITY_ID" BIGINT'},
    )
    findings = doctor(config(), url)
    failed = of(findings, TABLE, FAIL)
    assert len(failed) == 1
    assert "CUS_ACTIVITY_ID (field id) is not an identity" in failed[0].message
    assert exit_code(findings) == 1


def test_not_null_mod_date_fails_as_it_is_null_on_insert(tmp_path: Path) -> None:
    url = sqlite_sandbox(
        tmp_path, "CUS_OPT_IN", {'"MODDATE" DATETIME,': '"MODDATE" DATETIME NOT NULL,'}
    )
    findings = doctor(config(), url)
    failed = of(findings, NOT_NULL, FAIL)
    assert len(failed) == 1
    assert failed[0].message == (
        "CUS_OPT_IN.MODDATE is NOT NULL without a default, but field mod_date mapped to it is "
        "set on update only, so NULL on insert"
    )
    assert exit_code(findings) == 1


@pytest.mark.postgres
def test_not_null_column_added_later_needs_a_constant(postgres_url: str) -> None:
    create_sandbox_personify(postgres_url, demo_customers(20))
    assert_all_ok(doctor(config(), postgres_url), NOT_NULL)
    execute(postgres_url, 'ALTER TABLE "CUS_ACTIVITY" ADD COLUMN "PRIORITY" varchar(8) NOT NULL')

    findings = doctor(config(), postgres_url)
    failed = of(findings, NOT_NULL, FAIL)
    assert len(failed) == 1
    assert "CUS_ACTIVITY.PRIORITY is NOT NULL without a default" in failed[0].message
    assert "personify.constants.activity (PRIORITY: <value>)" in failed[0].fix
    assert exit_code(findings) == 1

    filled = doctor(
        config(constants={"opt_in": {}, "activity": {"PRIORITY": "NORMAL"}}), postgres_url
    )
    assert_all_ok(filled, NOT_NULL)
    assert exit_code(filled) == 0
    # A constant longer than its column would fail the insert.
    too_long = config(constants={"opt_in": {}, "activity": {"PRIORITY": "VERY_HIGH_PRIORITY"}})
    failed = of(doctor(too_long, postgres_url), TABLE, FAIL)
    assert len(failed) == 1
    assert "PRIORITY is VARCHAR(8): constant 'VERY_HIGH_PRIORITY' needs 18" in failed[0].message


def _as_superuser(server: PostgresServer, dbname: str, *statements: sql.Composed) -> None:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=dbname, autocommit=True
    ) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.mark.postgres
def test_missing_grants_fail_with_the_grant_to_run(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    create_sandbox_personify(postgres_url, demo_customers(20))
    assert_all_ok(doctor(config(), postgres_url), GRANT)  # the owner holds every privilege

    role = f"doctor_{uuid.uuid4().hex[:8]}"
    dbname = sa.make_url(postgres_url).database
    assert dbname
    _as_superuser(
        postgres_server,
        dbname,
        sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)),
        sql.SQL('GRANT SELECT ON "CUSTOMER", "CUS_OPT_IN", "APP_CODE" TO {}').format(
            sql.Identifier(role)
        ),
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)),
    )
    findings = doctor(config(), postgres_url.replace("://postgres@", f"://{role}@", 1))
    lines = {f.message: f.fix for f in of(findings, GRANT, FAIL)}
    assert lines == {
        f"login '{role}' lacks INSERT, UPDATE on CUS_OPT_IN": (
            f'GRANT INSERT, UPDATE ON "CUS_OPT_IN" TO {role}'
        ),
        f"login '{role}' lacks SELECT, INSERT, UPDATE, DELETE on CUS_ACTIVITY": (
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON "CUS_ACTIVITY" TO {role}'
        ),
        f"login '{role}' lacks SELECT on APP_SUBCODE": f'GRANT SELECT ON "APP_SUBCODE" TO {role}',
        f"login '{role}' lacks TEMPORARY on the database: the writer stages each day's rows in "
        "temporary tables": f"GRANT TEMPORARY ON DATABASE <database> TO {role}",
    }
    assert [f.message for f in of(findings, GRANT, OK)] == [
        f"login '{role}' holds SELECT on \"CUSTOMER\"",
        f"login '{role}' holds SELECT on \"APP_CODE\"",
    ]
    # Reading APP_SUBCODE is refused: the code check says so instead of stopping the others.
    assert "permission denied" in of(findings, CODE, FAIL)[0].message
    assert of(findings, MEMBER_ID, OK)
    assert exit_code(findings) == 1


def test_grants_on_a_database_without_grant_queries_name_what_to_hold() -> None:
    unknown = cast(sa.Connection, SimpleNamespace(dialect=SimpleNamespace(name="oracle")))
    [finding] = _check_grants(unknown, config(), personify_tables(config().personify))
    assert (finding.status, finding.message) == (WARN, "cannot check grants on oracle")
    assert finding.fix.startswith("make sure the login holds: SELECT on customer; ")
    assert "SELECT, INSERT, UPDATE, DELETE on activity" in finding.fix


def test_missing_codes_warn(tmp_path: Path) -> None:
    url = sqlite_sandbox(tmp_path)
    execute(
        url,
        """DELETE FROM "APP_SUBCODE" WHERE "CODE" = 'NEWSLETTER' AND "SUBCODE" = 'INSIDER'""",
        """DELETE FROM "APP_CODE" WHERE "CODE" IN ('EVENTS', 'RM_UNSUBSCRIBE')""",
    )
    findings = doctor(config(), url)
    warned = [f.message for f in of(findings, CODE, WARN)]
    assert warned == [
        "interest-area code/subcode NEWSLETTER/INSIDER (Real Magnet group 1201) is not in "
        "APP_SUBCODE (SUBSYSTEM='CUS', TYPE='OPT_IN_INTEREST_AREA')",
        "interest-area code EVENTS (Real Magnet message_category 77) is not in APP_CODE "
        "(SUBSYSTEM='CUS', TYPE='OPT_IN_INTEREST_AREA')",
        "activity code RM_UNSUBSCRIBE is not in APP_CODE (SUBSYSTEM='CUS', TYPE='ACTIVITY')",
    ]
    assert exit_code(findings) == 0  # Personify takes the rows; its screens just do not list them

    execute(url, 'DROP TABLE "APP_SUBCODE"')
    absent = of(doctor(config(), url), CODE, WARN)
    assert "APP_SUBCODE not found" in absent[0].message


def test_customer_ids_that_do_not_match_the_pattern_warn(tmp_path: Path) -> None:
    url = sqlite_sandbox(tmp_path)
    assert_all_ok(doctor(config(), url), MEMBER_ID)
    execute(
        url,
        """INSERT INTO "CUSTOMER" ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID")
           VALUES ('C-000123', 0), ('C-000124', 0)""",
    )
    findings = doctor(config(), url)
    warned = of(findings, MEMBER_ID, WARN)
    assert len(warned) == 1
    assert "2 of 24 sampled CUSTOMER ids do not match member_id_pattern" in warned[0].message
    assert "'C-000123', 'C-000124'" in warned[0].message
    assert exit_code(findings) == 0

    data = yaml.safe_load(DEMO_CONFIG_YAML)
    data["member_id_pattern"] = "^(C-)?[0-9]{1,22}$"
    assert_all_ok(doctor(parse_config(data), url), MEMBER_ID)


def _landing_csv(folder: Path, scopes: list[tuple[str, str, str]]) -> None:
    folder.mkdir(exist_ok=True)
    with (folder / "rm_tracking_2026-11-20.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([h.upper() for h in DEMO_HEADERS])  # headers match in any case
        for n, (scope_type, scope_id, scope_name) in enumerate(scopes, 1):
            writer.writerow(
                [
                    *(f"E{n}", f"m{n}@example.org", "000100001", "subscribe"),
                    *(scope_type, scope_id, scope_name, "form", "false", "2026-11-20T09:00:00", ""),
                ]
            )


def test_unmapped_scopes_in_the_landing_folder_warn(tmp_path: Path) -> None:
    url = sqlite_sandbox(tmp_path)
    landing = tmp_path / "landing"
    _landing_csv(
        landing,
        [
            ("group", "1201", "Weekly Newsletter"),
            ("Group", " 4242 ", "Chapter News"),
            ("group", "4242", ""),
            ("message_category", "77", "Events"),
        ],
    )
    findings = doctor(config(), url, landing)
    warned = of(findings, SCOPE, WARN)
    assert len(warned) == 1
    assert warned[0].message.startswith("Real Magnet group 4242 ('Chapter News', 2 events in "), (
        warned[0].message
    )
    assert warned[0].fix == (
        'add to interest_areas: - {scope_type: group, scope_id: "4242", opt_in_code: <CODE>}'
    )
    assert exit_code(findings) == 0

    data = yaml.safe_load(DEMO_CONFIG_YAML)
    data["interest_areas"].append({"scope_type": "group", "scope_id": "4242", "opt_in_code": "X"})
    assert_all_ok(doctor(parse_config(data), url, landing), SCOPE)


def _doctor_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subsync_pipeline.cli", "doctor", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.postgres
def test_cli_exit_code_and_no_password(tmp_path: Path, password_role: PasswordRole) -> None:
    url = password_role.database("doctor_cli")
    secret = password_role.password
    assert secret in url
    create_sandbox_personify(url, demo_customers(20))
    config_file = tmp_path / "subsync.yaml"
    config_file.write_text(DEMO_CONFIG_YAML, encoding="utf-8")
    landing = tmp_path / "landing"
    _landing_csv(landing, [("group", "1201", "Weekly Newsletter")])
    env = {"SUBSYNC_CONFIG": str(config_file), "SUBSYNC_LANDING_DIR": str(landing)}

    good = _doctor_cli({**env, "PERSONIFY_DB_URL": url})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "[FAIL]" not in good.stdout and "[ok] connected to Personify at" in good.stdout
    assert "0 failure(s)" in good.stdout.splitlines()[-1]

    execute(url, 'ALTER TABLE "CUS_OPT_IN" ADD COLUMN "SOURCE_CODE" varchar(8) NOT NULL')
    broken = _doctor_cli({**env, "PERSONIFY_DB_URL": url}, "--json")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads(broken.stdout)
    assert report["exit_code"] == 1
    assert [f["check"] for f in report["findings"] if f["status"] == FAIL] == [NOT_NULL]

    wrong = url.replace(secret, f"not-{secret}-either")
    refused = _doctor_cli({**env, "PERSONIFY_DB_URL": wrong})
    assert refused.returncode == 1
    assert "[FAIL]" in refused.stdout and "refused the login of user" in refused.stdout
    for run in (good, broken, refused):
        assert secret not in run.stdout + run.stderr


def _run_preflight(tmp_path: Path, url: str) -> dg.ExecuteInProcessResult:
    config_file = tmp_path / "subsync.yaml"
    config_file.write_text(DEMO_CONFIG_YAML, encoding="utf-8")
    return personify_preflight_job.execute_in_process(
        resources={
            "subsync_config": SubsyncConfigResource(path=str(config_file)),
            "personify_db": PersonifyDatabaseResource(url=url),
            "landing": LandingFolderResource(path=str(tmp_path / "landing")),
        },
        raise_on_error=False,
    )


def test_preflight_job_shows_the_checklist_and_fails_on_a_failure(tmp_path: Path) -> None:
    url = sqlite_sandbox(tmp_path)
    _landing_csv(tmp_path / "landing", [("group", "31337", "Unmapped list")])

    passed = _run_preflight(tmp_path, url)
    assert passed.success
    [output] = [
        e.step_output_data
        for e in passed.all_events
        if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    checklist = output.metadata[CHECKLIST]
    assert isinstance(checklist, dg.MarkdownMetadataValue) and checklist.md_str
    assert "| [ok] | table |" in checklist.md_str
    assert "| [warn] | scope | Real Magnet group 31337" in checklist.md_str

    execute(url, 'ALTER TABLE "CUS_ACTIVITY" RENAME COLUMN "ACTIVITY_DATE" TO "ACT_DATE"')
    failed = _run_preflight(tmp_path, url)
    assert not failed.success
    [failure] = failed.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data is not None
    md = failure.step_failure_data.user_failure_data.metadata[CHECKLIST]
    assert isinstance(md, dg.MarkdownMetadataValue) and md.md_str
    assert "| [FAIL] | table | CUS_ACTIVITY has no column ACTIVITY_DATE" in md.md_str
