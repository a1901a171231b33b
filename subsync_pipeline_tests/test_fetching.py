"""tracking_download_sensor, fetch_tracking_logs and the fetch checks against a real FTPS server
(pyftpdlib, TLS 1.2, passive mode, a throwaway self-signed certificate) and a real Dagster
instance: what lands, what is recorded, what is refused and what an operator is told.
"""

from __future__ import annotations

import csv
import hashlib
import io
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.checks import FETCHED_BEFORE_ARCHIVE, FETCHED_RECENTLY
from subsync_pipeline.core.ftps import (
    CertificateRefused,
    LoginRefused,
    PassiveConnectionFailed,
    RemoteFolderMissing,
    TransientError,
)
from subsync_pipeline.core.tracking_log import ALL_COLUMNS
from subsync_pipeline.fetching import (
    NOT_CONFIGURED,
    fetch_tracking_logs,
    real_magnet_fetch_checks,
    tracking_download_sensor,
)
from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.resources import LandingFolderResource, default_resources
from subsync_pipeline.resources.real_magnet import RealMagnetFTPSResource
from subsync_pipeline.sensors import tracking_upload_sensor
from subsync_pipeline_tests.certificates import Certificate, make_certificate
from subsync_pipeline_tests.ftps_server import (
    PASSWORD,
    USER,
    WRITING_COMMANDS,
    FTPSServer,
)
from subsync_pipeline_tests.harness import Deployment, console_output, deploy, event
from subsync_pipeline_tests.pg_server import free_port


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def tracking_csv(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ALL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def day_file(day: str, *members: str) -> bytes:
    return tracking_csv(
        [event(f"{day}-{m}", m, "subscribe", "api", f"{day}T09:00:00") for m in members]
    )


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(tmp_path: Path, certificate: Certificate) -> Iterator[FTPSServer]:
    started = FTPSServer(tmp_path / "ftps", certificate).start()
    try:
        yield started
    finally:
        started.stop()


@dataclass
class Fetcher:
    """Evaluates the download sensor tick after tick, carrying its cursor as the daemon does."""

    deployment: Deployment
    instance: dg.DagsterInstance
    ftps: RealMagnetFTPSResource
    cursor: str | None = None
    results: list[dg.SensorResult] = field(default_factory=list)

    def resources(self) -> dict[str, Any]:
        return {**self.deployment.resources(), "real_magnet_ftps": self.ftps}

    def tick(self) -> dg.SensorResult:
        # A context manager: the state database's engine is disposed when the tick ends.
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources()
        ) as context:
            result = tracking_download_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        self.results.append(result)
        return result

    def landed(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.deployment.landing.iterdir()}

    def recorded(self) -> list[dict[str, Any]]:
        frame = self.deployment.state(
            "SELECT remote_name, remote_size, local_name, content_hash FROM fetched_files "
            "ORDER BY fetch_id"
        )
        return frame.to_dict("records")


def resource(
    server: FTPSServer, certificate: Certificate, **changes: Any
) -> RealMagnetFTPSResource:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": USER,
        "password": PASSWORD,
        "fingerprint": certificate.fingerprint,
        "timeout_seconds": 5,
        "attempts": 1,
        "backoff_seconds": 0.01,
    }
    return RealMagnetFTPSResource(**{**settings, **changes})


@pytest.fixture
def fetcher(tmp_path: Path, server: FTPSServer, certificate: Certificate) -> Iterator[Fetcher]:
    with dg.instance_for_test() as instance:
        yield Fetcher(deploy(tmp_path / "site"), instance, resource(server, certificate))


def message(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def checks(result: dg.SensorResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)}


def visible(landed: Mapping[str, bytes]) -> dict[str, bytes]:
    """What the upload sensor would see: the landing folder without hidden files."""
    return {name: data for name, data in landed.items() if not name.startswith(".")}


