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
from dataclasses import dataclass

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
    "status_date",
    "status_source",
    "subscribed_date",
    "first_subscribed_date",
    "first_unsubscribed_date",
    "last_subscribe_request_date",
    "last_unsubscribe_request_date",
]
# What a key's later events need besides its status, so resolution can resume from a checkpoint
# instead of replaying the key's whole history: the lowest rank seen (the rank that set a
# non-forced status) and whether a subscribe was ever applied (the first-time rule).
STATE_COLUMNS: list[str] = [*STATUS_COLUMNS, "min_rank", "subscribe_applied"]
# The status columns a key's later events may leave unset (its date and source, and the four
# dates), which then keep their earlier value.
_CARRIED: list[str] = [c for c in STATUS_COLUMNS if c not in (*KEY, "status", "forced")]


def _group_starts(frame: pd.DataFrame) -> np.ndarray:
    """True on the first row of each key, for a frame already sorted by KEY.

    Neighbouring values are compared in the columns' own arrays: turning a million Arrow strings
    into Python objects would cost more than the whole comparison.
    """
    starts = np.zeros(len(frame), dtype=bool)
    if len(frame):
        starts[0] = True
    for column in KEY:
        values = frame[column].array
        starts[1:] |= np.asarray(values[1:] != values[:-1], dtype=bool)
    return starts


