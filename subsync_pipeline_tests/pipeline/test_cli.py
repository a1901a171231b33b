"""SPEC §6's CLI line, run in a subprocess against a temporary SQLite Personify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from subsync_pipeline_tests.harness import Deployment, deploy, event

DAY = "2026-11-20"


def run_cli(
    deployment: Deployment, personify_url: str, partition: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SUBSYNC_CONFIG": str(deployment.config_path),
        "SUBSYNC_LANDING_DIR": str(deployment.landing),
        "PERSONIFY_DB_URL": personify_url,
        "SUBSYNC_DB_URL": deployment.state_url,
        "SUBSYNC_REPORTS_DIR": str(deployment.reports),
    }
    env.pop("DAGSTER_HOME", None)
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "asset", "materialize", "-m", "subsync_pipeline.definitions"]
    return subprocess.run(
        [*command, "--select", "*", *(partition or ["--partition", DAY])],
        cwd=deployment.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_materializes_a_day(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land(
        "a.csv",
        [
            event("C1", "000100", "subscribe", "api", "2026-11-20T09:00:00"),
            event("C2", "000101", "unsubscribe", "form", "2026-11-20T09:00:00", scope_id="9999"),
        ],
    )
    process = run_cli(deployment, deployment.personify_url)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-4000:]
    assert deployment.opt_in()["OPTION_SHORT_NAME"].tolist() == ["NEWSLETTER"]
    assert deployment.activity()["event_id"].tolist() == ["C1", "C2"]
    assert (deployment.reports / DAY / "report.html").is_file()


def test_cli_materializes_a_range_in_one_run_without_the_daemon(tmp_path: Path) -> None:
    """Issue 23: a backfill's range from the command line, no daemon: one run, whose days end
    as one run per day leaves them (the later unsubscribe wins; each day's report is the
    range's)."""
    deployment = deploy(tmp_path)
    deployment.land(
        "a.csv",
        [
            event("R1", "000100", "subscribe", "api", "2026-11-18T09:00:00"),
            event("R2", "000101", "subscribe", "form", "2026-11-18T10:00:00"),
        ],
    )
    deployment.land("b.csv", [event("R3", "000100", "unsubscribe", "api", "2026-11-19T09:00:00")])
    deployment.land("c.csv", [event("R4", "000102", "subscribe", "api", "2026-11-20T09:00:00")])
    process = run_cli(
        deployment, deployment.personify_url, ["--partition-range", f"2026-11-18...{DAY}"]
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-4000:]
    opt_in = deployment.opt_in()
    assert opt_in["MASTER_CUSTOMER_ID"].tolist() == ["000100", "000101", "000102"]
    assert opt_in["OPT_IN_FLAG"].tolist() == ["N", "Y", "Y"]
    assert deployment.activity()["event_id"].tolist() == ["R1", "R2", "R3", "R4"]
    assert (deployment.reports / f"2026-11-18_to_{DAY}" / "report.html").is_file()


def test_cli_fails_clearly_when_personify_lacks_its_tables(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land("a.csv", [event("C1", "000100", "subscribe", "api", "2026-11-20T09:00:00")])
    empty = tmp_path / "empty_personify.db"
    engine = sa.create_engine(f"sqlite:///{empty}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x int)")
    engine.dispose()
    process = run_cli(deployment, f"sqlite:///{empty}")
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert "table CUSTOMER does not exist" in output
    assert "Nothing was written" in output
