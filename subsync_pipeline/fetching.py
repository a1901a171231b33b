"""Fetching the tracking logs from Real Magnet's FTPS server into the landing folder: the download
sensor, the `fetch_tracking_logs` job for a pull from the UI, and the checks that say when
fetching falls behind. What lands is then taken by tracking_upload_sensor, as a file dropped by
hand would be.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
from sqlalchemy.engine import Engine

from subsync_pipeline.checks import FETCHED_BEFORE_ARCHIVE, FETCHED_RECENTLY, fetch_checks
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.fetch import FetchHealth, FetchOutcome, fetch, health, unfetched
from subsync_pipeline.core.ftps import FTPSError, RemoteFile
from subsync_pipeline.resources import (
    LandingFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)
from subsync_pipeline.resources.real_magnet import HOST, RealMagnetFTPSResource

NOT_CONFIGURED = (
    f"{HOST} is not set, so nothing is fetched from Real Magnet; files dropped into the landing "
    "folder by hand are still synced by tracking_upload_sensor"
)
# Dagster stops a sensor evaluation after 60 s: no download starts after this many; the rest
# wait for the next tick (or a fetch_tracking_logs run, which has no such limit).
TICK_BUDGET_SECONDS = 40
RAW = dg.AssetKey("raw_tracking_log")


@dataclass(frozen=True)
class Verdict:
    """One check's outcome, reported by the sensor, the job and the check alike."""

    check_name: str
    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: dict[str, str | float | int]

    def result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=self.check_name,
            asset_key=RAW,
            passed=self.passed,
            severity=self.severity,
            description=self.description,
            metadata=self.metadata,
        )

    def evaluation(self) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=RAW,
            check_name=self.check_name,
            passed=self.passed,
            severity=self.severity,
            description=self.description,
            metadata=self.metadata,
        )


def _archive_line(state: FetchHealth, remote: RemoteFile) -> str:
    modified, archived = remote.modified, state.archived_at(remote)
    return f"{remote.name}: modified {modified:%Y-%m-%d %H:%M} UTC, archived {archived:%Y-%m-%d}"


def verdicts(state: FetchHealth) -> list[Verdict]:
    limit = state.max_age.total_seconds() / 3600
    if state.age is None:
        fresh = "no file has been fetched from Real Magnet yet"
        age: dict[str, str | float | int] = {}
    else:
        hours = round(state.age.total_seconds() / 3600, 1)
        fresh = f"the newest fetched file was modified {hours} h ago (limit {limit:g} h)"
        age = {"newest_modified_utc": f"{state.newest:%Y-%m-%d %H:%M}", "age_hours": hours}
    near = [_archive_line(state, remote) for remote in state.near_archive]
    archive = (
        f"{len(near)} file(s) not fetched, archived by Real Magnet within 5 days: "
        + "; ".join(near)
        if near
        else "every file near Real Magnet's 30-day archive has been fetched"
    )
    return [
        Verdict(
            FETCHED_RECENTLY,
            not state.stale,
            dg.AssetCheckSeverity.ERROR,
            fresh,
            {**age, "max_age_hours": limit},
        ),
        Verdict(
            FETCHED_BEFORE_ARCHIVE,
            not near,
            dg.AssetCheckSeverity.WARN,
            archive,
            {"files_near_archive": len(near)},
        ),
    ]


def _judge(engine: Engine, config: SubsyncConfig, waiting: list[RemoteFile]) -> list[Verdict]:
    with engine.connect() as conn:
        state = health(conn, waiting, timedelta(hours=config.quality.max_fetch_age_hours))
    return verdicts(state)


def _fetch(
    ftps: RealMagnetFTPSResource,
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
    deadline: float | None,
) -> FetchOutcome:
    with ftps.client() as client:
        return fetch(client, state_db.engine, landing.folder, deadline)


