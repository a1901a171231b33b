"""Stage 1: the raw tracking log, as landed."""

from collections.abc import Iterator

import dagster as dg

from subsync_pipeline.assets import catalog
from subsync_pipeline.checks import FILES_READABLE, raw_checks, zero
from subsync_pipeline.core import sync
from subsync_pipeline.core.ingest import RawFiles
from subsync_pipeline.core.redact import mask_email
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def, partition_days
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import (
    LandingFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)


@dg.asset(
    partitions_def=daily_partitions_def,
    pool=STATE_POOL,
    check_specs=raw_checks,
    backfill_policy=daily_backfill_policy,
    group_name="ingest",
    kinds={"csv", "pandas"},
    owners=catalog.PIPELINE_OWNERS,
    tags={**catalog.REAL_MAGNET, **catalog.HOLDS_EMAILS},
    metadata=catalog.columns(catalog.RAW_TRACKING_LOG_SCHEMA),
    description=(
        "The day's Real Magnet tracking-log rows, every value as landed in SUBSYNC_LANDING_DIR, "
        "with file and line; exact repeats dropped. The metadata lists each file read and any "
        "that could not be read (check files_readable)."
    ),
)
def raw_tracking_log(
    context: dg.AssetExecutionContext,
    subsync_config: SubsyncConfigResource,
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
) -> Iterator[dg.Output[RawFiles] | dg.AssetCheckResult]:
    config = subsync_config.load()
    days = partition_days(context)
    raw = sync.ingest(state_db.engine, landing.folder, config, days)
    files = raw.files
    for row in raw.failed_files.itertuples():
        context.log.warning(mask_email(f"{row.path}: {row.status}: {row.error}"))
    elsewhere = raw.recorded_failures
    for row in elsewhere.itertuples():
        context.log.warning(
            mask_email(
                f"{row.path}: {row.status}: {row.error} (recorded by this run; it has no "
                f"readable day, so it is filed under {row.day}, whose report lists it)"
            )
        )
    failed = len(raw.failed_files) + len(elsewhere)
    filed_elsewhere = {}
    if len(elsewhere):
        rows = "\n".join(
            f"| {row.path} | {row.status} | {row.error} | {row.day} |"
            for row in elsewhere.itertuples()
        )
        filed_elsewhere["files_failed_filed_elsewhere"] = dg.MetadataValue.md(
            "Recorded by this run, unreadable as a whole, filed under the day it was recorded:"
            "\n\n| file | status | error | filed under |\n|---|---|---|---|\n" + mask_email(rows)
        )
    table = mask_email(
        "\n".join(
            f"| {row.path} | {row.status} | {row.rows_read} | {row.repeats_dropped} |"
            for row in files.itertuples()
        )
    )
    yield dg.Output(
        raw.summary(),
        metadata={
            "rows_read": dg.MetadataValue.int(len(raw.rows) + int(files["repeats_dropped"].sum())),
            "rows": dg.MetadataValue.int(len(raw.rows)),
            "files_read": dg.MetadataValue.int(len(files)),
            "files_failed": dg.MetadataValue.int(failed),
            "repeats_dropped": dg.MetadataValue.int(int(files["repeats_dropped"].sum())),
            "files": dg.MetadataValue.md(
                "| file | status | rows | repeats dropped |\n|---|---|---|---|\n" + table
                if table
                else "No file covers this day."
            ),
            **filed_elsewhere,
        },
    )
    yield zero(FILES_READABLE, "raw_tracking_log", failed, "files_failed")
