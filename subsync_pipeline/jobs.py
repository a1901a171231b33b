"""The job that materialises one day end to end."""

import dagster as dg

from subsync_pipeline.partitions import daily_partitions_def

daily_sync_job = dg.define_asset_job(
    "daily_sync_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions_def,
    description="The daily sync: tracking log -> validated -> resolved -> Personify -> report.",
)
