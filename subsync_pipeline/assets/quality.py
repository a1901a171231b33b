"""Stage 5: the day's data-quality report for stewards."""

from dataclasses import asdict
from typing import Any

import dagster as dg

from subsync_pipeline.assets import catalog
from subsync_pipeline.core import ledger, state, sync
from subsync_pipeline.core.explain import explain_members
from subsync_pipeline.core.ingest import RawFiles
from subsync_pipeline.core.personify.rows import audit_now
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.personify.writers import WriteCounts
from subsync_pipeline.core.quality import ValidationFigures
from subsync_pipeline.core.report import history, store_figures, write_report
from subsync_pipeline.core.report_links import report_link
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import (
    PersonifyDatabaseResource,
    ReportsFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)


@dg.asset(
    partitions_def=daily_partitions_def,
    pool=STATE_POOL,
    backfill_policy=daily_backfill_policy,
    group_name="quality",
    kinds={"html"},
    owners=catalog.STEWARD_OWNERS,
    tags=catalog.SUBSYNC,
    description=(
        "The day's data-quality report for stewards, in SUBSYNC_REPORTS_DIR/<day>/report.html "
        "(the `report` link of each materialisation): headline figures, a 30-day trend, rejects "
        "by reason with the fix in Real Magnet, and rejected_rows.csv beside it."
    ),
)
def data_quality_report(
    context: dg.AssetExecutionContext,
    raw_tracking_log: RawFiles,
    rejected_tracking_records: ValidationFigures,
    contact_subscription_status: sync.Resolved,
    personify_cus_opt_in: WriteCounts,
    personify_cus_activity: WriteCounts,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    personify_db: PersonifyDatabaseResource,
    reports: ReportsFolderResource,
) -> dg.MaterializeResult:
    raw, validation = raw_tracking_log, rejected_tracking_records
    resolved = contact_subscription_status
    config = subsync_config.load()
    quality = config.quality
    label = raw.days[0] if len(raw.days) == 1 else f"{raw.days[0]}_to_{raw.days[-1]}"
    healthy = (
        raw.failed_files.empty
        and validation.member_match_rate >= quality.min_member_match_rate
        and validation.reject_rate <= quality.max_reject_rate
        and personify_cus_opt_in.mismatched == 0
        and personify_cus_activity.mismatched == 0
    )
    figures: dict[str, Any] = {
        "status": "OK" if healthy else "ATTENTION",
        "files_read": len(raw.files),
        "files_failed": len(raw.failed_files),
        "rows_read": validation.rows,
        "rows_rejected": validation.rejected,
        "match_rate": validation.member_match_rate,
        "rejects_by_reason": validation.rejects_by_reason,
        "decisions": resolved.decisions,
        "status_changes": resolved.status_changes,
        "first_time_events": resolved.first_subscribe + resolved.first_unsubscribe,
        "newer_requests": resolved.blocked,
    }
    with state_db.engine.begin() as conn:
        state.lock(conn)
        store_figures(conn, label, figures, audit_now())
        days = [day for day in history(conn) if day["label"] <= label]
        rejected = ledger.rejects_of_days(conn, list(raw.days))
    written = {
        "CUS_OPT_IN": asdict(personify_cus_opt_in),
        "CUS_ACTIVITY": asdict(personify_cus_activity),
    }
    # Each member listed with a newer request gets a page saying why its status stands.
    tables = personify_tables(config.personify)
    members = resolved.blocked_sample[["master_customer_id", "sub_customer_id"]].drop_duplicates()
    with state_db.engine.connect() as state_conn, personify_db.engine.connect() as personify:
        explanations = explain_members(
            state_conn,
            personify,
            config,
            tables,
            [(str(master), int(sub)) for master, sub in members.itertuples(index=False)],
        )
    files = write_report(
        reports.folder,
        label,
        figures,
        rejected,
        resolved.blocked_sample,
        written,
        days,
        explanations,
    )
    context.log.info(f"data-quality report: {files.html.resolve()}")
    base_url = config.reports_base_url
    summary = "\n".join(
        ["| figure | value |", "|---|---|"]
        + [
            f"| {name} | {value} |"
            for name, value in figures.items()
            if not isinstance(value, dict)
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.url(report_link(files.html, reports.folder, base_url)),
            "report_path": dg.MetadataValue.path(str(files.html.resolve())),
            "rejects_csv": dg.MetadataValue.path(str(files.rejects_csv.resolve())),
            "index": dg.MetadataValue.url(report_link(files.index, reports.folder, base_url)),
            "summary": dg.MetadataValue.md(summary),
            "rows_read": dg.MetadataValue.int(validation.rows),
            "rows_rejected": dg.MetadataValue.int(validation.rejected),
            "member_match_rate": dg.MetadataValue.float(validation.member_match_rate),
            "status_changes": dg.MetadataValue.int(resolved.status_changes),
        }
    )
