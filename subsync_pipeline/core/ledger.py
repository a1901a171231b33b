"""The event ledger, decisions and rejects in the state database.

The ledger holds every validated event ever seen, keyed by event_id, so a day is always resolved
over the full history of the contacts it touches — the basis of convergence in any day order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.resolution import (
    DECISIONS,
    FIRST_SUBSCRIBE,
    FIRST_UNSUBSCRIBE,
    KEY,
    SUBSCRIBED,
)
from subsync_pipeline.core.sql import (
    analyze,
    code_point,
    in_stage,
    insert_frame,
    read_frame,
    stage_distinct,
    temp_table,
)

MEMBER: list[str] = ["master_customer_id", "sub_customer_id"]


def _stage(conn: Connection, frame: pd.DataFrame, names: list[str]) -> sa.Table:
    """A temporary table of the distinct (`names`) rows of `frame`, typed as in key_states."""
    prefix = f"subsync_{'keys' if 'area' in names else 'members'}"
    return stage_distinct(conn, prefix, state.key_states, frame, names)


def same_member(table: sa.Table | sa.Subquery, other: sa.Table) -> sa.ColumnElement[bool]:
    """The join of two tables' rows of one member."""
    return sa.and_(*(table.c[name] == other.c[name] for name in MEMBER))


# What resolution reads of an event: a change to any of these changes a decision or a CUS_ACTIVITY
# row. Where the event sits in its file (file_id, line_number) does not.
_CONTENT: list[str] = [
    c.name
    for c in state.event_ledger.columns
    if c.name not in ("event_id", "file_id", "line_number")
]


def store_validation(
    conn: Connection,
    days: list[str],
    file_ids: list[int],
    events: pd.DataFrame,
    rejects: pd.DataFrame,
    run_id: str,
    now: datetime,
) -> sa.Table:
    """Replace the days' slice of the ledger and of the rejects; return the touched members as
    a temporary table (MEMBER, `since_at` NULL) for the caller to queue, then drop.

    The slice is what the files read now say about these days; events of files that are no longer
    readable stay, so nothing validated is lost. Touched members are those with an event in the
    slice before or after, so a contact whose event disappeared is re-resolved as well.
    """
    stage = _ledger_like(conn, "subsync_events")
    insert_frame(conn, stage, events, staging=True)
    old = _copy_replaced(conn, stage, days, file_ids)
    touched = _touched(conn, events, old)
    _forget_changed(conn, stage, old)
    _replace_events(conn, stage, old)
    _replace_rejects(conn, days, rejects, run_id, now)
    return touched


def _touched(conn: Connection, events: pd.DataFrame, old: sa.Table) -> sa.Table:
    """The members of the events and of the replaced rows, each once, to queue from.

    Made distinct in pandas from the events in hand: the database's distinct over a million
    staged rows sorted them on disk (1 s of the 1M-event day)."""
    replaced = read_frame(conn, sa.select(*(old.c[name] for name in MEMBER)))
    members = pd.concat(
        [events[MEMBER], replaced.astype({"sub_customer_id": "int64"})], ignore_index=True
    )
    members["since_at"] = pd.NaT
    return stage_since(conn, members, "subsync_touched")


def _ledger_like(conn: Connection, prefix: str) -> sa.Table:
    ledger = state.event_ledger
    columns = [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in ledger.columns]
    return temp_table(conn, prefix, columns)


def _copy_replaced(
    conn: Connection, stage: sa.Table, days: list[str], file_ids: list[int]
) -> sa.Table:
    """The ledger rows the slice replaces, copied out once (normally a handful, none for a new
    day), so later comparisons never go back to the ledger, whose size is the whole history:
    the days' rows of the files read, and any row under an event_id being stored (a union of two
    conditions, not one OR, so each is answered by its own index)."""
    ledger = state.event_ledger
    old = _ledger_like(conn, "subsync_replaced")
    replaced = [sa.select(ledger).where(ledger.c.event_id.in_(sa.select(stage.c.event_id)))]
    if file_ids:
        replaced.append(
            sa.select(ledger).where(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids))
        )
    conn.execute(old.insert().from_select([c.name for c in ledger.columns], sa.union(*replaced)))
    analyze(conn, old)
    return old