def _last_per_group(groups: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the last row of each group among the rows in `mask`, and their groups."""
    positions = np.flatnonzero(mask)
    in_groups = groups[positions]
    last = np.ones(len(positions), dtype=bool)
    last[:-1] = in_groups[1:] != in_groups[:-1]
    return positions[last], in_groups[last]


def _sorted_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes in the values' sort order (sorting codes sorts the values), and their count."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes, len(uniques)


def _fold(code: np.ndarray, bound: int, codes: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """`code` refined by `codes` (0 <= codes < count) as a mixed-radix integer, and its bound.

    Ordering by the result orders by `code`, then by `codes`; the code is made dense again before
    it could overflow.
    """
    if bound * count >= 2**62:
        code, dense = pd.factorize(code, sort=True)
        bound = len(dense)
    return code * count + codes, bound * count


def _order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions that sort `frame` by KEY, occurred_at, event_id; and each sorted row's key code.

    Each key column is factorised in sort order and folded into one integer, so one integer sort
    replaces a multi-key sort of strings. Event ids only break ties of one key at one instant, so
    they are ranked only among the rows that tie.
    """
    key, bound = np.zeros(len(frame), dtype="int64"), 1
    for column in KEY:
        key, bound = _fold(key, bound, *_sorted_codes(frame[column]))
    moment, moment_bound = _fold(
        key, bound, *_sorted_codes(frame["occurred_at"].to_numpy("datetime64[ns]"))
    )
    order = np.argsort(moment, kind="stable")
    in_order = moment[order]
    same = in_order[1:] == in_order[:-1]
    if same.any():
        tied = np.zeros(len(frame), dtype=bool)
        tied[order[1:][same]] = True
        tied[order[:-1][same]] = True
        event_rank = np.zeros(len(frame), dtype="int64")
        codes, count = _sorted_codes(frame["event_id"].iloc[np.flatnonzero(tied)])
        event_rank[tied] = codes
        final, _ = _fold(moment, moment_bound, event_rank, count)
        # Already sorted but for the tied runs: a stable sort of nearly sorted data is cheap.
        order = order[np.argsort(final[order], kind="stable")]
    return order, key[order]


def _in_group_cumsum(values: np.ndarray, starts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group (rows sorted by group; `starts` its first rows)."""
    total = np.cumsum(values, dtype="int64")
    return total - (total - values)[starts][groups]


def _in_group_prior_min(values: np.ndarray, groups: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The minimum of the group's earlier values per row; -1 on a group's first row.

    Each later group is lifted below every earlier one (values are small non-negative ints), so
    one running minimum over the whole array never carries a value across a group boundary.
    """
    step = int(values.max()) + 1
    lift = (int(groups[-1]) - groups) * step
    running = np.minimum.accumulate(values + lift) - lift
    prior = np.empty_like(running)
    prior[0] = -1
    prior[1:] = running[:-1]
    prior[first] = -1
    return prior


@dataclass(frozen=True)
class _Seed:
    """Each group's state before its first given event, one array entry per group."""

    has_status: np.ndarray
    subscribed: np.ndarray
    forced: np.ndarray
    min_rank: np.ndarray
    subscribe_applied: np.ndarray
    unsubscribe_applied: np.ndarray

    @classmethod
    def of(cls, group_keys: pd.DataFrame, initial: pd.DataFrame | None) -> _Seed:
        count = len(group_keys)
        if initial is None or initial.empty:
            none = np.zeros(count, dtype=bool)
            return cls(none, none, none, np.full(count, -1, dtype="int64"), none, none)
        # A left merge keeps the left frame's order: one row per group, in group order.
        seed = group_keys.reset_index(drop=True).merge(
            initial[
                [
                    *KEY,
                    "status",
                    "forced",
                    "min_rank",
                    "subscribe_applied",
                    "first_unsubscribed_date",
                ]
            ],
            on=KEY,
            how="left",
        )
        return cls(
            has_status=seed["status"].notna().to_numpy(bool),
            subscribed=seed["status"].eq(SUBSCRIBED).to_numpy(bool),
            forced=seed["forced"].fillna(False).to_numpy(bool),
            min_rank=seed["min_rank"].fillna(-1).to_numpy("int64"),
            subscribe_applied=seed["subscribe_applied"].fillna(False).to_numpy(bool),
            # The first applied unsubscribe always sets FIRST_UNSUBSCRIBED_DATE.
            unsubscribe_applied=seed["first_unsubscribed_date"].notna().to_numpy(bool),
        )


def resolve(
    events: pd.DataFrame,
    source_ranks: Mapping[str, int],
    initial: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Decide every event: returns the events in key and time order with the decision columns.

    `events` holds EVENT_COLUMNS (extra columns are carried through): `source` canonical,
    `force_optin` bool, `occurred_at` and `timestamp_subscribed` naive UTC (NaT when absent).
    `initial` (STATE_COLUMNS, from `current_status`) is each key's state after its earlier
    events, when only the events after them are given: the result is the same as resolving the
    whole history. Added: `applied`, `decision`, `status_change`, `status_after` (the key's status
    once the event is decided), `under_forced` (the key was forced before the event), `first_time`
    and `rank`. Vectorised over positions of the sorted rows (no groupby): a million events take a
    second.
    """
    if events.empty:
        return events.reset_index(drop=True).assign(
            applied=pd.Series(dtype=bool),
            decision=pd.Series(dtype=object),
            status_change=pd.Series(dtype=bool),
            status_after=pd.Series(dtype=object),
            under_forced=pd.Series(dtype=bool),
            first_time=pd.Series(dtype=object),
            rank=pd.Series(dtype="int64"),
        )
    order, key = _order(events)
    frame = events.take(order).reset_index(drop=True)
    rows = np.arange(len(frame))
    first = np.ones(len(frame), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    groups = np.cumsum(first) - 1
    starts = np.flatnonzero(first)

    source_codes, sources = pd.factorize(frame["source"])
    unknown = sorted(str(source) for source in sources if source not in source_ranks)
    if unknown:
        raise ValueError(f"no rank for source(s) {unknown}")
    rank = np.array([source_ranks[source] for source in sources], dtype="int64")[source_codes]
    forced = frame["force_optin"].to_numpy(bool)
    is_subscribe = frame["event_type"].eq(SUBSCRIBE).to_numpy(bool)
    seed = _Seed.of(frame[KEY].iloc[starts], initial)

    under_forced = (_in_group_cumsum(forced, starts, groups) - forced > 0) | seed.forced[groups]
    in_group = _in_group_prior_min(rank, groups, first)
    seed_rank = seed.min_rank[groups]
    # -1 is "none": the minimum of two ranks, or whichever one exists.
    prior_min_rank = np.where(
        (in_group >= 0) & (seed_rank >= 0),
        np.minimum(in_group, seed_rank),
        np.maximum(in_group, seed_rank),
    )
    outranks_status = (prior_min_rank < 0) | (rank <= prior_min_rank)
    applied = forced | (~under_forced & outranks_status)

    # The status after each event is that of the group's last applied event so far, if any,
    # else the key's status before these events.
    last_applied = np.maximum.accumulate(np.where(applied, rows, -1))
    applied_here = last_applied >= starts[groups]
    has_status = applied_here | seed.has_status[groups]
    subscribed_after = np.where(
        applied_here, is_subscribe[np.maximum(last_applied, 0)], seed.subscribed[groups]
    )
    had_status = np.empty(len(frame), dtype=bool)
    had_status[1:] = has_status[:-1]
    had_status[first] = seed.has_status
    subscribed_before = np.empty(len(frame), dtype=bool)
    subscribed_before[1:] = subscribed_after[:-1]
    subscribed_before[first] = seed.subscribed
    status_change = applied & (~had_status | (subscribed_before != is_subscribe))

    decision = np.select(
        [status_change, applied, under_forced],
        [DECISIONS.index(APPLIED), DECISIONS.index(NO_CHANGE), DECISIONS.index(BLOCKED_BY_FORCED)],
        default=DECISIONS.index(BLOCKED_BY_PRECEDENCE),
    )
    status_after = np.where(has_status, subscribed_after.astype("int64"), 2)

    applied_subscribe = applied & is_subscribe
    applied_unsubscribe = applied & ~is_subscribe
    first_subscribe = (
        applied_subscribe
        & (_in_group_cumsum(applied_subscribe, starts, groups) == 1)
        & ~seed.subscribe_applied[groups]
        & frame["timestamp_subscribed"].notna().to_numpy()
    )
    first_unsubscribe = (
        applied_unsubscribe
        & (_in_group_cumsum(applied_unsubscribe, starts, groups) == 1)
        & ~seed.unsubscribe_applied[groups]
    )
    first_time = np.select([first_subscribe, first_unsubscribe], [0, 1], default=2)

    return frame.assign(
        applied=applied,
        decision=_labels(DECISIONS, decision),
        status_change=status_change,
        status_after=_labels((UNSUBSCRIBED, SUBSCRIBED, None), status_after),
        under_forced=under_forced,
        first_time=_labels((FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE, None), first_time),
        rank=rank,
    )


def _labels(labels: tuple[str | None, ...], codes: np.ndarray) -> pd.Series:
    """The labels at `codes`, as Python strings: inferring a string dtype for a million values
    costs more than the resolution that chose them."""
    return pd.Series(np.array(labels, dtype=object)[codes], dtype=object)


def current_status(decided: pd.DataFrame, initial: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per key (STATE_COLUMNS): what CUS_OPT_IN must hold once every event is applied.

    `decided` is the output of `resolve`, in its order (by key, then time), and `initial` the
    state it was resolved from, if any: keys of `initial` without events come through unchanged.
    The date and source are those of the status change that set the current status; `forced`
    is whether the key was ever forced (from its first forced event on, only forced events
    apply, so a later forced re-statement locks the status without changing its date).
    Positional numpy over the sorted rows: no groupby, so a million events take a second.
    """
    first = _group_starts(decided)
    groups = np.cumsum(first) - 1
    count = int(groups[-1]) + 1 if len(groups) else 0
    last_at, _ = _last_per_group(groups, np.ones(len(decided), dtype=bool))
    change_at, change_group = _last_per_group(groups, decided["status_change"].to_numpy(bool))

    def any_per_group(mask: np.ndarray) -> np.ndarray:
        result = np.zeros(count, dtype=bool)
        result[groups[mask]] = True
        return result

    def last_per_group(mask: np.ndarray, column: str) -> np.ndarray:
        values = np.full(count, np.datetime64("NaT"), dtype="datetime64[ns]")
        at, group = _last_per_group(groups, mask)
        values[group] = decided[column].to_numpy("datetime64[ns]")[at]
        return values

    first_time = decided["first_time"]
    is_subscribe = decided["event_type"].eq(SUBSCRIBE).to_numpy(bool)
    rank = decided["rank"].to_numpy("int64")
    status_source = np.full(count, None, dtype=object)
    status_source[change_group] = decided["source"].take(change_at).to_numpy(object)
    result = decided[KEY].iloc[last_at].reset_index(drop=True)
    result = result.assign(
        status=pd.Series(decided["status_after"].take(last_at).to_numpy(object), dtype=object),
        forced=any_per_group(decided["force_optin"].to_numpy(bool)),
        status_date=last_per_group(decided["status_change"].to_numpy(bool), "occurred_at"),
        status_source=pd.Series(status_source, dtype=object),
        subscribed_date=last_per_group(
            decided["status_change"].to_numpy(bool)
            & decided["status_after"].eq(SUBSCRIBED).to_numpy(bool),
            "occurred_at",
        ),
        first_subscribed_date=last_per_group(
            first_time.eq(FIRST_SUBSCRIBE).to_numpy(bool), "timestamp_subscribed"
        ),
        first_unsubscribed_date=last_per_group(
            first_time.eq(FIRST_UNSUBSCRIBE).to_numpy(bool), "occurred_at"
        ),
        # Rows are in time order within a key, so the last request of a kind is the latest.
        last_subscribe_request_date=last_per_group(is_subscribe, "occurred_at"),
        last_unsubscribe_request_date=last_per_group(~is_subscribe, "occurred_at"),
        min_rank=np.minimum.reduceat(rank, np.flatnonzero(first)) if count else rank,
        subscribe_applied=any_per_group(decided["applied"].to_numpy(bool) & is_subscribe),
    )
    if initial is None or initial.empty:
        return result[STATE_COLUMNS]
    return _after(initial[STATE_COLUMNS], result)


def _after(initial: pd.DataFrame, later: pd.DataFrame) -> pd.DataFrame:
    """Each key's state: `later`'s (from events after `initial`'s) on top of `initial`'s."""
    if later.empty:
        return initial.reset_index(drop=True)
    keys = initial.merge(later[KEY], on=KEY, how="left", indicator=True)["_merge"].eq("both")
    untouched = initial.loc[~keys.to_numpy()]
    before = later[KEY].merge(initial, on=KEY, how="left")
    merged = later.copy()
    # A value the later events did not set is the earlier one (every later date is newer).
    for column in _CARRIED:
        merged[column] = merged[column].where(merged[column].notna(), before[column].to_numpy())
    merged["forced"] = merged["forced"] | before["forced"].fillna(False).to_numpy(bool)
    merged["subscribe_applied"] = merged["subscribe_applied"] | before["subscribe_applied"].fillna(
        False
    ).to_numpy(bool)
    rank = merged["min_rank"].to_numpy("int64")
    earlier_rank = before["min_rank"]
    merged["min_rank"] = np.where(
        earlier_rank.isna().to_numpy(),
        rank,
        np.minimum(rank, earlier_rank.fillna(0).to_numpy("int64")),
    )
    return pd.concat([untouched, merged], ignore_index=True)[STATE_COLUMNS]
