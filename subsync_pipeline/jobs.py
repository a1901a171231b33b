"""The job that materialises one day end to end (partitioned like its assets)."""

import dagster as dg

from subsync_pipeline.checks import fetch_checks

daily_sync_job = dg.define_asset_job(
    "daily_sync_job",
    # The fetch checks judge Real Magnet's server, not the day: the download sensor reports them.
    selection=dg.AssetSelection.all() - dg.AssetSelection.checks(*(s.key for s in fetch_checks)),
    description="The daily sync: tracking log -> validated -> resolved -> Personify -> report.",
)
