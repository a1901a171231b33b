"""Stage 1: the raw tracking log, as landed."""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from subsync_pipeline.assets import catalog
from subsync_pipeline.checks import FILES_READABLE, raw_checks, zero
from subsync_pipeline.core import sync
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.ingest import RawFiles
from subsync_pipeline.core.preview import preview
from subsync_pipeline.core.redact import mask_email
from subsync_pipeline.core.report import write_preview
from subsync_pipeline.core.report_links import report_link
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def, partition_days
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import (
    LandingFolderResource,
    PersonifyDatabaseResource,
    ReportsFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)

# The assets a dry run reports on (as observations: nothing is materialised), by table.
PERSONIFY_ASSETS = {"CUS_OPT_IN": "personify_cus_opt_in", "CUS_ACTIVITY": "personify_cus_activity"}


class SyncRunConfig(dg.Config):
    """The daily job's run config, given to its first step:
    `ops: {raw_tracking_log: {config: {dry_run: true}}}`."""

    dry_run: bool = Field(
        default=False,
        description="Preview: do everything except write Personify, and leave subsync's state "
        "database as it was. The changes go to SUBSYNC_REPORTS_DIR/<day>/preview.csv and "
        "preview.html and onto the Personify assets as observations; no asset is materialised.",
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
    # A dry run yields no output, so every later step is skipped.
    output_required=False,
)
def raw_tracking_log(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    subsync_config: SubsyncConfigResource,
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
    personify_db: PersonifyDatabaseResource,
    reports: ReportsFolderResource,
) -> Iterator[dg.Output[RawFiles] | dg.AssetCheckResult]:
    settings = subsync_config.load()
    days = partition_days(context)
    if config.dry_run:
        yield from _dry_run(context, settings, days, landing, state_db, personify_db, reports)
        return
    raw = sync.ingest(state_db.engine, landing.folder, settings, days)
    files = raw.files
    repeats = int(files["repeats_dropped"].sum())
    rows_read = int(files["rows_read"].sum())
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
        raw,
        metadata={
            "rows_read": dg.MetadataValue.int(rows_read),
            "rows": dg.MetadataValue.int(rows_read - repeats),
            "files_read": dg.MetadataValue.int(len(files)),
            "files_failed": dg.MetadataValue.int(failed),
            "repeats_dropped": dg.MetadataValue.int(repeats),
            "files": dg.MetadataValue.md(
                "| file | status | rows | repeats dropped |\n|---|---|---|---|\n" + table
                if table
                else "No file covers this day."
            ),
            **filed_elsewhere,
        },
    )
    yield zero(FILES_READABLE, "raw_tracking_log", failed, "files_failed")


def _dry_run(
    context: dg.AssetExecutionContext,
    settings: SubsyncConfig,
    days: list[str],
    landing: LandingFolderResource,
    state_db: StateDatabaseResource,
    personify_db: PersonifyDatabaseResource,
    reports: ReportsFolderResource,
) -> Iterator[dg.AssetCheckResult]:
    found = preview(
        state_db.url, personify_db.engine, landing.folder, settings, days, context.run.run_id
    )
    files = write_preview(reports.folder, found)
    partition = days[0] if len(days) == 1 else None
    for table, counts in found.counts().items():
        sample = found.sample(20, table)
        lines = "\n".join(
            f"| {r.action} | {r.row} | {r.column} | {r.old} | {r.new} |"
            for r in sample.astype(object).where(sample.notna(), "").itertuples()
        )
        context.log_event(
            dg.AssetObservation(
                asset_key=PERSONIFY_ASSETS[table],
                partition=partition,
                metadata={
                    "dry_run": True,
                    **{f"would_{action}": dg.MetadataValue.int(n) for action, n in counts.items()},
                    "sample": dg.MetadataValue.md(
                        "| action | row | column | old | new |\n|---|---|---|---|---|\n" + lines
                        if lines
                        else "Nothing would change."
                    ),
                    "preview": dg.MetadataValue.url(
                        report_link(files.html, reports.folder, settings.reports_base_url)
                    ),
                    "preview_csv": dg.MetadataValue.path(str(files.changes_csv.resolve())),
                },
            )
        )
        context.log.info(
            f"dry run, {table}: {counts['insert']} to insert, {counts['update']} to update, "
            f"{counts['delete']} to delete (nothing written)"
        )
    context.log.info(f"preview: {files.html.resolve()}")
    yield zero(FILES_READABLE, "raw_tracking_log", found.files_failed, "files_failed")
