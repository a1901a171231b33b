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
