"""The subsync code location: composes assets, jobs, schedule, sensor and resources."""

import dagster as dg

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.explanation import explain_member_job
from subsync_pipeline.fetching import (
    fetch_tracking_logs,
    real_magnet_fetch_checks,
    tracking_download_sensor,
)
from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.notifications import notification_sensor, run_failure_notice_sensor
from subsync_pipeline.preflight import personify_preflight_job
from subsync_pipeline.resources import default_resources
from subsync_pipeline.schedules import daily_sync_schedule
from subsync_pipeline.sensors import tracking_upload_sensor

defs = dg.Definitions(
    # Each asset links to the file and line that defines it (the UI's "Code references"). Links
    # into a Git host are not added: a deployment is not tied to one remote or branch.
    assets=dg.with_source_code_references(sync_assets),
    asset_checks=[real_magnet_fetch_checks],
    jobs=[daily_sync_job, personify_preflight_job, explain_member_job, fetch_tracking_logs],
    schedules=[daily_sync_schedule],
    sensors=[
        tracking_upload_sensor,
        tracking_download_sensor,
        run_failure_notice_sensor,
        notification_sensor,
    ],
    resources=default_resources(),
    # A day's steps form a chain: running them in one process saves re-importing pandas and
    # Dagster for every step, and a step retry still re-runs just that step.
    executor=dg.in_process_executor,
)
