"""Stage 5: the day's data-quality report for stewards."""

import dagster as dg
import pandas as pd

from subsync_pipeline.core import sync
from subsync_pipeline.core.ingest import RawTrackingLog
from subsync_pipeline.core.personify.writers import WriteCounts
from subsync_pipeline.core.quality import (
    decision_counts,
    member_match_rate,
    newer_requests,
    reject_counts,
)
from subsync_pipeline.core.report import write_report
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.resources import ReportsFolderResource


@dg.asset(
    partitions_def=daily_partitions_def,
    backfill_policy=daily_backfill_policy,
    group_name="quality",
    kinds={"html"},
    description=(
        "The day's data-quality report in SUBSYNC_REPORTS_DIR: figures for every stage and a CSV "
        "of all rejected rows for stewards to fix in Real Magnet."
    ),
)
def data_quality_report(
    context: dg.AssetExecutionContext,
    raw_tracking_log: RawTrackingLog,
    rejected_tracking_records: pd.DataFrame,
    contact_subscription_status: sync.ResolvedDays,
    personify_cus_opt_in: WriteCounts,
    personify_cus_activity: WriteCounts,
    reports: ReportsFolderResource,
) -> dg.MaterializeResult:
    raw, rejected, resolved = (
        raw_tracking_log,
        rejected_tracking_records,
        contact_subscription_status,
    )
    label = raw.days[0] if len(raw.days) == 1 else f"{raw.days[0]}_to_{raw.days[-1]}"
    of_days = resolved.decided.loc[resolved.decided["day"].isin(resolved.days)]
    figures: dict[str, object] = {
        "files read": len(raw.files),
        "files failed": len(raw.failed_files),
        "rows read": len(raw.rows),
        "rows rejected": len(rejected),
        "member match rate": member_match_rate(len(raw.rows), rejected),
        **{f"rejected: {code}": n for code, n in reject_counts(rejected).items()},
        **{
            f"decision: {name}": n
            for name, n in decision_counts(resolved.decided, resolved.days).items()
        },
        "status changes": int(of_days["status_change"].sum()),
        "keys with a newer opposite request": len(newer_requests(resolved.statuses)),
        **{f"CUS_OPT_IN {k}": v for k, v in personify_cus_opt_in.as_dict().items()},
        **{f"CUS_ACTIVITY {k}": v for k, v in personify_cus_activity.as_dict().items()},
    }
    files = write_report(reports.folder, label, figures, rejected)
    context.log.info(f"data-quality report: {files.html.resolve()}")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(files.html.resolve())),
            "rejects_csv": dg.MetadataValue.path(str(files.rejects_csv.resolve())),
            "rows_rejected": dg.MetadataValue.int(len(rejected)),
        }
    )
