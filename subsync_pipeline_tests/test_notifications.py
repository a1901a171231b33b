"""Failure notices and the daily digest, received by real servers the tests start: an SMTP
server demanding STARTTLS and a login, and an HTTP server taking webhook posts. The sensors are
evaluated tick after tick on a real Dagster instance, as the daemon would."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from subsync_pipeline.cli import main
from subsync_pipeline.core.notify import FAILURE_FIXES
from subsync_pipeline.notifications import notification_sensor, run_failure_notice_sensor
from subsync_pipeline.resources import NotifyResource
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.notify_servers import (
    SMTP_PASSWORD,
    Post,
    smtp_server,
    webhook_server,
)
from subsync_pipeline_tests.pg_server import free_port

DAY = "2026-11-20"
UI = "http://dagster.example.org:3000"
DB_PASSWORD = "Zq7-ultra-Secret-4411"
ODBC_PASSWORD = "Hunter2-Odbc-Secret"
LEAKED_EMAIL = "jane.doe@example.org"
# An email address not masked (more than one character before the @).
_WHOLE_EMAIL = re.compile(rb"[A-Za-z0-9._%+\-]{2,}@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


class Notifier:
    """Both notification sensors, evaluated as the daemon does: the failure sensor's cursor is
    carried from tick to tick (and stored, as the daemon stores it between restarts)."""

    def __init__(self, instance: dg.DagsterInstance, deployment: Deployment, urls: str) -> None:
        self.instance = instance
        self.resources = {**deployment.resources(), "notify": NotifyResource(urls=urls)}
        self.cursor: str | None = None

    def context(self, cursor: str | None = None) -> dg.SensorEvaluationContext:
        return dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=self.resources
        )

    def failure_tick(self) -> None:
        with self.context(self.cursor) as context:
            result = run_failure_notice_sensor.evaluate_tick(context)
        self.cursor = result.cursor

    def send_tick(self) -> str:
        with self.context() as context:
            result = notification_sensor.evaluate_tick(context)
        return result.skip_message or ""


def drop_opt_in(deployment: Deployment) -> None:
    engine = deployment.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql('DROP TABLE "CUS_OPT_IN"')
    engine.dispose()


def outbox(deployment: Deployment) -> list[dict[str, Any]]:
    frame = deployment.state("SELECT notice_key, channel, status, last_error FROM notices")
    return [dict(row) for row in frame.to_dict("records")]


def test_a_run_failed_on_a_missing_table_is_emailed_once(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(ui_base_url=UI, notify={"channels": {"engineers": {"digest": "off"}}})
    deployment.land("a.csv", [event("F1", "000100", "subscribe", "api", f"{DAY}T09:00:00")])
    drop_opt_in(deployment)
    with smtp_server(tmp_path) as smtp, dg.instance_for_test() as instance:
        notifier = Notifier(instance, deployment, f"engineers={smtp.url()}")
        notifier.failure_tick()  # the sensor's first tick: its cursor starts at the latest event
        before_run = notifier.cursor
        result = deployment.materialize(DAY, instance, raise_on_error=False)
        assert not result.success
        notifier.failure_tick()
        notifier.failure_tick()
        assert notifier.send_tick().startswith("1 notice(s) sent")
        # A daemon restart: a fresh context from the stored cursor finds nothing new.
        stored = notifier.cursor
        notifier.failure_tick()
        assert notifier.cursor == stored
        # Even a cursor that was never stored (a crash mid-tick) queues the notice only once.
        notifier.cursor = before_run
        notifier.failure_tick()
        assert notifier.send_tick().startswith("0 notice(s) sent")

    assert len(smtp.received) == 1
    mail = smtp.received[0]
    assert mail.tls and mail.authenticated
    assert mail.rcpt_tos == ["ops@example.org"]
    assert mail.subject == f"subsync: the run for {DAY} failed at personify_cus_opt_in"
    text = " ".join(mail.text.split())
    assert f"Day: {DAY}" in text
    assert "Step: personify_cus_opt_in" in text
    assert "Error: PersonifySchemaError" in text
    assert "table CUS_OPT_IN does not exist" in text
    assert f"What to do: {FAILURE_FIXES['PersonifySchemaError']}" in text
    assert f"{UI}/runs/{result.run_id}" in text
    assert SMTP_PASSWORD.encode() not in mail.raw
    assert [row["status"] for row in outbox(deployment)] == ["sent"]


@dg.asset
def leaky_step() -> None:
    """Fails with the kind of error a driver gives: a connection string and an email in it."""
    raise RuntimeError(
        f"could not connect to postgresql://subsync:{DB_PASSWORD}@db.example.org/personify "
        f"(DRIVER={{ODBC Driver 18}};UID=sa;PWD={ODBC_PASSWORD};) for {LEAKED_EMAIL}"
    )


def _json(post: Post) -> dict[str, Any]:
    assert post.content_type.startswith("application/json")
    return dict(json.loads(post.body))


def test_notices_carry_no_password_and_no_whole_email(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(notify={"channels": {"engineers": {"digest": "off"}}})
    with (
        smtp_server(tmp_path) as smtp,
        webhook_server() as hook,
        dg.instance_for_test() as instance,
    ):
        urls = f"engineers={smtp.url()} engineers={hook.url()}"
        notifier = Notifier(instance, deployment, urls)
        notifier.failure_tick()
        assert not dg.materialize([leaky_step], instance=instance, raise_on_error=False).success
        notifier.failure_tick()
        notifier.send_tick()

    assert len(smtp.received) == 1 and len(hook.received) == 1
    posted = _json(hook.received[0])
    assert posted["title"] == "subsync: the run for __ephemeral_asset_job__ failed at leaky_step"
    for text in (posted["message"], smtp.received[0].text):
        # The error is there, masked: the test would fail if it were left out altogether.
        assert "postgresql://subsync:***@db.example.org" in text
        assert "PWD=***" in text and "j***@example.org" in text
    mail_body = smtp.received[0].raw.split(b"\r\n\r\n", 1)[1]
    for received in (hook.received[0].body, smtp.received[0].raw, smtp.received[0].text.encode()):
        for secret in (DB_PASSWORD, ODBC_PASSWORD, LEAKED_EMAIL, SMTP_PASSWORD):
            assert secret.encode() not in received
    assert not _WHOLE_EMAIL.search(hook.received[0].body)
    assert not _WHOLE_EMAIL.search(mail_body)


def _yesterday() -> str:
    """The day a digest sent now is about, in the deployment's time zone."""
    return (datetime.now(ZoneInfo("America/New_York")).date() - timedelta(days=1)).isoformat()


