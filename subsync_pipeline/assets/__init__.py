"""The seven assets of SPEC §6, one module per stage."""

from subsync_pipeline.assets.ingest import raw_tracking_log
from subsync_pipeline.assets.personify import personify_cus_activity, personify_cus_opt_in
from subsync_pipeline.assets.quality import data_quality_report
from subsync_pipeline.assets.resolve import contact_subscription_status
from subsync_pipeline.assets.validate import validated_and_rejected_tracking_records

sync_assets = [
    raw_tracking_log,
    validated_and_rejected_tracking_records,
    contact_subscription_status,
    personify_cus_opt_in,
    personify_cus_activity,
    data_quality_report,
]
