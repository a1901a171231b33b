"""The job that materialises one day end to end (partitioned like its assets)."""

import dagster as dg

# The run queue (dagster.yaml) lets one run with this tag at a time write to Personify.
PERSONIFY_WRITER_TAG = {"subsync/personify": "writer"}

daily_sync_job = dg.define_asset_job(
    "daily_sync_job",
    selection=dg.AssetSelection.all(),
    tags=PERSONIFY_WRITER_TAG,
    description="The daily sync: tracking log -> validated -> resolved -> Personify -> report.",
)
