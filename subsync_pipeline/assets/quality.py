"""Stage 5: the day's data-quality report for stewards."""

from typing import Any

import dagster as dg
import pandas as pd

from subsync_pipeline.assets import catalog
from subsync_pipeline.core import state, sync
from subsync_pipeline.core.ingest import RawTrackingLog
from subsync_pipeline.core.personify.rows import audit_now
from subsync_pipeline.core.personify.writers import WriteCounts
from subsync_pipeline.core.quality import (
    decision_counts,
    member_match_rate,
    newer_requests,
    reject_counts,
)
from subsync_pipeline.core.report import history, store_figures, write_report
from subsync_pipeline.core.resolution import FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import (
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
    raw_tracking_log: RawTrackingLog,
    rejected_tracking_records: pd.DataFrame,
    contact_subscription_status: sync.ResolvedDays,
    personify_cus_opt_in: WriteCounts,
    personify_cus_activity: WriteCounts,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    reports: ReportsFolderResource,
) -> dg.MaterializeResult:
    raw, rejected = raw_tracking_log, rejected_tracking_records
    resolved = contact_subscription_status
    quality = subsync_config.load().quality
    label = raw.days[0] if len(raw.days) == 1 else f"{raw.days[0]}_to_{raw.days[-1]}"
    of_days = resolved.day_decisions
    rows = len(raw.rows)
    match_rate = member_match_rate(rows, rejected)
    reject_rate = len(rejected) / rows if rows else 0.0
    newer = newer_requests(resolved.statuses)
    healthy = (
        raw.failed_files.empty
        and match_rate >= quality.min_member_match_rate
        and reject_rate <= quality.max_reject_rate
        and personify_cus_opt_in.mismatched == 0
        and personify_cus_activity.mismatched == 0
    )
    status_changes = int(of_days["status_change"].sum())
    figures: dict[str, Any] = {
        "status": "OK" if healthy else "ATTENTION",
        "files_read": len(raw.files),
        "files_failed": len(raw.failed_files),
        "rows_read": rows,
        "rows_rejected": len(rejected),
        "match_rate": match_rate,
        "rejects_by_reason": reject_counts(rejected),
        "decisions": decision_counts(resolved.day_decisions, resolved.days),
        "status_changes": status_changes,
        "first_time_events": int(
            of_days["first_time"].isin([FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE]).sum()
        ),
        "newer_requests": len(newer),
    }
    with state_db.engine.begin() as conn:
        state.lock(conn)
        store_figures(conn, label, figures, audit_now())
        days = [day for day in history(conn) if day["label"] <= label]
    written = {
        "CUS_OPT_IN": personify_cus_opt_in.as_dict(),
        "CUS_ACTIVITY": personify_cus_activity.as_dict(),
    }
    files = write_report(reports.folder, label, figures, rejected, newer, written, days)
    context.log.info(f"data-quality report: {files.html.resolve()}")
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
            "report": dg.MetadataValue.url(files.html.resolve().as_uri()),
            "report_path": dg.MetadataValue.path(str(files.html.resolve())),
            "rejects_csv": dg.MetadataValue.path(str(files.rejects_csv.resolve())),
            "index": dg.MetadataValue.path(str(files.index.resolve())),
            "summary": dg.MetadataValue.md(summary),
            "rows_read": dg.MetadataValue.int(rows),
            "rows_rejected": dg.MetadataValue.int(len(rejected)),
            "member_match_rate": dg.MetadataValue.float(match_rate),
            "status_changes": dg.MetadataValue.int(status_changes),
        }
    )
