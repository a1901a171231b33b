"""The job that materialises one day end to end (partitioned like its assets)."""

import dagster as dg

daily_sync_job = dg.define_asset_job(
    "daily_sync_job",
    selection=dg.AssetSelection.all(),
    description="The daily sync: tracking log -> validated -> resolved -> Personify -> report.",
)
