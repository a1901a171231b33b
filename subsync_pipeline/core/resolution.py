"""The precedence hierarchy of SPEC §4, vectorised over every event of the keys being resolved.

Rules, per key (MASTER_CUSTOMER_ID, SUB_CUSTOMER_ID, area), events in (occurred_at, event_id) order:
- under a forced status only a forced event applies; otherwise an event applies when it is forced,
  when the key has no status yet, or when its rank <= the rank of the event that set the status;
- an applied event sets status, rank and forced-ness; one that changes the status is a
  status change;
- the first applied subscribe is the key's first subscribe, a `first_subscribe` event only if it
  carries timestamp_subscribed; the first applied unsubscribe is `first_unsubscribe`.

Why this is a cumulative computation and not a fold: an applied non-forced event never raises the
current rank, so the rank that set the status is the running minimum of all earlier ranks of the
key; and a forced status can only be replaced by another forced one, so from a key's first forced
event on, exactly the forced events apply.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

KEY: list[str] = ["master_customer_id", "sub_customer_id", "area"]
EVENT_COLUMNS: list[str] = [
    *KEY,
    "event_id",
    "event_type",
    "source",
    "force_optin",
    "occurred_at",
    "timestamp_subscribed",
]

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"

APPLIED = "applied"
NO_CHANGE = "no_change"
BLOCKED_BY_PRECEDENCE = "blocked_by_precedence"
BLOCKED_BY_FORCED = "blocked_by_forced"
DECISIONS: tuple[str, ...] = (APPLIED, NO_CHANGE, BLOCKED_BY_PRECEDENCE, BLOCKED_BY_FORCED)

FIRST_SUBSCRIBE = "first_subscribe"
FIRST_UNSUBSCRIBE = "first_unsubscribe"

STATUS_COLUMNS: list[str] = [
    *KEY,
    "status",
    "forced",
    "opt_in_date",
    "opt_in_source",
    "first_subscribed_date",
    "first_unsubscribed_date",
    "last_subscribe_request_date",
    "last_unsubscribe_request_date",
]


def _group_ids(frame: pd.DataFrame) -> np.ndarray:
    """0, 1, 2, ... per key, for a frame already sorted by KEY."""
    starts = np.zeros(len(frame), dtype=bool)
    if len(frame):
        starts[0] = True
    for column in KEY:
        values = frame[column].to_numpy()
        starts[1:] |= values[1:] != values[:-1]
    return np.cumsum(starts) - 1


def _last_per_group(groups: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the last row of each group among the rows in `mask`, and their groups."""
    positions = np.flatnonzero(mask)
    in_groups = groups[positions]
    last = np.ones(len(positions), dtype=bool)
    last[:-1] = in_groups[1:] != in_groups[:-1]
    return positions[last], in_groups[last]