def _forget_changed(conn: Connection, stage: sa.Table, old: sa.Table) -> None:
    """Delete the decisions of events that leave the ledger or change, and the checkpoints of
    members with such an event at or before their checkpoint (docs/internals.md)."""
    # Auto-correlation picks the table of the enclosing query, so each NOT EXISTS below reads
    # the other table: removed = replaced rows no staged row repeats exactly, added = the reverse.
    same = sa.and_(
        stage.c.event_id == old.c.event_id,
        *(stage.c[name].is_not_distinct_from(old.c[name]) for name in _CONTENT),
    )
    changes = [*MEMBER, "occurred_at", "event_id"]
    removed = sa.select(*(old.c[name] for name in changes)).where(~sa.exists().where(same))
    added = sa.select(*(stage.c[name] for name in changes)).where(~sa.exists().where(same))
    conn.execute(
        state.decisions.delete().where(
            state.decisions.c.event_id.in_(removed.with_only_columns(old.c.event_id))
        )
    )
    _invalidate(conn, sa.union_all(removed, added).subquery("changed"))
    # The CUS_ACTIVITY row of an event that leaves the ledger goes at the next write.
    records = state.activity_records
    left = sa.select(old.c.event_id).where(~sa.exists().where(stage.c.event_id == old.c.event_id))
    conn.execute(records.update().where(records.c.event_id.in_(left)).values(gone=True))


def _replace_events(conn: Connection, stage: sa.Table, old: sa.Table) -> None:
    ledger = state.event_ledger
    conn.execute(ledger.delete().where(ledger.c.event_id.in_(sa.select(old.c.event_id))))
    # In the member index's order: a day's events land on leaf pages spread over the whole
    # history's index, and visiting each page once, in order, is what keeps the cost of that
    # index flat as history grows (100k events into a 30M-event ledger: 2.8 s -> 1.4 s).
    in_index_order = sa.select(*stage.c).order_by(
        stage.c.master_customer_id, stage.c.sub_customer_id, stage.c.occurred_at
    )
    conn.execute(ledger.insert().from_select([c.name for c in ledger.columns], in_index_order))
    old.drop(conn)
    stage.drop(conn)


def _replace_rejects(
    conn: Connection, days: list[str], rejects: pd.DataFrame, run_id: str, now: datetime
) -> None:
    rejected = state.rejected_records
    conn.execute(rejected.delete().where(rejected.c.day.in_(days)))
    insert_frame(conn, rejected, rejects.assign(rejected_in_run=run_id, rejected_at=now))


def _invalidate(conn: Connection, changed: sa.Subquery) -> None:
    """Delete the checkpoints of members with a changed event at or before the checkpoint."""
    states = state.key_states
    stale = (
        sa.select(*(states.c[n] for n in MEMBER))
        .join(changed, same_member(changed, states))
        .where(
            sa.tuple_(changed.c.occurred_at, code_point(conn, changed.c.event_id))
            <= sa.tuple_(states.c.through_at, code_point(conn, states.c.through_event_id))
        )
    )
    # Found first, then deleted only if there are any: normally none are (a day's events come
    # after its contacts' checkpoints), and the delete would scan key_states a second time.
    found = _stage(conn, pd.DataFrame(columns=MEMBER), MEMBER)
    if conn.execute(found.insert().from_select(MEMBER, stale.distinct())).rowcount:
        analyze(conn, found)
        conn.execute(states.delete().where(in_stage(states, found, MEMBER)))
    found.drop(conn)


_BOOLEAN = ("force_optin", "mapped", "status_change", "forced", "subscribe_applied")
_INTEGER = ("sub_customer_id", "min_rank")


def _read_staged(conn: Connection, query: sa.Select[Any], stage: sa.Table) -> pd.DataFrame:
    """`query`'s rows in the resolution's types, then the stage it joins dropped."""
    frame = read_frame(conn, query)
    stage.drop(conn)
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns read back as the resolution's types, whatever the database gave (SQLite returns
    booleans as integers and times as text)."""
    for column in frame.columns:
        if column.endswith(("_date", "_at")) or column == "timestamp_subscribed":
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
        elif column in _BOOLEAN:
            frame[column] = frame[column].astype(bool)
        elif column in _INTEGER:
            frame[column] = frame[column].astype("int64")
    return frame


def member_history(
    conn: Connection,
    members: pd.DataFrame,
    besides: tuple[list[str], list[int]] | None = None,
) -> pd.DataFrame:
    """Every ledger event of `members`, whatever day it came from.

    `besides=(days, file_ids)` leaves out the slice those days' files own, for a caller that
    holds that slice in memory already (it has just stored it).
    """
    ledger = state.event_ledger
    stage = _stage(conn, members, MEMBER)
    query = sa.select(ledger).where(in_stage(ledger, stage, MEMBER))
    if besides is not None and besides[1]:
        days, file_ids = besides
        query = query.where(~sa.and_(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids)))
    return _read_staged(conn, query, stage)


def events_after(conn: Connection, checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Ledger events of each member after its checkpoint (`through_at`, `through_event_id`)."""
    ledger = state.event_ledger
    through = [*MEMBER, "through_at", "through_event_id"]
    stage = stage_distinct(conn, "subsync_through", state.key_states, checkpoints, through, MEMBER)
    query = (
        sa.select(ledger)
        .join(
            stage,
            sa.and_(
                same_member(ledger, stage),
                # The index range; the tuple comparison then settles ties at through_at.
                ledger.c.occurred_at >= stage.c.through_at,
            ),
        )
        .where(
            sa.tuple_(ledger.c.occurred_at, code_point(conn, ledger.c.event_id))
            > sa.tuple_(stage.c.through_at, code_point(conn, stage.c.through_event_id))
        )
    )
    return _read_staged(conn, query, stage)