def _digest_deployment(root: Path, rejected: bool) -> Deployment:
    deployment = deploy(root)
    deployment.set_config(
        ui_base_url=UI,
        notify={
            "digest_time": "00:00",
            "channels": {
                "stewards": {"failures": False, "digest_parts": ["rejects"]},
                "engineers": {"digest_parts": ["failures"]},
            },
        },
    )
    day = _yesterday()
    second = "999999" if rejected else "000101"  # 999999 is no Personify customer
    deployment.land(
        "day.csv",
        [
            event("D1", "000100", "subscribe", "api", f"{day}T12:00:00"),
            event("D2", second, "subscribe", "api", f"{day}T12:00:00"),
        ],
    )
    return deployment


def _run_digest_ticks(deployment: Deployment, urls: str) -> None:
    with dg.instance_for_test() as instance:
        assert deployment.materialize(_yesterday(), instance).success
        notifier = Notifier(instance, deployment, urls)
        for _ in range(3):
            notifier.send_tick()


def test_the_digest_comes_once_for_a_day_with_rejects_and_not_for_a_clean_day(
    tmp_path: Path,
) -> None:
    day = _yesterday()
    with webhook_server() as hook:
        urls = f"stewards={hook.url('stewards')} engineers={hook.url('engineers')}"
        clean = _digest_deployment(tmp_path / "clean", rejected=False)
        _run_digest_ticks(clean, urls)
        assert hook.received == []
        assert {row["status"] for row in outbox(clean)} == {"skipped"}

        rejects = _digest_deployment(tmp_path / "rejects", rejected=True)
        _run_digest_ticks(rejects, urls)

    by_path = {post.path: _json(post) for post in hook.received}
    assert len(hook.received) == 2 and set(by_path) == {"/stewards", "/engineers"}
    stewards, engineers = by_path["/stewards"], by_path["/engineers"]
    assert stewards["title"] == f"subsync digest {day}: 1 rejected row"
    assert engineers["title"] == f"subsync digest {day}: 2 check(s) warned or failed"
    report = (rejects.reports / day / "report.html").resolve()
    for line in (
        "rows read: 2, rejected: 1 (50.0%)",
        "member match rate: 50.0%",
        "unknown_member: 1 — The id is not in Personify",
        f"report: {report.as_uri()}",
        "rejected rows (CSV, whole emails: personal data): "
        f"{(report.parent / 'rejected_rows.csv').as_uri()}",
    ):
        assert line in stewards["message"]
    assert "Runs, checks and landing" not in stewards["message"]
    # The engineers' part: the run succeeded, but two quality checks warned.
    assert "latest SUCCESS" in engineers["message"] and f"{UI}/runs/" in engineers["message"]
    assert "reject_rate on rejected_tracking_records: WARN" in engineers["message"]
    assert "CUS_OPT_IN: 1 inserted" in engineers["message"]
    assert "Rejected rows and member matches" not in engineers["message"]