def resolve(events: pd.DataFrame, source_ranks: Mapping[str, int]) -> pd.DataFrame:
    """Decide every event: returns the events in key and time order with the decision columns.

    `events` holds EVENT_COLUMNS (extra columns are carried through): `source` canonical,
    `force_optin` bool, `occurred_at` and `timestamp_subscribed` naive UTC (NaT when absent).
    Added: `applied`, `decision`, `status_change`, `status_after` (the key's status once the event
    is decided), `under_forced` (the key was forced before the event) and `first_time`.
    """
    frame = events.sort_values([*KEY, "occurred_at", "event_id"], kind="mergesort")
    frame = frame.reset_index(drop=True)
    if frame.empty:
        return frame.assign(
            applied=pd.Series(dtype=bool),
            decision=pd.Series(dtype=object),
            status_change=pd.Series(dtype=bool),
            status_after=pd.Series(dtype=object),
            under_forced=pd.Series(dtype=bool),
            first_time=pd.Series(dtype=object),
        )

    group = _group_ids(frame)
    rank = frame["source"].map(source_ranks)
    if rank.isna().any():
        unknown = sorted(frame.loc[rank.isna(), "source"].astype(str).unique())
        raise ValueError(f"no rank for source(s) {unknown}")
    rank = rank.astype("int64")
    forced = frame["force_optin"].astype(bool)

    forced_count = forced.astype("int64").groupby(group).cumsum()
    under_forced = (forced_count - forced.astype("int64")) > 0
    prior_min_rank = rank.groupby(group).cummin().groupby(group).shift(1)
    outranks_status = prior_min_rank.isna() | (rank <= prior_min_rank)
    applied = (forced | (~under_forced & outranks_status)).astype(bool)

    new_status = frame["event_type"].map({SUBSCRIBE: SUBSCRIBED, UNSUBSCRIBE: UNSUBSCRIBED})
    status_after = new_status.where(applied).groupby(group).ffill()
    status_before = status_after.groupby(group).shift(1)
    status_change = applied & (status_before.isna() | (status_before != new_status))

    decision = np.select(
        [status_change.to_numpy(), applied.to_numpy(), under_forced.to_numpy()],
        [APPLIED, NO_CHANGE, BLOCKED_BY_FORCED],
        default=BLOCKED_BY_PRECEDENCE,
    )

    is_subscribe = frame["event_type"].eq(SUBSCRIBE)
    applied_subscribe = applied & is_subscribe
    applied_unsubscribe = applied & ~is_subscribe
    first_subscribe = (
        applied_subscribe
        & applied_subscribe.astype("int64").groupby(group).cumsum().eq(1)
        & frame["timestamp_subscribed"].notna()
    )
    first_unsubscribe = applied_unsubscribe & applied_unsubscribe.astype("int64").groupby(
        group
    ).cumsum().eq(1)
    first_time = pd.Series(None, index=frame.index, dtype=object)
    first_time.loc[first_subscribe] = FIRST_SUBSCRIBE
    first_time.loc[first_unsubscribe] = FIRST_UNSUBSCRIBE

    return frame.assign(
        applied=applied,
        decision=decision,
        status_change=status_change.astype(bool),
        status_after=status_after,
        under_forced=under_forced.astype(bool),
        first_time=first_time,
    )


def current_status(decided: pd.DataFrame) -> pd.DataFrame:
    """One row per key with a status: what CUS_OPT_IN must hold once every event is applied.

    `decided` is the output of `resolve`, in its order (by key, then time). The date and source
    are those of the status change that set the current status; `forced` is the key's current
    forced-ness (a later forced re-statement of the same status locks it without changing its
    date). Positional numpy over the sorted rows: no groupby, so a million events take a second.
    """
    groups = _group_ids(decided)
    count = int(groups[-1]) + 1 if len(groups) else 0
    change_at, change_group = _last_per_group(groups, decided["status_change"].to_numpy(bool))
    applied_at, applied_group = _last_per_group(groups, decided["applied"].to_numpy(bool))

    forced = np.zeros(count, dtype=bool)
    forced[applied_group] = (
        decided["force_optin"].to_numpy(bool)[applied_at]
        | decided["under_forced"].to_numpy(bool)[applied_at]
    )

    def by_group(mask: np.ndarray, column: str) -> np.ndarray:
        values = np.full(count, np.datetime64("NaT"), dtype="datetime64[ns]")
        at, group = _last_per_group(groups, mask)
        values[group] = decided[column].to_numpy("datetime64[ns]")[at]
        return values[change_group]

    first_time = decided["first_time"].to_numpy(object)
    event_type = decided["event_type"].to_numpy(object)
    result = decided.iloc[change_at][KEY].reset_index(drop=True)
    result["status"] = decided["status_after"].to_numpy(object)[change_at]
    result["forced"] = forced[change_group]
    result["opt_in_date"] = decided["occurred_at"].to_numpy("datetime64[ns]")[change_at]
    result["opt_in_source"] = decided["source"].to_numpy(object)[change_at]
    result["first_subscribed_date"] = by_group(
        first_time == FIRST_SUBSCRIBE, "timestamp_subscribed"
    )
    result["first_unsubscribed_date"] = by_group(first_time == FIRST_UNSUBSCRIBE, "occurred_at")
    # Rows are in time order within a key, so the last request of a kind is the latest one.
    result["last_subscribe_request_date"] = by_group(event_type == SUBSCRIBE, "occurred_at")
    result["last_unsubscribe_request_date"] = by_group(event_type == UNSUBSCRIBE, "occurred_at")
    return result[STATUS_COLUMNS]