def test_first_fetch_then_nothing_then_the_new_and_the_changed(
    fetcher: Fetcher, server: FTPSServer
) -> None:
    yesterday = now() - timedelta(days=1)
    files = {
        "tracking_2026-11-18.csv": day_file("2026-11-18", "000100", "000101"),
        "tracking_2026-11-19.csv": day_file("2026-11-19", "000102"),
        "tracking_2026-11-20.csv.gz": b"\x1f\x8b not really gzip, fetched as bytes",
    }
    for n, (name, data) in enumerate(files.items()):
        server.put(name, data, yesterday + timedelta(minutes=n))
    server.put("README.txt", b"not a tracking log")
    (server.folder / "archive").mkdir()
    untouched = server.snapshot()

    first = fetcher.tick()
    assert message(first).startswith("fetched 3 file(s): tracking_2026-11-18.csv, ")
    assert "0 file(s) waiting on the server" in message(first)
    assert visible(fetcher.landed()) == files
    assert [r["local_name"] for r in fetcher.recorded()] == list(files)
    assert [r["content_hash"] for r in fetcher.recorded()] == [
        hashlib.sha256(data).hexdigest() for data in files.values()
    ]
    assert checks(first)[FETCHED_RECENTLY].passed

    landed = {p.name: p.stat().st_mtime_ns for p in fetcher.deployment.landing.iterdir()}
    second = fetcher.tick()
    assert message(second).startswith("nothing new on Real Magnet's server (3 tracking file(s)")
    assert {p.name: p.stat().st_mtime_ns for p in fetcher.deployment.landing.iterdir()} == landed
    assert len(fetcher.recorded()) == 3
    assert second.asset_events == []  # nothing changed: nothing reported again
    assert server.snapshot() == untouched

    changed = day_file("2026-11-19", "000102", "000103")
    server.put("tracking_2026-11-19.csv", changed, yesterday + timedelta(hours=5))
    server.put("tracking_2026-11-21.csv", day_file("2026-11-21", "000104"), yesterday)
    untouched = server.snapshot()
    third = fetcher.tick()
    stamp = f"{yesterday + timedelta(hours=5):%Y%m%dT%H%M%S}"
    assert message(third).startswith(
        f"fetched 2 file(s): tracking_2026-11-21.csv, tracking_2026-11-19.{stamp}.csv;"
    )
    assert visible(fetcher.landed()) == {
        **files,
        "tracking_2026-11-21.csv": day_file("2026-11-21", "000104"),
        f"tracking_2026-11-19.{stamp}.csv": changed,  # the first version stays as it was
    }
    assert fetcher.tick().skip_reason is not None and len(fetcher.recorded()) == 5

    # Nothing on the server was changed by subsync, nor was anything asked that would.
    assert server.snapshot() == untouched
    assert not WRITING_COMMANDS.intersection(server.faults.commands)


@pytest.mark.postgres
def test_the_fetch_record_lives_in_a_postgresql_state_database(
    tmp_path: Path, server: FTPSServer, certificate: Certificate, postgres_url: str
) -> None:
    server.put("a.csv", day_file("2026-11-20", "000100"))
    with dg.instance_for_test() as instance:
        fetcher = Fetcher(
            deploy(tmp_path / "site", state_url=postgres_url),
            instance,
            resource(server, certificate),
        )
        assert message(fetcher.tick()).startswith("fetched 1 file(s): a.csv")
        assert message(fetcher.tick()).startswith("nothing new")
    assert [r["local_name"] for r in fetcher.recorded()] == ["a.csv"]


def test_a_dropped_connection_leaves_nothing_and_the_next_tick_completes_it(
    fetcher: Fetcher, server: FTPSServer
) -> None:
    earlier = now() - timedelta(hours=2)
    small = day_file("2026-11-19", "000100")
    big = tracking_csv(
        [event(f"E{n}", "000100", "subscribe", "api", "2026-11-20T09:00:00") for n in range(5000)]
    )
    server.put("a_small.csv", small, earlier)
    server.put("b_big.csv", big, earlier + timedelta(minutes=1))
    server.faults.cut_after["b_big.csv"] = len(big) // 3

    with pytest.raises(TransientError, match="426"):
        fetcher.tick()
    assert fetcher.landed().keys() <= {"a_small.csv", ".subsync-fetch.lock"}
    assert [r["local_name"] for r in fetcher.recorded()] == ["a_small.csv"]

    assert message(fetcher.tick()).startswith("fetched 1 file(s): b_big.csv")
    assert fetcher.landed()["b_big.csv"] == big
    assert not [name for name in fetcher.landed() if name.endswith(".part")]


