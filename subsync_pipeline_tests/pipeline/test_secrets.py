"""Secrets and personal data (issue 7): PERSONIFY_DB_URL and SUBSYNC_DB_URL carry a real password
(a PostgreSQL role that needs it) and reach the resources only through EnvVar, as deployed. A good
day and three failing runs (wrong Personify password, wrong state password, a Personify table
missing) are captured whole: every event record with its metadata and errors, the run records
(config and tags), stdout/stderr at the file-descriptor level, the reports and the state database's
text. The password is nowhere in them, the masked URL is, and no email is unmasked outside the
stewards' rejects CSV.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.manifest import fallback_day
from subsync_pipeline.resources import default_resources
from subsync_pipeline_tests.conftest import PasswordRole
from subsync_pipeline_tests.harness import Deployment, console_output, deploy, event

DAY = "2026-11-20"
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def unmasked_emails(text: str) -> list[str]:
    return [found for found in EMAIL.findall(text) if "***@" not in found]


def run_texts(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    """Everything the UI and GraphQL API can show of a run: its record and every event."""
    run = instance.get_run_by_id(result.run_id)
    events = instance.all_logs(result.run_id)
    return "\n".join([repr(run), *(repr(entry) for entry in events)])


def state_texts(url: str) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = [
            conn.execute(sa.text(f"select * from {table}")).fetchall()
            for table in ("file_manifest", "rejected_records", "quality_history")
        ]
    engine.dispose()
    return repr(tables)


@pytest.fixture
def deployment(tmp_path: Path, password_role: PasswordRole) -> Iterator[Deployment]:
    deployed = deploy(
        tmp_path,
        personify_url=password_role.database("secret_personify"),
        state_url=password_role.database("secret_state"),
    )
    deployed.land(
        "a.csv",
        [
            event("OK1", "000100", "subscribe", "api", f"{DAY}T09:00:00"),
            event("BAD1", "999999", "subscribe", "api", f"{DAY}T09:00:00", email="jo.x@y.org"),
        ],
    )
    # Unreadable, and named after a person: its name and error reach the logs, masked.
    (deployed.landing / "to-jane.doe@example.org.csv").write_bytes(b"\x00\x01 not a CSV")
    yield deployed


@pytest.mark.postgres
def test_no_password_or_email_in_any_output(
    deployment: Deployment, password_role: PasswordRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = password_role.password
    personify_url, state_url = deployment.personify_url, deployment.state_url
    environment = {
        "SUBSYNC_CONFIG": str(deployment.config_path),
        "SUBSYNC_LANDING_DIR": str(deployment.landing),
        "PERSONIFY_DB_URL": personify_url,
        "SUBSYNC_DB_URL": state_url,
        "SUBSYNC_REPORTS_DIR": str(deployment.reports),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # As deployed: each URL is an EnvVar, resolved when a run starts, never a config value.
    resources = default_resources()
    console = deployment.root / "console.log"
    runs: dict[str, dg.ExecuteInProcessResult] = {}
    with dg.instance_for_test() as instance, console_output(console):

        def run(name: str, day: str = DAY) -> None:
            runs[name] = dg.materialize(
                sync_assets,
                partition_key=day,
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )

        run("good")
        run("recorded_day", fallback_day(parse_config(deployment.config), datetime.now(UTC)))
        monkeypatch.setenv("PERSONIFY_DB_URL", personify_url.replace(secret, f"no{secret}"))
        run("wrong_personify_password")
        monkeypatch.setenv("PERSONIFY_DB_URL", personify_url)
        monkeypatch.setenv("SUBSYNC_DB_URL", state_url.replace(secret, f"no{secret}"))
        run("wrong_state_password")
        monkeypatch.setenv("SUBSYNC_DB_URL", state_url)
        engine = sa.create_engine(personify_url)
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE "CUS_ACTIVITY" RENAME TO "CUS_ACTIVITY_OLD"')
        engine.dispose()
        run("missing_table")
        texts = {name: run_texts(instance, result) for name, result in runs.items()}
        for key in instance.get_asset_keys():
            records = instance.fetch_materializations(key, limit=100).records
            texts[f"materializations {key}"] = repr(records)

    assert runs["good"].success and runs["recorded_day"].success
    assert [name for name, result in runs.items() if not result.success] == [
        "wrong_personify_password",
        "wrong_state_password",
        "missing_table",
    ]
    texts["console"] = console.read_text(errors="replace")
    texts["state database"] = state_texts(state_url)
    texts.update(
        {str(path): path.read_text(errors="replace") for path in deployment.reports.rglob("*.*")}
    )

    # The failures say what is wrong, with the URL masked.
    assert "refused the login of user 'subsync_secret'" in texts["wrong_personify_password"]
    assert "password authentication failed" in texts["wrong_state_password"]
    assert "CUS_ACTIVITY does not exist" in texts["missing_table"]
    assert "subsync_secret:***@" in texts["missing_table"]
    assert "subsync_secret:***@" in texts["materializations AssetKey(['personify_cus_opt_in'])"]
    leaks = [name for name, text in texts.items() if secret in text]
    assert not leaks, f"the password appears in: {leaks}"

    assert "t***@example.org.csv" in texts["console"]
    for name, text in texts.items():
        if not name.endswith("rejected_rows.csv") and name != "state database":
            assert not unmasked_emails(text), name
