"""Data-quality figures of SPEC §8: each computed once, where its data is, and read from there
by the asset metadata, the checks and the report alike."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from subsync_pipeline.core.tracking_log import FILE_TOO_LARGE, FILE_UNREADABLE, MISSING_COLUMNS
from subsync_pipeline.core.validation import (
    INVALID_MEMBER_ID,
    MISSING_MEMBER_ID,
    REASON_CODES,
    UNKNOWN_MEMBER,
)

_MEMBER_REASONS = {MISSING_MEMBER_ID, INVALID_MEMBER_ID, UNKNOWN_MEMBER}
# Rates are shown and compared with their thresholds at this many decimals.
RATE_DECIMALS = 6


@dataclass(frozen=True)
class ValidationFigures:
    rows: int
    validated: int
    rejected: int
    rejects_by_reason: dict[str, int]
    member_match_rate: float
    reject_rate: float


def validation_figures(rows: int, validated: int, rejected: pd.DataFrame) -> ValidationFigures:
    return ValidationFigures(
        rows=rows,
        validated=validated,
        rejected=len(rejected),
        rejects_by_reason=reject_counts(rejected),
        member_match_rate=member_match_rate(rows, rejected),
        reject_rate=round(len(rejected) / rows, RATE_DECIMALS) if rows else 0.0,
    )


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
    return round(1 - int(member_failed.sum()) / rows, RATE_DECIMALS)