def key_states(conn: Connection, members: pd.DataFrame, config_hash: str) -> pd.DataFrame:
    """The checkpoints of `members` made under this config (others are as good as none)."""
    states = state.key_states
    stage = _stage(conn, members, MEMBER)
    query = sa.select(*(c for c in states.c if c.name != "config_hash")).where(
        in_stage(states, stage, MEMBER), states.c.config_hash == config_hash
    )
    return _read_staged(conn, query, stage)


def current_states(conn: Connection, members: pd.DataFrame) -> pd.DataFrame:
    """The status of each key of `members` (MEMBER, `since_at`) that moved since `since_at`.

    A key row is rewritten whenever events of its key are decided, with the member's latest
    event as its `through_at`; so a key that moved since `since_at` (NULL: ever) has
    `through_at` at or after it, and one that did not, before it.
    """
    states = state.key_states
    stage = stage_since(conn, members)
    query = sa.select(states).join(stage, since_join(states, states.c.through_at, stage))
    return _read_staged(conn, query, stage)


def stage_since(conn: Connection, members: pd.DataFrame, prefix: str = "subsync_since") -> sa.Table:
    """A temporary table of `members` (MEMBER, `since_at`), for `since_join`."""
    return stage_distinct(conn, prefix, state.work_queue, members, [*MEMBER, "since_at"], MEMBER)


def since_join(
    table: sa.Table, at: sa.ColumnElement[Any], stage: sa.Table
) -> sa.ColumnElement[bool]:
    """Rows of `table` that are a staged member's with `at` from its `since_at` on (NULL: all),
    through the member index."""
    return sa.and_(
        same_member(table, stage), sa.or_(stage.c.since_at.is_(None), at >= stage.c.since_at)
    )


def store_resolution(
    conn: Connection,
    replayed: pd.DataFrame,
    decided: pd.DataFrame,
    states: pd.DataFrame,
    config_hash: str,
    run_id: str,
    now: datetime,
) -> None:
    """Keep the decisions (the audit trail) and the checkpoints of a resolution.

    `replayed` members were resolved over their whole history: all their decisions and
    checkpoints are replaced. Other members of `decided` resumed from their checkpoints: their
    new events' decisions are added. `states` holds the new checkpoints of the keys with events
    decided now (STATE_COLUMNS, `mapped`, `through_at`, `through_event_id`).
    """
    decisions, ledger = state.decisions, state.event_ledger
    stage = _stage(conn, replayed, MEMBER)
    # Through the ledger's member index: decisions of events that left the ledger went with them
    # (`store_validation`).
    of_replayed = sa.select(ledger.c.event_id).where(in_stage(ledger, stage, MEMBER))
    conn.execute(decisions.delete().where(decisions.c.event_id.in_(of_replayed)))
    conn.execute(state.key_states.delete().where(in_stage(state.key_states, stage, MEMBER)))
    stage.drop(conn)
    resumed = decided.loc[~is_member_of(decided, replayed), ["event_id"]]
    if len(resumed):
        ids = stage_distinct(conn, "subsync_ids", decisions, resumed, ["event_id"])
        conn.execute(decisions.delete().where(decisions.c.event_id.in_(sa.select(ids.c.event_id))))
        ids.drop(conn)
    rows = decided[[name for name in state.DECISION_COLUMNS if name in decided]]
    # In event_id order, the order of the table's key: a million decisions in key (contact)
    # order went into the primary key at random places, at half the speed (bench/RESULTS.md).
    by_id = pc.sort_indices(pa.array(rows["event_id"], pa.large_string())).to_numpy()
    insert_frame(conn, decisions, rows.take(by_id).assign(decided_in_run=run_id, decided_at=now))

    # Of resumed members, only the keys with events decided now are in `states`; the others
    # keep their rows, states and older throughs (docs/internals.md, key_states).
    changed = states.loc[~is_member_of(states, replayed), KEY]
    if len(changed):
        stage = _stage(conn, changed, KEY)
        conn.execute(state.key_states.delete().where(in_stage(state.key_states, stage, KEY)))
        stage.drop(conn)
    insert_frame(conn, state.key_states, states.assign(config_hash=config_hash))