def test_a_channel_that_is_down_is_tried_again_on_the_next_tick(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(notify={"channels": {"engineers": {"digest": "off"}}})
    port = free_port()  # nothing listens yet: the connection is refused
    with dg.instance_for_test() as instance:
        notifier = Notifier(instance, deployment, f"engineers=json://127.0.0.1:{port}/hook")
        notifier.failure_tick()
        assert not dg.materialize([leaky_step], instance=instance, raise_on_error=False).success
        notifier.failure_tick()
        assert notifier.send_tick() == "0 notice(s) sent, 1 waiting for a channel to answer"
        [row] = outbox(deployment)
        assert row["status"] == "pending" and "connection error" in row["last_error"].lower()
        with webhook_server(port) as hook:
            assert notifier.send_tick().startswith("1 notice(s) sent")
            notifier.send_tick()
    assert len(hook.received) == 1
    assert "leaky_step" in _json(hook.received[0])["title"]
    assert [row["status"] for row in outbox(deployment)] == ["sent"]


@dg.asset
def quick_step() -> None:
    """A run of the usual length."""


released = threading.Event()


@dg.asset
def stuck_step() -> None:
    """Stays STARTED until the test lets it go."""
    released.wait(timeout=60)


def test_a_run_started_far_beyond_its_usual_time_gets_one_notice(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(
        notify={
            "overdue_factor": 3,
            "overdue_minimum_minutes": 0,
            "channels": {"engineers": {"digest": "off"}},
        }
    )
    released.clear()
    with webhook_server() as hook, dg.instance_for_test() as instance:
        notifier = Notifier(instance, deployment, f"engineers={hook.url()}")
        assert dg.materialize([quick_step], instance=instance).success  # the usual time
        quick = instance.get_run_records(limit=1)[0]
        usual = (quick.end_time or 0) - (quick.start_time or 0)
        runner = threading.Thread(
            target=lambda: dg.materialize([stuck_step], instance=instance, tags={"t": "stuck"})
        )
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while not instance.get_run_records(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            ):
                assert time.monotonic() < deadline, "the stuck run never started"
                time.sleep(0.05)
            time.sleep(max(1.0, 4 * usual))
            notifier.send_tick()
            notifier.send_tick()
        finally:
            released.set()
            runner.join()
        notifier.send_tick()
    assert len(hook.received) == 1
    posted = _json(hook.received[0])
    assert posted["title"] == "subsync: the run for __ephemeral_asset_job__ is still running"
    assert "far longer than usual" in posted["message"]


def test_notify_test_says_which_channel_worked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(notify={"channels": {"engineers": {}, "stewards": {}, "unused": {}}})
    down = free_port()
    with webhook_server() as hook:
        urls = f"engineers={hook.url()} stewards=json://127.0.0.1:{down}/x"
        monkeypatch.setenv("SUBSYNC_CONFIG", str(deployment.config_path))
        monkeypatch.setenv("SUBSYNC_NOTIFY_URLS", urls)
        assert main(["notify-test"]) == 1
    output = capsys.readouterr().out
    assert "[warn] channel unused (notify.channels) has no URL" in output
    assert f"[ok]   engineers: json://127.0.0.1:{hook.port}/hook" in output
    assert f"[FAIL] stewards: json://127.0.0.1:{down}/x" in output
    assert [_json(post)["title"] for post in hook.received] == ["subsync: test notice"]