def test_a_dropped_connection_is_retried_with_backoff_in_the_same_tick(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate
) -> None:
    data = tracking_csv(
        [event(f"E{n}", "000100", "subscribe", "api", "2026-11-20T09:00:00") for n in range(5000)]
    )
    server.put("big.csv", data)
    server.faults.cut_after["big.csv"] = len(data) // 2
    fetcher.ftps = resource(server, certificate, attempts=3)
    assert message(fetcher.tick()).startswith("fetched 1 file(s): big.csv")
    assert fetcher.landed()["big.csv"] == data
    assert server.faults.commands.count("RETR") == 2


def test_a_wrong_fingerprint_is_refused_before_the_password_is_sent(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate
) -> None:
    server.put("a.csv", day_file("2026-11-20", "000100"))
    wrong = "AB:" * 31 + "CD"
    fetcher.ftps = resource(server, certificate, fingerprint=wrong)
    with pytest.raises(CertificateRefused) as refused:
        fetcher.tick()
    text = str(refused.value)
    assert f"seen SHA-256 {certificate.fingerprint}, expected {wrong}" in text
    assert "SUBSYNC_FTPS_FINGERPRINT" in text
    assert "PASS" not in server.faults.commands and "USER" not in server.faults.commands
    assert visible(fetcher.landed()) == {}

    # No pin at all: refused too, telling the fingerprint to confirm with Real Magnet.
    fetcher.ftps = resource(server, certificate, fingerprint="")
    with pytest.raises(CertificateRefused, match=f"presented SHA-256 {certificate.fingerprint}"):
        fetcher.tick()


def test_a_ca_file_trusts_the_server_it_signs_and_no_other(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate, tmp_path: Path
) -> None:
    server.put("a.csv", day_file("2026-11-20", "000100"))
    other = make_certificate(tmp_path / "other")
    fetcher.ftps = resource(server, certificate, fingerprint="", ca_file=str(other.cert_only))
    with pytest.raises(CertificateRefused, match="not trusted by SUBSYNC_FTPS_CA_FILE"):
        fetcher.tick()
    fetcher.ftps = resource(server, certificate, fingerprint="", ca_file=str(certificate.cert_only))
    assert message(fetcher.tick()).startswith("fetched 1 file(s): a.csv")


def test_a_wrong_password_is_refused_with_the_fix(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate
) -> None:
    fetcher.ftps = resource(server, certificate, password="not-the-password")
    with pytest.raises(LoginRefused) as refused:
        fetcher.tick()
    text = str(refused.value)
    assert f"refused the login of user '{USER}'" in text
    assert "SUBSYNC_FTPS_PASSWORD" in text and "allow-list" in text
    assert "not-the-password" not in text


def test_a_missing_folder_and_a_dead_passive_port_name_the_fix(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate
) -> None:
    fetcher.ftps = resource(server, certificate, folder="Trackings")
    with pytest.raises(RemoteFolderMissing, match=r"'Trackings' is not on 127\.0\.0\.1"):
        fetcher.tick()
    server.faults.dead_passive_port = free_port()
    fetcher.ftps = resource(server, certificate, attempts=2)
    with pytest.raises(PassiveConnectionFailed) as failed:
        fetcher.tick()
    text = str(failed.value)
    assert "passive data connection" in text and "firewall" in text and "allow-list" in text
    assert "gave up after 2 attempt(s)" in text


def test_a_server_without_mlsd_is_listed_with_nlst(fetcher: Fetcher, server: FTPSServer) -> None:
    server.faults.no_mlsd = True
    data = day_file("2026-11-20", "000100")
    server.put("a.csv", data, now() - timedelta(hours=1))
    assert message(fetcher.tick()).startswith("fetched 1 file(s): a.csv")
    assert fetcher.landed()["a.csv"] == data
    assert "NLST" in server.faults.commands and "MDTM" in server.faults.commands
    assert message(fetcher.tick()).startswith("nothing new")