def is_member_of(frame: pd.DataFrame, members: pd.DataFrame) -> pd.Series:
    """Which rows of `frame` belong to one of `members` (both with the MEMBER columns)."""
    keys = pd.MultiIndex.from_frame(members[MEMBER].astype({"sub_customer_id": "int64"}))
    probe = pd.MultiIndex.from_frame(frame[MEMBER].astype({"sub_customer_id": "int64"}))
    return pd.Series(probe.isin(keys), index=frame.index)


def status_changes(conn: Connection, members: pd.DataFrame) -> pd.DataFrame:
    """The decided status changes of `members` (MEMBER, `since_at`) from each one's `since_at`
    (NULL: all of them), with what their CUS_ACTIVITY rows say."""
    decided = ("area", "mapped", "decision", "status_change", "first_time")
    stage = stage_since(conn, members)
    query = _status_changes(stage, state.event_ledger, *(state.decisions.c[n] for n in decided))
    history = _read_staged(conn, query, stage)
    history["opt_in_code"] = history["area"].where(history["mapped"])
    return history


def _status_changes(stage: sa.Table, *columns: Any) -> sa.Select[Any]:
    """`columns` of the decided status changes of the members in `stage` (`stage_since`)."""
    ledger, decisions = state.event_ledger, state.decisions
    return (
        sa.select(*columns)
        .select_from(ledger)
        .join(decisions, decisions.c.event_id == ledger.c.event_id)
        .join(stage, since_join(ledger, ledger.c.occurred_at, stage))
        .where(decisions.c.status_change)
    )


def count_status_changes(conn: Connection, members: pd.DataFrame) -> int:
    """How many rows `status_changes(members)` would read, counted in the database."""
    if members.empty:
        return 0
    stage = stage_since(conn, members)
    count = int(conn.execute(_status_changes(stage, sa.func.count())).scalar_one())
    stage.drop(conn)
    return count


def day_figures(conn: Connection, days: list[str]) -> dict[str, Any]:
    """Counts of the decisions of the days' events, whichever run made them (SPEC §8): by
    decision, status changes, first-time events. Counted in the database: a big day has a
    million decisions and a handful of figures."""
    table = state.decisions
    grouped = [table.c.decision, table.c.status_change, table.c.first_time]
    counts = read_frame(
        conn,
        sa.select(*grouped, sa.func.count().label("events"))
        .where(table.c.day.in_(days))
        .group_by(*grouped),
    )
    events = counts["events"].astype("int64")
    by_decision = events.groupby(counts["decision"]).sum()
    return {
        "decisions": {name: int(by_decision.get(name, 0)) for name in DECISIONS},
        "status_changes": int(events[counts["status_change"].astype(bool)].sum()),
        "first_subscribe": int(events[counts["first_time"].eq(FIRST_SUBSCRIBE)].sum()),
        "first_unsubscribe": int(events[counts["first_time"].eq(FIRST_UNSUBSCRIBE)].sum()),
    }


def blocked_keys(conn: Connection, days: list[str], sample: int) -> tuple[int, pd.DataFrame]:
    """How many keys of the days' contacts have a latest opposite request newer than their
    status (a request the precedence rules blocked), and the first `sample` of them."""
    states, ledger = state.key_states, state.event_ledger
    of_days = sa.select(*(ledger.c[n] for n in MEMBER)).where(ledger.c.day.in_(days))
    subscribed = states.c.status == SUBSCRIBED
    opposite = sa.case(
        (subscribed, states.c.last_unsubscribe_request_date),
        else_=states.c.last_subscribe_request_date,
    )
    blocked = sa.and_(
        sa.tuple_(*(states.c[n] for n in MEMBER)).in_(of_days),
        opposite > states.c.status_date,
    )
    # Two queries, not one with a window count: ordered and limited, the planner drives the
    # semi-join from key_states' key order, which over a 30M-event ledger probed every key's
    # history (322 s for a 100k day, bench/RESULTS.md item 23); the limit then stops early only
    # without a count to finish.
    count = conn.execute(sa.select(sa.func.count()).where(blocked)).scalar_one()
    first = (
        sa.select(states)
        .where(blocked)
        .order_by(states.c.master_customer_id, states.c.sub_customer_id, states.c.area)
        .limit(sample)
    )
    return int(count), _typed(read_frame(conn, first))


def rejects_of_days(conn: Connection, days: list[str]) -> pd.DataFrame:
    """The days' rejected rows as stored (state.REJECT_COLUMNS), in file and line order."""
    table = state.rejected_records
    query = (
        sa.select(*(table.c[name] for name in state.REJECT_COLUMNS))
        .where(table.c.day.in_(days))
        .order_by(table.c.reject_id)
    )
    return read_frame(conn, query)
