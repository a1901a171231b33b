"""The deployment as operators run it: dagster-daemon and the webserver on a Dagster instance in
PostgreSQL (deploy/postgres/dagster.yaml), the upload sensor on; a file lands, its runs succeed,
and Personify holds the expected rows. A backfill of ten days through the instance converges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from subsync_pipeline.pools import PERSONIFY_POOL, STATE_POOL
from subsync_pipeline_tests.dagster_services import BIN, ROOT, WORKSPACE, Services, graphql
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer, free_port

pytestmark = pytest.mark.slow


class Operators:
    """A DAGSTER_HOME on PostgreSQL with the daemon and the webserver running against it."""

    def __init__(self, tmp: Path, server: PostgresServer, deployment: Deployment) -> None:
        home = tmp / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
        instance_db = server.create_database("dagster").rsplit("/", 1)[1]
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(server.port),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "trust-auth-ignores-this",
            "DAGSTER_PG_DB": instance_db,
            "SUBSYNC_CONFIG": str(deployment.config_path),
            "SUBSYNC_LANDING_DIR": str(deployment.landing),
            "PERSONIFY_DB_URL": deployment.personify_url,
            "SUBSYNC_DB_URL": deployment.state_url,
            "SUBSYNC_REPORTS_DIR": str(deployment.reports),
        }
        self.services = Services(self.env, tmp / "logs")
        self.port = free_port()
        # As deploy/README.md tells an operator to, once per PostgreSQL instance.
        for pool in (PERSONIFY_POOL, STATE_POOL):
            self.dagster("instance", "concurrency", "set", pool, "1")

    def dagster(self, *args: str) -> str:
        process = subprocess.run(
            [str(BIN / "dagster"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
        return process.stdout

    def cli(self, *args: str) -> str:
        return self.dagster(*args, "-w", WORKSPACE)

    def start(self) -> None:
        self.services.start("daemon", str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE)
        self.services.start(
            "webserver",
            str(BIN / "dagster-webserver"),
            "-w",
            WORKSPACE,
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        )

    def stop(self) -> None:
        self.services.stop()

    def runs(self) -> list[dict]:  # type: ignore[type-arg]
        data = graphql(
            self.port,
            "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }",
        )
        return data["data"]["runsOrError"]["results"]

    def failures(self, runs: list[dict]) -> str:  # type: ignore[type-arg]
        """Why each failed run failed, from its event log: the assertion then says it."""
        reasons = []
        for run in runs:
            if run["status"] != "FAILURE":
                continue
            query = (
                '{ logsForRun(runId: "' + run["runId"] + '") { ... on EventConnection { events { '
                "__typename ... on MessageEvent { message } "
                "... on ExecutionStepFailureEvent { stepKey error { message } } } } } }"
            )
            data = graphql(self.port, query)
            events = data["data"]["logsForRun"].get("events", [])
            reasons.append(
                f"run {run['runId']}: "
                + " | ".join(
                    e.get("message") or str(e.get("error"))
                    for e in events
                    if "Fail" in e["__typename"]
                )
            )
        return "\n".join(reasons) + "\n" + self.services.log_tail()

    def wait_for_runs(self, count: int, timeout: float) -> list[dict]:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                runs = self.runs()
            except OSError:
                runs = []
            finished = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if len(finished) >= count and len(finished) == len(runs):
                return runs
            time.sleep(2)
        raise AssertionError(
            f"runs did not finish in {timeout}s: {self.runs()}\n{self.services.log_tail()}"
        )


@pytest.fixture
def operators(
    tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[tuple[Operators, Deployment]]:
    deployment = deploy(
        tmp_path / "subsync",
        personify_url=postgres_server.create_database("personify_e2e"),
        state_url=postgres_server.create_database("state_e2e"),
    )
    ops = Operators(tmp_path, postgres_server, deployment)
    try:
        yield ops, deployment
    finally:
        ops.stop()


def test_a_landed_file_is_synced_by_the_daemon(operators: tuple[Operators, Deployment]) -> None:
    ops, deployment = operators
    deployment.land(
        "upload.csv",
        [
            event("E1", "000100", "subscribe", "form", "2026-11-19T09:00:00"),
            event("E2", "000100", "unsubscribe", "third_party", "2026-11-20T09:00:00"),
            event("E3", "000101", "unsubscribe", "preference_centre", "2026-11-20T10:00:00"),
        ],
    )
    ops.cli("sensor", "start", "tracking_upload_sensor")
    ops.start()
    runs = ops.wait_for_runs(2, timeout=300)
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], ops.failures(runs)
    partitions = sorted(
        tag["value"] for r in runs for tag in r["tags"] if tag["key"] == "dagster/partition"
    )
    assert partitions == ["2026-11-19", "2026-11-20"]
    flags = deployment.opt_in().set_index("MASTER_CUSTOMER_ID")["OPT_IN_FLAG"].to_dict()
    assert flags == {"000100": "Y", "000101": "N"}  # the third-party request was outranked
    assert deployment.activity()["event_id"].tolist() == ["E1", "E3"]


def test_a_ten_day_backfill_converges(operators: tuple[Operators, Deployment]) -> None:
    ops, deployment = operators
    days = [f"2026-11-{d:02d}" for d in range(10, 20)]
    rows = []
    for n, day in enumerate(reversed(days)):  # late days first in the file: order must not matter
        member = f"{100 + n % 3:06d}"
        rows.append(
            event(
                f"B{n:02d}",
                member,
                ["subscribe", "unsubscribe"][n % 2],
                ["api", "form", "csv_upload", "third_party"][n % 4],
                f"{day}T12:00:00",
                force=n == 4,
            )
        )
    deployment.land("backfill.csv", rows)
    ops.start()
    ops.cli("job", "backfill", "-j", "daily_sync_job", "--partitions", ",".join(days), "--noprompt")
    runs = ops.wait_for_runs(len(days), timeout=420)
    assert len(runs) == len(days) and {r["status"] for r in runs} == {"SUCCESS"}, ops.failures(runs)

    reference = deploy(deployment.root.parent / "reference")
    reference.land("backfill.csv", rows)
    for day in days:
        reference.materialize(day)
    pd.testing.assert_frame_equal(deployment.opt_in(), reference.opt_in())
    pd.testing.assert_frame_equal(deployment.activity(), reference.activity())
