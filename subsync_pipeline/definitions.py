"""The subsync code location: composes assets, job, schedule, sensor and resources."""

import dagster as dg

from subsync_pipeline.assets.ingest import raw_tracking_log
from subsync_pipeline.assets.personify import personify_cus_activity, personify_cus_opt_in
from subsync_pipeline.assets.quality import data_quality_report
from subsync_pipeline.assets.resolve import contact_subscription_status
from subsync_pipeline.assets.validate import validated_and_rejected_tracking_records
from subsync_pipeline.jobs import daily_sync_job
from subsync_pipeline.resources import default_resources
from subsync_pipeline.schedules import daily_sync_schedule
from subsync_pipeline.sensors import tracking_upload_sensor

defs = dg.Definitions(
    assets=[
        raw_tracking_log,
        validated_and_rejected_tracking_records,
        contact_subscription_status,
        personify_cus_opt_in,
        personify_cus_activity,
        data_quality_report,
    ],
    jobs=[daily_sync_job],
    schedules=[daily_sync_schedule],
    sensors=[tracking_upload_sensor],
    resources=default_resources(),
)
