"""The upload sensor: a new or changed tracking file runs each day it holds."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from subsync_pipeline.core.environment import setting
from subsync_pipeline.core.manifest import assign_days, fallback_day, list_landed_files
from subsync_pipeline.core.tracking_log import FILE_OK, content_hash, read_tracking_file
from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.partitions import deployed_config


def file_days(path: Path) -> list[str]:
    """The partition days a landed file holds (one fallback day if it holds none readable)."""
    read = read_tracking_file(path, deployed_config.columns)
    default = fallback_day(deployed_config, datetime.now(UTC).replace(tzinfo=None))
    if read.status != FILE_OK or read.rows.empty:
        return [default]
    days, _ = assign_days(read.rows, deployed_config, default)
    return sorted(days.unique().tolist())


@dg.sensor(
    name="tracking_upload_sensor",
    job=daily_sync_job,
    minimum_interval_seconds=60,
    description=(
        "Watches SUBSYNC_LANDING_DIR; once a new or changed file has stopped growing, launches "
        "one run per day it holds. A run key from content hash and day means never twice."
    ),
)
def tracking_upload_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    landing = Path(os.environ.get("SUBSYNC_LANDING_DIR") or setting("SUBSYNC_LANDING_DIR"))
    cursor = json.loads(context.cursor) if context.cursor else {}
    previous: dict[str, list[float]] = cursor.get("seen", {})
    done: dict[str, list[float]] = cursor.get("done", {})
    if not landing.is_dir():
        return dg.SensorResult(skip_reason=f"landing folder {landing} does not exist")
    seen: dict[str, list[float]] = {}
    requests: list[dg.RunRequest] = []
    for path in list_landed_files(landing):
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime]
        key = str(path)
        seen[key] = signature
        # Complete once unchanged since the last tick; already run if nothing changed since.
        if previous.get(key) != signature or done.get(key) == signature:
            continue
        digest = content_hash(path)
        for day in file_days(path):
            requests.append(dg.RunRequest(run_key=f"{digest}:{day}", partition_key=day))
        done[key] = signature
    done = {key: value for key, value in done.items() if key in seen}
    new_cursor = json.dumps({"seen": seen, "done": done})
    if not requests:
        return dg.SensorResult(skip_reason="no new complete file", cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