@dg.sensor(
    name="tracking_download_sensor",
    minimum_interval_seconds=300,
    description=(
        "Fetches new tracking logs from Real Magnet's FTPS server into SUBSYNC_LANDING_DIR "
        "(tracking_upload_sensor then runs them) and reports whether fetching keeps up. "
        f"Skips when {HOST} is not set."
    ),
)
def tracking_download_sensor(
    context: dg.SensorEvaluationContext,
    real_magnet_ftps: RealMagnetFTPSResource,
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
    subsync_config: SubsyncConfigResource,
) -> dg.SensorResult:
    if not real_magnet_ftps.configured:
        return dg.SensorResult(skip_reason=NOT_CONFIGURED)
    if not landing.folder.is_dir():
        return dg.SensorResult(skip_reason=f"landing folder {landing.folder} does not exist")
    outcome = _fetch(real_magnet_ftps, landing, state_db, time.monotonic() + TICK_BUDGET_SECONDS)
    if outcome.busy:
        return dg.SensorResult(skip_reason=outcome.summary())
    judged = _judge(state_db.engine, subsync_config.load(), outcome.waiting)
    cursor = json.dumps({verdict.check_name: verdict.passed for verdict in judged})
    # Reported when something changed, not every five minutes.
    report = bool(outcome.fetched) or cursor != context.cursor
    return dg.SensorResult(
        skip_reason=outcome.summary(),
        cursor=cursor,
        asset_events=[verdict.evaluation() for verdict in judged] if report else [],
    )


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Fetches every new tracking log from Real Magnet's FTPS server into "
    "SUBSYNC_LANDING_DIR, with no time limit, and reports the fetch checks.",
)
def fetch_from_real_magnet(
    context: dg.OpExecutionContext,
    real_magnet_ftps: RealMagnetFTPSResource,
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
    subsync_config: SubsyncConfigResource,
) -> dg.Output[None]:
    if not real_magnet_ftps.configured:
        raise dg.Failure(description=NOT_CONFIGURED)
    try:
        outcome = _fetch(real_magnet_ftps, landing, state_db, deadline=None)
    except FTPSError as error:
        raise dg.Failure(description=str(error)) from None
    if outcome.busy:
        raise dg.Failure(description=outcome.summary())
    context.log.info(outcome.summary())
    for verdict in _judge(state_db.engine, subsync_config.load(), outcome.waiting):
        # Dagster stores a check evaluation logged by an op (its type hints do not list it).
        context.log_event(verdict.evaluation())  # type: ignore[arg-type]
    return dg.Output(
        None,
        metadata={
            "fetched": [local for _, local in outcome.fetched],
            "waiting": [remote.name for remote in outcome.waiting],
            "refused": outcome.refused,
        },
    )


@dg.job(
    name="fetch_tracking_logs",
    description="Fetch the tracking logs waiting on Real Magnet's FTPS server now, as "
    "tracking_download_sensor does every five minutes.",
)
def fetch_tracking_logs() -> None:
    fetch_from_real_magnet()


@dg.multi_asset_check(
    specs=fetch_checks,
    can_subset=True,
    name="real_magnet_fetch_checks",
    description="Lists Real Magnet's FTPS server (fetches nothing) and judges whether fetching "
    f"keeps up; reports nothing when {HOST} is not set.",
)
def real_magnet_fetch_checks(
    context: dg.AssetCheckExecutionContext,
    real_magnet_ftps: RealMagnetFTPSResource,
    state_db: StateDatabaseResource,
    subsync_config: SubsyncConfigResource,
) -> Iterator[dg.AssetCheckResult]:
    if not real_magnet_ftps.configured:
        context.log.info(NOT_CONFIGURED)
        return
    with real_magnet_ftps.client() as client:
        listing = client.listing()
    with state_db.engine.connect() as conn:
        waiting = unfetched(conn, listing)
    for verdict in _judge(state_db.engine, subsync_config.load(), waiting):
        yield verdict.result()
