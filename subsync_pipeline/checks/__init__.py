"""Data-quality asset checks: ERROR where Personify would be wrong, WARN for config.quality."""

import dagster as dg

FILES_READABLE = "files_readable"
MEMBER_MATCH_RATE = "member_match_rate"
REJECT_RATE = "reject_rate"
OPT_IN_RECONCILED = "opt_in_reconciled"
ACTIVITY_RECONCILED = "activity_reconciled"
ONE_ROW_PER_EVENT = "one_row_per_event"

raw_checks = [
    dg.AssetCheckSpec(
        FILES_READABLE,
        asset="raw_tracking_log",
        description="Every file covering the day could be read; an unreadable file loses its rows.",
    )
]
validation_checks = [
    dg.AssetCheckSpec(
        MEMBER_MATCH_RATE,
        asset="validated_tracking_records",
        description="Share of rows whose Custom Member ID matched a Personify customer is at "
        "least config.quality.min_member_match_rate.",
    ),
    dg.AssetCheckSpec(
        REJECT_RATE,
        asset="rejected_tracking_records",
        description="Share of rejected rows is at most config.quality.max_reject_rate.",
    ),
]
opt_in_checks = [
    dg.AssetCheckSpec(
        OPT_IN_RECONCILED,
        asset="personify_cus_opt_in",
        description="Read back in the write's transaction, CUS_OPT_IN holds exactly the resolved "
        "status of every key written.",
    )
]
activity_checks = [
    dg.AssetCheckSpec(
        ACTIVITY_RECONCILED,
        asset="personify_cus_activity",
        description="Read back in the write's transaction, subsync's CUS_ACTIVITY rows of the "
        "contacts written are exactly their status changes.",
    ),
    dg.AssetCheckSpec(
        ONE_ROW_PER_EVENT,
        asset="personify_cus_activity",
        description="No event has two of subsync's CUS_ACTIVITY rows (by the ids subsync "
        "recorded for each event).",
    ),
]


def threshold(
    name: str, asset: str, value: float, limit: float, at_least: bool
) -> dg.AssetCheckResult:
    """A WARN check of a rate against its config.quality threshold."""
    passed = value >= limit if at_least else value <= limit
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"value": value, "threshold": limit},
    )


def zero(name: str, asset: str, count: int, what: str) -> dg.AssetCheckResult:
    """An ERROR check that passes when `count` things are wrong."""
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=count == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={what: count},
    )


# Whether fetching from Real Magnet's FTPS server keeps up (subsync_pipeline/fetching.py):
# reported by tracking_download_sensor and fetch_tracking_logs, not by the daily runs.
FETCHED_RECENTLY = "tracking_logs_fetched_recently"
FETCHED_BEFORE_ARCHIVE = "tracking_logs_fetched_before_archive"
fetch_checks = [
    dg.AssetCheckSpec(
        FETCHED_RECENTLY,
        asset="raw_tracking_log",
        description="The newest tracking log fetched from Real Magnet's FTPS server is at most "
        "config.quality.max_fetch_age_hours old (default 36): else fetching has stopped.",
    ),
    dg.AssetCheckSpec(
        FETCHED_BEFORE_ARCHIVE,
        asset="raw_tracking_log",
        description="No file on Real Magnet's FTPS server is within 5 days of its 30-day "
        "archive without having been fetched (WARN): after that its events are lost.",
    ),
]