def test_not_configured_skips_with_the_reason(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        fetcher = Fetcher(deploy(tmp_path / "site"), instance, RealMagnetFTPSResource())
        assert message(fetcher.tick()) == NOT_CONFIGURED
    assert "SUBSYNC_FTPS_HOST is not set" in NOT_CONFIGURED


def test_staleness_fails_on_an_old_newest_file_and_warns_near_the_archive(
    fetcher: Fetcher, server: FTPSServer
) -> None:
    server.put("old.csv", day_file("2026-11-10", "000100"), now() - timedelta(hours=40))
    evaluations = checks(fetcher.tick())
    fresh = evaluations[FETCHED_RECENTLY]
    assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.ERROR
    assert fresh.metadata["age_hours"].value == pytest.approx(40, abs=0.1)
    assert "limit 36 h" in (fresh.description or "")
    assert evaluations[FETCHED_BEFORE_ARCHIVE].passed

    # A file Real Magnet archives in three days, that the server will not send.
    modified = now() - timedelta(days=27)
    server.put("stuck.csv", day_file("2026-11-01", "000100"), modified)
    server.faults.refuse.add("stuck.csv")
    server.put("new.csv", day_file("2026-11-20", "000101"), now() - timedelta(hours=1))
    result = fetcher.tick()
    assert "1 file(s) waiting on the server" in message(result)
    assert "1 refused by the server: stuck.csv" in message(result)
    evaluations = checks(result)
    assert evaluations[FETCHED_RECENTLY].passed
    archive = evaluations[FETCHED_BEFORE_ARCHIVE]
    assert not archive.passed and archive.severity == dg.AssetCheckSeverity.WARN
    archived = (modified + timedelta(days=30)).date().isoformat()
    assert f"stuck.csv: modified {modified:%Y-%m-%d %H:%M} UTC, archived {archived}" in (
        archive.description or ""
    )


def fetch_definitions(fetcher: Fetcher) -> dg.Definitions:
    """The fetch job, and a job of the fetch checks alone: what "Execute" in the UI runs."""
    return dg.Definitions(
        assets=sync_assets,
        asset_checks=[real_magnet_fetch_checks],
        jobs=[
            fetch_tracking_logs,
            dg.define_asset_job(
                "checks", selection=dg.AssetSelection.checks(real_magnet_fetch_checks)
            ),
        ],
        resources=fetcher.resources(),
    )


def test_fetch_tracking_logs_job_and_the_checks_from_the_ui(
    fetcher: Fetcher, server: FTPSServer
) -> None:
    server.put("a.csv", day_file("2026-11-20", "000100"), now() - timedelta(hours=1))
    server.put("b.csv", day_file("2026-11-21", "000101"), now() - timedelta(days=26))
    server.faults.refuse.add("b.csv")
    defs = fetch_definitions(fetcher)
    run = defs.resolve_job_def("fetch_tracking_logs").execute_in_process(instance=fetcher.instance)
    assert run.success
    assert visible(fetcher.landed()) == {"a.csv": day_file("2026-11-20", "000100")}
    logged = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert logged == {FETCHED_RECENTLY: True, FETCHED_BEFORE_ARCHIVE: False}

    executed = defs.resolve_job_def("checks").execute_in_process(instance=fetcher.instance)
    assert {e.check_name: e.passed for e in executed.get_asset_check_evaluations()} == logged
    assert visible(fetcher.landed()) == {"a.csv": day_file("2026-11-20", "000100")}

    fetcher.ftps = RealMagnetFTPSResource()
    unset = fetch_definitions(fetcher)
    skipped = unset.resolve_job_def("checks").execute_in_process(instance=fetcher.instance)
    assert skipped.success and skipped.get_asset_check_evaluations() == []
    failed = unset.resolve_job_def("fetch_tracking_logs").execute_in_process(
        instance=fetcher.instance, raise_on_error=False
    )
    assert not failed.success
    assert NOT_CONFIGURED in str(failed.failure_data_for_node("fetch_from_real_magnet"))


def test_end_to_end_from_the_ftps_server_to_personify(fetcher: Fetcher, server: FTPSServer) -> None:
    """Files on the server -> download sensor -> upload sensor -> daily_sync_job -> Personify."""
    server.put("rm_2026-11-19.csv", day_file("2026-11-19", "000100", "000101"), now())
    server.put("rm_2026-11-20.csv", day_file("2026-11-20", "000102"), now())
    assert message(fetcher.tick()).startswith("fetched 2 file(s)")

    deployment, instance = fetcher.deployment, fetcher.instance
    job = dg.Definitions(
        assets=sync_assets,
        asset_checks=[real_magnet_fetch_checks],
        jobs=[daily_sync_job],
        resources=fetcher.resources(),
    ).resolve_job_def("daily_sync_job")
    landing = {"landing": LandingFolderResource(path=str(deployment.landing))}
    cursor: str | None = None
    requests: list[dg.RunRequest] = []
    for _ in range(2):  # the upload sensor reads a file once it is unchanged between two ticks
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=landing)
        result = tracking_upload_sensor(context)
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor
        requests += result.run_requests or []
    assert sorted(r.partition_key or "" for r in requests) == ["2026-11-19", "2026-11-20"]
    for request in requests:
        run = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, "dagster/run_key": request.run_key or ""},
        )
        assert run.success

    opt_in = deployment.opt_in()
    subscribed = opt_in.loc[opt_in["OPT_IN_FLAG"] == "Y", "MASTER_CUSTOMER_ID"]
    assert sorted(subscribed) == ["000100", "000101", "000102"]

    # Next ticks: nothing to fetch, and nothing runs again.
    assert message(fetcher.tick()).startswith("nothing new")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=landing)
    again = tracking_upload_sensor(context)
    assert isinstance(again, dg.SensorResult) and not again.run_requests


