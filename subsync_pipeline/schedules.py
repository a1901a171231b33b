"""The daily schedule: yesterday's partition, at config.schedule_time in config.timezone."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.partitions import deployed_config


def yesterday_partition(tick: datetime, timezone: str) -> str:
    """The partition key of the local day before `tick`, whatever the DST shift of that day."""
    return (tick.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)).isoformat()


@dg.schedule(
    name="daily_sync_schedule",
    job=daily_sync_job,
    cron_schedule=(
        f"{deployed_config.schedule_time.minute} {deployed_config.schedule_time.hour} * * *"
    ),
    execution_timezone=deployed_config.timezone,
    description="Syncs yesterday's tracking log every day at config.schedule_time (local time).",
)
def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    tick = context.scheduled_execution_time or datetime.now(ZoneInfo(deployed_config.timezone))
    return dg.RunRequest(
        partition_key=yesterday_partition(tick, deployed_config.timezone),
        tags={"subsync/trigger": "schedule"},
    )
