"""Data-quality figures of SPEC §8, computed from the stages' outputs."""

from __future__ import annotations

import pandas as pd

from subsync_pipeline.core.resolution import DECISIONS, SUBSCRIBED
from subsync_pipeline.core.tracking_log import FILE_TOO_LARGE, FILE_UNREADABLE, MISSING_COLUMNS
from subsync_pipeline.core.validation import (
    INVALID_MEMBER_ID,
    MISSING_MEMBER_ID,
    REASON_CODES,
    UNKNOWN_MEMBER,
)

_MEMBER_REASONS = {MISSING_MEMBER_ID, INVALID_MEMBER_ID, UNKNOWN_MEMBER}


def reject_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rejected rows per reason code (a row with two reasons counts under both)."""
    reasons = rejected["reasons"].dropna().astype(str).str.split(";").explode()
    counts = reasons.value_counts()
    order = [*REASON_CODES, FILE_UNREADABLE, MISSING_COLUMNS, FILE_TOO_LARGE]
    return {code: int(counts[code]) for code in order if code in counts.index}


def member_match_rate(rows: int, rejected: pd.DataFrame) -> float:
    """Share of the day's rows whose Custom Member ID matched a Personify customer."""
    if rows == 0:
        return 1.0
    row_rejects = rejected.loc[rejected["line_number"].notna(), "reasons"].astype(str)
    member_failed = row_rejects.str.split(";").map(lambda codes: bool(_MEMBER_REASONS & set(codes)))
    return round(1 - int(member_failed.sum()) / rows, 6)


def decision_counts(decided: pd.DataFrame, days: tuple[str, ...]) -> dict[str, int]:
    """Decisions of the events of `days` (not of the older history re-resolved with them)."""
    of_days = decided.loc[decided["day"].isin(days), "decision"].value_counts()
    return {decision: int(of_days.get(decision, 0)) for decision in DECISIONS}


def newer_requests(statuses: pd.DataFrame) -> pd.DataFrame:
    """Keys whose latest opposite request is newer than their status: a blocked request."""
    subscribed = statuses["status"].eq(SUBSCRIBED)
    opposite = statuses["last_unsubscribe_request_date"].where(
        subscribed, statuses["last_subscribe_request_date"]
    )
    return statuses.loc[opposite.notna() & (opposite > statuses["status_date"])]