def test_no_password_in_any_log_metadata_or_error(
    fetcher: Fetcher, server: FTPSServer, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As deployed: the SUBSYNC_FTPS_* variables reach the resource as EnvVar. A good tick, a
    refused password, a wrong fingerprint and the job's runs are captured whole; the password
    is in none of them."""
    deployment, instance = fetcher.deployment, fetcher.instance
    environment = {
        "SUBSYNC_CONFIG": str(deployment.config_path),
        "SUBSYNC_LANDING_DIR": str(deployment.landing),
        "SUBSYNC_DB_URL": deployment.state_url,
        "PERSONIFY_DB_URL": deployment.personify_url,
        "SUBSYNC_REPORTS_DIR": str(deployment.reports),
        "SUBSYNC_FTPS_HOST": "127.0.0.1",
        "SUBSYNC_FTPS_PORT": str(server.port),
        "SUBSYNC_FTPS_USER": USER,
        "SUBSYNC_FTPS_PASSWORD": PASSWORD,
        "SUBSYNC_FTPS_FINGERPRINT": certificate.fingerprint,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    resources = default_resources()
    defs = dg.Definitions(jobs=[fetch_tracking_logs], resources=resources)
    server.put("a.csv", day_file("2026-11-20", "000100"))
    texts: dict[str, str] = {}

    def tick(name: str) -> None:
        try:
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                texts[name] = repr(tracking_download_sensor(context))
        except Exception as error:
            texts[name] = "".join(traceback.format_exception(error))

    def run(name: str) -> None:
        result = defs.resolve_job_def("fetch_tracking_logs").execute_in_process(
            instance=instance, raise_on_error=False
        )
        logs = instance.all_logs(result.run_id)
        texts[name] = "\n".join([repr(instance.get_run_by_id(result.run_id)), *map(repr, logs)])

    console = deployment.root / "console.log"
    with console_output(console):
        tick("good tick")
        server.put("b.csv", day_file("2026-11-21", "000100"))
        run("good run")
        monkeypatch.setenv("SUBSYNC_FTPS_PASSWORD", f"no{PASSWORD}")
        tick("wrong password tick")
        run("wrong password run")
        monkeypatch.setenv("SUBSYNC_FTPS_PASSWORD", PASSWORD)
        monkeypatch.setenv("SUBSYNC_FTPS_FINGERPRINT", "AB" * 32)
        tick("wrong fingerprint tick")
    texts["console"] = console.read_text(errors="replace")
    texts["state database"] = repr(deployment.state("SELECT * FROM fetched_files").to_dict())

    assert "fetched 1 file(s): a.csv" in texts["good tick"]
    assert "b.csv" in texts["good run"] and "ASSET_CHECK_EVALUATION" in texts["good run"]
    for name in ("wrong password tick", "wrong password run"):
        assert f"refused the login of user '{USER}'" in texts[name], name
    assert "does not match the pinned one" in texts["wrong fingerprint tick"]
    leaks = [name for name, text in texts.items() if PASSWORD in text]
    assert not leaks, f"the password appears in: {leaks}"
