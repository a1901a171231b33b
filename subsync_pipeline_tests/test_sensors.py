"""tracking_upload_sensor against a real Dagster instance and real files."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from subsync_pipeline.core.landing_watch import WatchCursor
from subsync_pipeline.resources import LandingFolderResource
from subsync_pipeline.sensors import tracking_upload_sensor
from subsync_pipeline_tests.harness import Deployment, event

HEADER = ",".join(
    [
        "event_id",
        "email",
        "custom_member_id",
        "event_type",
        "scope_type",
        "scope_id",
        "scope_name",
        "source",
        "force_optin",
        "occurred_at",
        "timestamp_subscribed",
    ]
)


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance, landing: Path) -> None:
        self.instance = instance
        self.landing = landing
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"landing": LandingFolderResource(path=str(self.landing))},
        )
        result = tracking_upload_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def settle(self) -> list[dg.RunRequest]:
        """Two ticks: the first sees new files, the second finds them unchanged."""
        first = self.tick()
        second = self.tick()
        return list(first.run_requests or []) + list(second.run_requests or [])


@pytest.fixture
def ticker(tmp_path: Path) -> Iterator[Ticker]:
    landing = tmp_path / "landing"
    landing.mkdir()
    with dg.instance_for_test() as instance:
        yield Ticker(instance, landing)


def land(ticker: Ticker, name: str, rows: list[dict[str, str]]) -> Path:
    return Deployment(root=ticker.landing.parent, personify_url="").land(name, rows)


def days(requests: list[dg.RunRequest]) -> list[str]:
    return sorted(r.partition_key for r in requests if r.partition_key)


def test_a_half_written_file_is_not_read_until_complete(ticker: Ticker) -> None:
    path = ticker.landing / "upload.csv"
    path.write_text(HEADER + "\nE1,a@x.org,000100,subscribe,group,1201,N,api,,2026-11-20T09:00")
    assert ticker.tick().run_requests == []
    time.sleep(0.01)
    with path.open("a") as handle:  # still being written
        handle.write(":00,\nE2,b@x.org,000101,subscribe,group,1201,N,api,,2026-11-20T10:00:00,\n")
    result = ticker.tick()
    assert result.run_requests == []
    assert "still being written" in (result.skip_reason.skip_message if result.skip_reason else "")
    requests = ticker.tick().run_requests or []
    assert days(requests) == ["2026-11-20"]


def test_one_file_with_three_days_gives_three_runs(ticker: Ticker) -> None:
    land(
        ticker,
        "three.csv",
        [
            event("E1", "000100", "subscribe", "api", "2026-11-18T09:00:00"),
            event("E2", "000100", "subscribe", "api", "2026-11-19T09:00:00"),
            event(
                "E3", "000100", "subscribe", "api", "2026-11-20T23:30:00"
            ),  # still the 20th locally
        ],
    )
    requests = ticker.settle()
    assert days(requests) == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert len({r.run_key for r in requests}) == 3
    assert ticker.settle() == []  # nothing new: nothing asked


@dg.asset
def stand_in() -> None:
    """A trivial asset whose run records a run key, as a run the daemon launched would."""


def launched(ticker: Ticker, requests: list[dg.RunRequest]) -> None:
    for request in requests:
        dg.materialize(
            [stand_in], instance=ticker.instance, tags={"dagster/run_key": request.run_key or ""}
        )


def test_same_content_never_runs_twice_and_changed_content_does(ticker: Ticker) -> None:
    rows = [event("E1", "000100", "subscribe", "api", "2026-11-20T09:00:00")]
    first = land(ticker, "a.csv", rows)
    requests = ticker.settle()
    keys = {r.run_key for r in requests}
    assert len(keys) == 1
    launched(ticker, requests)

    # Re-uploaded under another name, and touched: nothing to run.
    shutil.copy(first, ticker.landing / "a_again.csv")
    os.utime(first)
    assert ticker.settle() == []

    land(ticker, "a.csv", [*rows, event("E2", "000101", "subscribe", "api", "2026-11-20T10:00")])
    changed = ticker.settle()
    assert days(changed) == ["2026-11-20"]
    assert {r.run_key for r in changed}.isdisjoint(keys)


def test_links_out_of_the_folder_and_partial_names_are_ignored(
    ticker: Ticker, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text(HEADER + "\nE1,a@x.org,000100,subscribe,group,1201,N,api,,2026-11-20\n")
    (ticker.landing / "link.csv").symlink_to(outside)
    for name in (".hidden.csv", "upload.csv.part", "upload.csv.tmp", "notes.txt"):
        shutil.copy(outside, ticker.landing / name)
    assert ticker.settle() == []


def test_the_cursor_stays_small_as_the_folder_grows(ticker: Ticker) -> None:
    for n in range(300):
        land(
            ticker,
            f"f{n:03d}.csv",
            [event(f"E{n}", "000100", "subscribe", "api", "2026-11-20T09:00:00")],
        )
    first = ticker.tick()
    assert first.run_requests == []
    requests = []
    for _ in range(3):  # at most 200 files are read per tick
        requests += ticker.tick().run_requests or []
    assert len(requests) == 300
    assert len(ticker.cursor or "") < 100
    assert WatchCursor.from_json(ticker.cursor).pending == {}


def test_ten_thousand_handled_files_are_scanned_in_one_quick_tick(ticker: Ticker) -> None:
    row = HEADER + "\nE1,a@x.org,000100,subscribe,group,1201,N,api,,2026-11-20T09:00:00\n"
    for n in range(10_000):
        (ticker.landing / f"old{n:05d}.csv").write_text(row)
    # As after the daemon has handled them all: the watermark is past their ctime.
    ticker.cursor = WatchCursor(watermark_ns=time.time_ns() + 1).to_json()
    time.sleep(0.01)
    (ticker.landing / "new.csv").write_text(row.replace("E1", "E2"))
    started = time.monotonic()
    ticker.tick()
    requests = ticker.tick().run_requests or []
    elapsed = time.monotonic() - started
    assert [r.tags["subsync/trigger"] for r in requests] == ["upload:new.csv"]
    # Dagster stops a sensor evaluation after 60 s: "well inside" is half of that for two ticks.
    assert elapsed < 30, f"two ticks over 10,000 files took {elapsed:.1f}s"
    assert len(ticker.cursor or "") < 100


def test_missing_landing_folder_skips_with_a_reason(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = Ticker(instance, tmp_path / "nowhere").tick()
    assert "does not exist" in (result.skip_reason.skip_message if result.skip_reason else "")
