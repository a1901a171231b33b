"""Row validation (SPEC §3): a Pandera schema collects every failure lazily, named by reason code;
member ids are then checked against Personify's CUSTOMER in one bulk lookup by the caller, and
duplicate event ids against the manifest's first-recorded version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time

import numpy as np
import pandas as pd
import pandera.pandas as pa

from subsync_pipeline.core.config import EVENT_TYPES, SCOPE_TYPES, SOURCES, SubsyncConfig
from subsync_pipeline.core.tracking_log import (
    ALL_COLUMNS,
    DAY,
    EXTERNAL_ID_MAX,
    FILE_ID,
    FINGERPRINT,
    LINE,
    OCCURRED_UTC,
    SOURCE_FILE,
    local_days,
    parse_timestamps,
)

MISSING_MEMBER_ID = "missing_member_id"
INVALID_MEMBER_ID = "invalid_member_id"
UNKNOWN_MEMBER = "unknown_member"
INVALID_EVENT_TYPE = "invalid_event_type"
INVALID_SCOPE_TYPE = "invalid_scope_type"
INVALID_SOURCE = "invalid_source"
INVALID_TIMESTAMP = "invalid_timestamp"
TRACKING_DISABLED = "tracking_disabled"
DUPLICATE_EVENT = "duplicate_event"
# Not in SPEC §3, which has no code for these; without them such rows could not be written safely.
INVALID_EVENT_ID = "invalid_event_id"
MISSING_SCOPE_ID = "missing_scope_id"
INVALID_FORCE_OPTIN = "invalid_force_optin"
VALUE_TOO_LONG = "value_too_long"

REASON_CODES: tuple[str, ...] = (
    MISSING_MEMBER_ID,
    INVALID_MEMBER_ID,
    UNKNOWN_MEMBER,
    INVALID_EVENT_TYPE,
    INVALID_SCOPE_TYPE,
    INVALID_SOURCE,
    INVALID_TIMESTAMP,
    TRACKING_DISABLED,
    DUPLICATE_EVENT,
    INVALID_EVENT_ID,
    MISSING_SCOPE_ID,
    INVALID_FORCE_OPTIN,
    VALUE_TOO_LONG,
)

SOURCE_ALIASES: dict[str, str] = {
    "subscription_page": "preference_centre",
    "unsubscribe_link": "preference_centre",
    "user": "in_app",
    "manual": "in_app",
}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_MASTER_ID_MAX = 24  # CUSTOMER.MASTER_CUSTOMER_ID varchar(24)
_SCOPE_MAX = 255  # event_ledger.scope_id / scope_name varchar(255)
_REJECT_EVENT_ID_MAX = 255  # rejected_records.event_id; original_values keeps the whole id
# A subscription cannot begin after the event reporting it; a day allows for time-zone slips.
_SUBSCRIBED_SLACK = pd.Timedelta(days=1)
_SUB_ID = re.compile(r"^[0-9]{1,9}$")

REJECT_COLUMNS: list[str] = [
    "day",
    "file_id",
    "source_file",
    "line_number",
    "event_id",
    "reasons",
    "error",
    "original_values",
]


@dataclass(frozen=True)
class ValidationResult:
    events: pd.DataFrame
    rejected: pd.DataFrame


def split_member_ids(custom_member_id: pd.Series, pattern: str) -> pd.DataFrame:
    """`MASTER` or `MASTER|SUB` -> master, sub (default 0) and whether the id is well formed."""
    has_sub = custom_member_id.str.contains("|", regex=False).astype(bool)
    master = custom_member_id.copy()
    sub_text = pd.Series("", index=custom_member_id.index, dtype="str")
    if has_sub.any():
        # Only the few ids with a sub-customer part are split: a regex over every id is slow.
        parts = custom_member_id[has_sub].str.partition("|")
        master[has_sub] = parts[0]
        sub_text[has_sub] = parts[2]
    master_ok = master.str.match(pattern) & master.str.len().between(1, _MASTER_ID_MAX)
    sub_ok = ~has_sub | sub_text.str.match(_SUB_ID.pattern)
    well_formed = (master_ok & sub_ok).astype(bool)
    sub = pd.to_numeric(sub_text.where(has_sub & sub_ok, "0"), errors="coerce")
    return pd.DataFrame(
        {
            "master_customer_id": master,
            "sub_customer_id": sub.fillna(0).astype("int64"),
            "well_formed": well_formed,
        },
        index=custom_member_id.index,
    )


def normalise(rows: pd.DataFrame, config: SubsyncConfig) -> pd.DataFrame:
    """Trim every value; case-fold the coded ones; map source aliases; parse flags and times.

    The result is indexed like `rows`.
    """
    frame = pd.DataFrame(index=rows.index)
    for column in ALL_COLUMNS:
        text = rows[column].astype(str)
        frame[column] = _unless_unchanged(text, text.str.strip())
    for column in ("event_type", "scope_type", "source", "force_optin"):
        # Every valid code is ASCII, where lower() and casefold() agree; lower() runs in Arrow.
        frame[column] = _unless_unchanged(frame[column], frame[column].str.lower())
    frame["source"] = frame["source"].replace(SOURCE_ALIASES)
    ids = split_member_ids(frame["custom_member_id"], config.member_id_pattern)
    frame["master_customer_id"] = ids["master_customer_id"]
    frame["sub_customer_id"] = ids["sub_customer_id"]
    frame["member_id_ok"] = ids["well_formed"]
    frame["occurred_at_utc"] = (
        rows[OCCURRED_UTC].astype("datetime64[ns]")
        if OCCURRED_UTC in rows
        else parse_timestamps(frame["occurred_at"], config.tz)
    )
    frame["timestamp_subscribed_utc"] = parse_timestamps(frame["timestamp_subscribed"], config.tz)
    # A row whose occurred_at is not of the day it was read for was put there for lack of a usable
    # day of its own (unreadable, before start_date, in the future): see manifest.assign_days.
    own_day = local_days(frame["occurred_at_utc"], config.tz)
    frame["in_own_day"] = own_day.eq(rows[DAY]).fillna(False) if DAY in rows else True
    frame["force_optin_flag"] = frame["force_optin"].isin(_TRUE)
    return frame


def _unless_unchanged(original: pd.Series, changed: pd.Series) -> pd.Series:
    """`original` when `changed` holds the same values: a landed file rarely has anything to trim
    or lower, and keeping a new copy of every column held ~280 MB more through a 1M-event day's
    validation, its peak."""
    return original if bool(changed.eq(original).all()) else changed


def tracking_record_schema(config: SubsyncConfig) -> pa.DataFrameSchema:
    """The Pandera schema for normalised rows under `config`; each check's error is its reason
    code, which Pandera reports as the check of every failing row."""
    start = datetime.combine(config.start_date, time(0), tzinfo=config.tz)
    start_utc = pd.Timestamp(start).tz_convert("UTC").tz_localize(None)

    def member_format(frame: pd.DataFrame) -> pd.Series:
        return frame["custom_member_id"].eq("") | frame["member_id_ok"]

    def fits(frame: pd.DataFrame) -> pd.Series:
        scope_id, scope_name = frame["scope_id"].str.len(), frame["scope_name"].str.len()
        return (scope_id <= _SCOPE_MAX) & (scope_name <= _SCOPE_MAX)

    # A frame-wide check: Pandera leaves nulls out of a nullable column's own checks.
    def occurred_at(frame: pd.DataFrame) -> pd.Series:
        value = frame["occurred_at_utc"]
        return value.notna() & (value >= start_utc) & frame["in_own_day"]

    def timestamp_subscribed(frame: pd.DataFrame) -> pd.Series:
        given = frame["timestamp_subscribed"].ne("")
        subscribed = frame["timestamp_subscribed_utc"]
        latest = frame["occurred_at_utc"] + _SUBSCRIBED_SLACK
        return ~given | (subscribed.notna() & (subscribed <= latest))

    def text(check: pa.Check) -> pa.Column:
        return pa.Column(str, check)

    return pa.DataFrameSchema(
        {
            "event_id": text(pa.Check.str_length(1, EXTERNAL_ID_MAX, error=INVALID_EVENT_ID)),
            "custom_member_id": text(pa.Check.ne("", error=MISSING_MEMBER_ID)),
            "member_id_ok": pa.Column(bool),
            "event_type": text(pa.Check.isin(EVENT_TYPES, error=INVALID_EVENT_TYPE)),
            "scope_type": text(pa.Check.isin(SCOPE_TYPES, error=INVALID_SCOPE_TYPE)),
            "scope_id": text(pa.Check.ne("", error=MISSING_SCOPE_ID)),
            "source": text(pa.Check.isin(SOURCES, error=INVALID_SOURCE)),
            "force_optin": text(pa.Check.isin(sorted(_TRUE | _FALSE), error=INVALID_FORCE_OPTIN)),
            "occurred_at_utc": pa.Column(pd.Timestamp, nullable=True),
        },
        checks=[
            pa.Check(member_format, error=INVALID_MEMBER_ID),
            pa.Check(fits, error=VALUE_TOO_LONG),
            pa.Check(occurred_at, error=INVALID_TIMESTAMP),
            pa.Check(timestamp_subscribed, error=INVALID_TIMESTAMP),
        ],
    )


def schema_reasons(frame: pd.DataFrame, config: SubsyncConfig) -> pd.Series:
    """Reason codes per row from the Pandera schema (a list per failing row, indexed like frame)."""
    try:
        tracking_record_schema(config).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        row_cases = cases.loc[cases["index"].notna()]
        if len(row_cases) < len(cases):
            structural = cases.loc[cases["index"].isna(), ["column", "check"]].drop_duplicates()
            raise RuntimeError(
                f"tracking records do not have the expected shape: {structural.to_dict('records')}"
            ) from errors
        index = row_cases["index"].astype("int64").to_numpy()
        return pd.Series(row_cases["check"].to_numpy(), index=index)
    return pd.Series(dtype=object)


def validate(
    rows: pd.DataFrame,
    frame: pd.DataFrame,
    config: SubsyncConfig,
    known_members: pd.DataFrame,
    winners: pd.DataFrame,
) -> ValidationResult:
    """Split raw rows into validated events and rejects (with every reason that applies).

    `frame` is `normalise(rows)`; `known_members` holds the (master_customer_id,
    sub_customer_id) pairs among its well-formed ids that exist in CUSTOMER; `winners` maps
    event_id -> winner_fingerprint (see manifest.winning_versions).
    """
    reasons = schema_reasons(frame, config)

    tracking = config.tracking
    enabled = {"subscribe": tracking.subscribe_enabled, "unsubscribe": tracking.unsubscribe_enabled}
    disabled = frame["event_type"].isin([kind for kind, on in enabled.items() if not on])

    known = known_members.assign(_known=True)
    looked_up = frame[["master_customer_id", "sub_customer_id"]].merge(
        known, how="left", on=["master_customer_id", "sub_customer_id"]
    )
    unknown = frame["member_id_ok"].to_numpy() & looked_up["_known"].isna().to_numpy()

    winner = frame["event_id"].map(winners.set_index("event_id")["winner_fingerprint"])
    duplicate = winner.notna() & winner.ne(rows[FINGERPRINT])

    all_reasons = pd.concat(
        [
            reasons,
            pd.Series(TRACKING_DISABLED, index=frame.index[disabled.to_numpy()]),
            pd.Series(UNKNOWN_MEMBER, index=frame.index[unknown]),
            pd.Series(DUPLICATE_EVENT, index=frame.index[duplicate.to_numpy()]),
        ]
    )
    order = {code: i for i, code in enumerate(REASON_CODES)}
    by_row = (
        pd.DataFrame({"row": all_reasons.index, "reason": all_reasons.to_numpy()})
        .drop_duplicates()
        .assign(order=lambda f: f["reason"].map(order))
        .sort_values(["row", "order"])
        .groupby("row")["reason"]
        .agg(";".join)
    )
    is_rejected = frame.index.isin(by_row.index)

    # Only the columns each result needs are taken: copying the whole normalised and raw frames
    # first (a million rows of some thirty columns) doubled the step's memory.
    kept = np.flatnonzero(~is_rejected)

    def good(source: pd.DataFrame, column: str) -> pd.Series:
        return source[column].take(kept).reset_index(drop=True)

    scope_name = good(frame, "scope_name")
    events = pd.DataFrame(
        {
            "event_id": good(frame, "event_id"),
            "day": good(rows, DAY),
            "file_id": good(rows, FILE_ID).astype("int64"),
            "line_number": good(rows, LINE).astype("int64"),
            "master_customer_id": good(frame, "master_customer_id"),
            "sub_customer_id": good(frame, "sub_customer_id").astype("int64"),
            "event_type": good(frame, "event_type"),
            "scope_type": good(frame, "scope_type"),
            "scope_id": good(frame, "scope_id"),
            "scope_name": scope_name.where(scope_name.ne(""), None),
            "source": good(frame, "source"),
            "force_optin": good(frame, "force_optin_flag").astype(bool),
            "occurred_at": good(frame, "occurred_at_utc"),
            "timestamp_subscribed": good(frame, "timestamp_subscribed_utc"),
        }
    )

    bad_rows = rows.loc[is_rejected]
    rejected = pd.DataFrame(
        {
            "day": bad_rows[DAY],
            "file_id": bad_rows[FILE_ID].astype("int64"),
            "source_file": bad_rows[SOURCE_FILE],
            "line_number": bad_rows[LINE].astype("int64"),
            "event_id": bad_rows["event_id"].str.slice(0, _REJECT_EVENT_ID_MAX),
            "reasons": by_row.reindex(bad_rows.index),
            "error": None,
            "original_values": original_values(bad_rows),
        }
    ).reset_index(drop=True)
    return ValidationResult(events=events, rejected=rejected)


def original_values(rows: pd.DataFrame) -> pd.Series:
    """Each row's values exactly as landed (every column of its file) as a JSON object."""
    columns = [c for c in rows.columns if not str(c).startswith("_")]
    if rows.empty:
        return pd.Series(dtype=object, index=rows.index)
    lines = rows[columns].to_json(orient="records", lines=True, force_ascii=False)
    return pd.Series(lines.strip("\n").split("\n"), index=rows.index)


def file_rejects(files: pd.DataFrame) -> pd.DataFrame:
    """One reject row per file that could not be read at all, with its reason and error."""
    return pd.DataFrame(
        {
            "day": files["day"],
            "file_id": files["file_id"].astype("int64"),
            "source_file": files["path"],
            "line_number": None,
            "event_id": None,
            "reasons": files["status"],
            "error": files["error"],
            "original_values": None,
        }
    ).reset_index(drop=True)
