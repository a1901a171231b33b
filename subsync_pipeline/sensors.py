"""The upload sensor: a new or changed tracking file runs each day it holds, once complete."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from subsync_pipeline.core.landing_watch import WatchCursor, poll
from subsync_pipeline.core.manifest import assign_days, fallback_day, latest_day
from subsync_pipeline.core.tracking_log import FILE_OK, content_hash, read_tracking_file
from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.partitions import deployed_config
from subsync_pipeline.resources import LandingFolderResource


def file_days(path: Path) -> list[str]:
    """The partition days a landed file holds (its landing day if it holds none readable)."""
    read = read_tracking_file(path, deployed_config.columns, deployed_config.max_file_mb)
    now = datetime.now(UTC)
    default = fallback_day(deployed_config, now)
    if read.status != FILE_OK or read.rows.empty:
        return [default]
    days, _ = assign_days(read.rows, deployed_config, default, latest_day(deployed_config, now))
    return sorted(days.unique().tolist())


def run_requests(path: Path, last_day: str) -> list[dg.RunRequest]:
    """One run per day the file holds; the run key (content hash, day) makes each run once."""
    digest = content_hash(path)
    return [
        dg.RunRequest(
            run_key=f"{digest}:{day}",
            partition_key=day,
            tags={"subsync/trigger": f"upload:{path.name}"},
        )
        for day in file_days(path)
        if day <= last_day
    ]


def _already_run(instance: dg.DagsterInstance, run_key: str | None) -> bool:
    """Whether a run with this key exists: a re-uploaded or touched file asks for nothing."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/run_key": run_key or ""}), limit=1
    )
    return bool(runs)


@dg.sensor(
    name="tracking_upload_sensor",
    job=daily_sync_job,
    minimum_interval_seconds=30,
    description=(
        "Watches SUBSYNC_LANDING_DIR; once a new or changed file has stopped changing, launches "
        "one run per day it holds. Run keys from content hash and day: never the same run twice."
    ),
)
def tracking_upload_sensor(
    context: dg.SensorEvaluationContext, landing: LandingFolderResource
) -> dg.SensorResult:
    if not landing.folder.is_dir():
        return dg.SensorResult(skip_reason=f"landing folder {landing.folder} does not exist")
    ready, cursor = poll(landing.folder, WatchCursor.from_json(context.cursor))
    # file_days puts rows dated after tomorrow on the file's earliest day, where they are
    # rejected; this bound only keeps a request from naming a partition not there yet.
    latest = (datetime.now(deployed_config.tz).date() + timedelta(days=1)).isoformat()
    requests = [
        request
        for path in ready
        for request in run_requests(path, latest)
        if not _already_run(context.instance, request.run_key)
    ]
    if not requests:
        waiting = len(cursor.pending)
        reason = f"{waiting} file(s) still being written" if waiting else "no new complete file"
        return dg.SensorResult(skip_reason=reason, cursor=cursor.to_json())
    context.log.info(f"{len(ready)} complete file(s): {', '.join(p.name for p in ready)}")
    return dg.SensorResult(run_requests=requests, cursor=cursor.to_json())
