"""The event ledger, decisions and rejects in the state database.

The ledger holds every validated event ever seen, keyed by event_id, so a day is always resolved
over the full history of the contacts it touches — the basis of convergence in any day order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.resolution import KEY
from subsync_pipeline.core.sql import (
    analyze,
    code_point,
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


def _member_stage(conn: Connection, members: pd.DataFrame) -> sa.Table:
    return _stage(conn, members, MEMBER)


def _of_members(table: sa.Table, members: sa.Table) -> sa.ColumnElement[bool]:
    # A semi-join the planners drive from the (small) member list through the member index.
    return sa.tuple_(table.c.master_customer_id, table.c.sub_customer_id).in_(
        sa.select(members.c.master_customer_id, members.c.sub_customer_id)
    )


# What resolution reads of an event: a change to any of these changes a decision or a CUS_ACTIVITY
# row. Where the event sits in its file (file_id, line_number) does not.
_CONTENT: list[str] = [
    c.name
    for c in state.event_ledger.columns
    if c.name not in ("event_id", "file_id", "line_number")
]


@dataclass(frozen=True)
class StoredSlice:
    """What storing a slice changed: contacts to re-resolve, and events that left the ledger."""

    touched_members: pd.DataFrame
    removed_event_ids: pd.Series


def store_validation(
    conn: Connection,
    days: list[str],
    file_ids: list[int],
    events: pd.DataFrame,
    rejects: pd.DataFrame,
    run_id: str,
    now: datetime,
) -> StoredSlice:
    """Replace the days' slice of the ledger and of the rejects.

    The slice is what the files read now say about these days; events of files that are no longer
    readable stay, so nothing validated is lost. Touched members are those with an event in the
    slice before or after, so a contact whose event disappeared is re-resolved as well. A member
    whose events changed at or before its checkpoint loses the checkpoint (see `key_states`).
    """
    ledger = state.event_ledger
    stage = temp_table(
        conn,
        "subsync_events",
        [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in ledger.columns],
    )
    insert_frame(conn, stage, events, staging=True)
    # The rows this replaces, copied out once (normally a handful, none for a new day) so that
    # the comparisons below never go back to the ledger, whose size is the whole history: the
    # days' slice of the files read, and any row under an event_id being stored (a union of two
    # conditions, not one OR, so each is answered by its own index).
    old = temp_table(
        conn,
        "subsync_replaced",
        [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in ledger.columns],
    )
    replaced = [sa.select(ledger).where(ledger.c.event_id.in_(sa.select(stage.c.event_id)))]
    if file_ids:
        replaced.append(
            sa.select(ledger).where(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids))
        )
    conn.execute(old.insert().from_select([c.name for c in ledger.columns], sa.union(*replaced)))
    analyze(conn, old)
    before = read_frame(conn, sa.select(old.c.master_customer_id, old.c.sub_customer_id).distinct())

    # Auto-correlation picks the table of the enclosing query, so each NOT EXISTS below reads
    # the other table: removed = replaced rows no staged row repeats exactly, added = the reverse.
    same = sa.and_(
        stage.c.event_id == old.c.event_id,
        *(stage.c[name].is_not_distinct_from(old.c[name]) for name in _CONTENT),
    )
    removed = sa.select(
        old.c.master_customer_id, old.c.sub_customer_id, old.c.occurred_at, old.c.event_id
    ).where(~sa.exists().where(same))
    added = sa.select(
        stage.c.master_customer_id, stage.c.sub_customer_id, stage.c.occurred_at, stage.c.event_id
    ).where(~sa.exists().where(same))
    removed_rows = read_frame(conn, removed)
    conn.execute(
        state.decisions.delete().where(
            state.decisions.c.event_id.in_(removed.with_only_columns(old.c.event_id))
        )
    )
    _invalidate(conn, sa.union_all(removed, added).subquery("changed"))

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
    _bump_generation(conn)
    _record_unresolved(conn, run_id, days, file_ids, now)

    rejected = state.rejected_records
    conn.execute(rejected.delete().where(rejected.c.day.in_(days)))
    insert_frame(conn, rejected, rejects.assign(rejected_in_run=run_id, rejected_at=now))

    touched = pd.concat([before, events[MEMBER]], ignore_index=True)
    touched["sub_customer_id"] = touched["sub_customer_id"].astype("int64")
    return StoredSlice(
        touched_members=touched.drop_duplicates().reset_index(drop=True),
        removed_event_ids=removed_rows["event_id"].astype(str).reset_index(drop=True),
    )


def _record_unresolved(
    conn: Connection, run_id: str, days: list[str], file_ids: list[int], now: datetime
) -> None:
    table = state.unresolved_slices
    # A retried validation step stores its slice again under the same run id.
    conn.execute(table.delete().where(table.c.run_id == run_id))
    conn.execute(
        table.insert().values(
            run_id=run_id, days=json.dumps(days), file_ids=json.dumps(file_ids), recorded_at=now
        )
    )


def unresolved(conn: Connection) -> pd.DataFrame:
    """The slices stored and not yet resolved (see `state.unresolved_slices`)."""
    table = state.unresolved_slices
    return read_frame(conn, sa.select(table.c.run_id, table.c.days, table.c.file_ids))


def members_of_slices(conn: Connection, slices: pd.DataFrame) -> pd.DataFrame:
    """The members with a ledger event in one of `slices`; for the whole-ledger row, those with
    an event that has no decision."""
    ledger = state.event_ledger
    found = [pd.DataFrame({"master_customer_id": pd.Series(dtype=str), "sub_customer_id": 0})]
    for days, file_ids in slices[["days", "file_ids"]].itertuples(index=False):
        if pd.isna(days):
            where = ~sa.exists().where(state.decisions.c.event_id == ledger.c.event_id)
        elif json.loads(file_ids):
            where = sa.and_(
                ledger.c.day.in_(json.loads(days)), ledger.c.file_id.in_(json.loads(file_ids))
            )
        else:
            continue
        query = sa.select(ledger.c.master_customer_id, ledger.c.sub_customer_id).where(where)
        found.append(read_frame(conn, query.distinct()))
    members = pd.concat(found, ignore_index=True).drop_duplicates(ignore_index=True)
    return members.astype({"master_customer_id": str, "sub_customer_id": "int64"})


def clear_unresolved(conn: Connection, run_ids: list[str]) -> None:
    """Forget slices whose events a resolution has just decided (in its transaction)."""
    table = state.unresolved_slices
    conn.execute(table.delete().where(table.c.run_id.in_(run_ids)))


def _invalidate(conn: Connection, changed: sa.Subquery) -> None:
    """Delete the checkpoints of members with a changed event at or before the checkpoint."""
    states = state.key_states
    stale = (
        sa.select(states.c.master_customer_id, states.c.sub_customer_id)
        .join(
            changed,
            sa.and_(
                changed.c.master_customer_id == states.c.master_customer_id,
                changed.c.sub_customer_id == states.c.sub_customer_id,
            ),
        )
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
        conn.execute(
            states.delete().where(
                sa.tuple_(states.c.master_customer_id, states.c.sub_customer_id).in_(
                    sa.select(found.c.master_customer_id, found.c.sub_customer_id)
                )
            )
        )
    found.drop(conn)


def _bump_generation(conn: Connection, table: sa.Table = state.ledger_generation) -> int:
    bumped = conn.execute(
        table.update().where(table.c.id == 1).values(generation=table.c.generation + 1)
    ).rowcount
    if not bumped:
        conn.execute(table.insert().values(id=1, generation=1))
    return _generation(conn, table)


def _generation(conn: Connection, table: sa.Table) -> int:
    value = conn.execute(sa.select(table.c.generation).where(table.c.id == 1)).scalar()
    return int(value or 0)


def generation(conn: Connection) -> int:
    """How many times the ledger has changed; callers hold the state lock or accept a race."""
    return _generation(conn, state.ledger_generation)


def resolution_generation(conn: Connection) -> int:
    """How many resolutions have been stored (see `record_pending`)."""
    return _generation(conn, state.resolution_generation)


def _history_frame(history: pd.DataFrame) -> pd.DataFrame:
    for column in ("occurred_at", "timestamp_subscribed"):
        history[column] = pd.to_datetime(history[column]).astype("datetime64[ns]")
    history["force_optin"] = history["force_optin"].astype(bool)
    history["sub_customer_id"] = history["sub_customer_id"].astype("int64")
    return history


def _besides(
    ledger: sa.Table, besides: tuple[list[str], list[int]] | None
) -> list[sa.ColumnElement[bool]]:
    if besides is None or not besides[1]:
        return []
    days, file_ids = besides
    return [~sa.and_(ledger.c.day.in_(days), ledger.c.file_id.in_(file_ids))]


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
    stage = _member_stage(conn, members)
    query = sa.select(ledger).where(_of_members(ledger, stage), *_besides(ledger, besides))
    history = read_frame(conn, query)
    stage.drop(conn)
    return _history_frame(history)


def events_after(
    conn: Connection,
    checkpoints: pd.DataFrame,
    besides: tuple[list[str], list[int]] | None = None,
) -> pd.DataFrame:
    """Ledger events of each member after its checkpoint (`through_at`, `through_event_id`).

    Normally nothing: a day's new events are in memory (`besides`). What comes back are events
    stored by a run that died before resolving them.
    """
    ledger = state.event_ledger
    stage = temp_table(
        conn,
        "subsync_checkpoints",
        [
            sa.Column("master_customer_id", sa.String(24), primary_key=True),
            sa.Column("sub_customer_id", sa.Integer, primary_key=True),
            sa.Column("through_at", sa.DateTime, nullable=False),
            sa.Column("through_event_id", sa.String(64), nullable=False),
        ],
    )
    insert_frame(conn, stage, checkpoints, staging=True)
    query = (
        sa.select(ledger)
        .join(
            stage,
            sa.and_(
                ledger.c.master_customer_id == stage.c.master_customer_id,
                ledger.c.sub_customer_id == stage.c.sub_customer_id,
                # The index range; the tuple comparison then settles ties at through_at.
                ledger.c.occurred_at >= stage.c.through_at,
            ),
        )
        .where(
            sa.tuple_(ledger.c.occurred_at, code_point(conn, ledger.c.event_id))
            > sa.tuple_(stage.c.through_at, code_point(conn, stage.c.through_event_id)),
            *_besides(ledger, besides),
        )
    )
    history = read_frame(conn, query)
    stage.drop(conn)
    return _history_frame(history)


def key_states(conn: Connection, members: pd.DataFrame, config_hash: str) -> pd.DataFrame:
    """The checkpoints of `members` made under this config (others are as good as none)."""
    states = state.key_states
    stage = _member_stage(conn, members)
    frame = read_frame(
        conn,
        sa.select(*(c for c in states.c if c.name != "config_hash")).where(
            _of_members(states, stage), states.c.config_hash == config_hash
        ),
    )
    stage.drop(conn)
    return _state_frame(frame)


def current_states(conn: Connection, members: pd.DataFrame) -> pd.DataFrame:
    """Each key's status as last resolved, for members a failed run left unwritten."""
    states = state.key_states
    stage = _member_stage(conn, members)
    frame = read_frame(conn, sa.select(states).where(_of_members(states, stage)))
    stage.drop(conn)
    return _state_frame(frame)


def _state_frame(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if column.endswith(("_date", "_at")):
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    for column in ("mapped", "forced", "subscribe_applied"):
        if column in frame:
            frame[column] = frame[column].astype(bool)
    for column in ("sub_customer_id", "min_rank"):
        if column in frame:
            frame[column] = frame[column].astype("int64")
    return frame


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
    stage = _member_stage(conn, replayed)
    # Through the ledger's member index: decisions of events that left the ledger went with them
    # (`store_validation`).
    conn.execute(
        decisions.delete().where(
            decisions.c.event_id.in_(sa.select(ledger.c.event_id).where(_of_members(ledger, stage)))
        )
    )
    conn.execute(state.key_states.delete().where(_of_members(state.key_states, stage)))
    stage.drop(conn)
    resumed = decided.loc[~is_member_of(decided, replayed), ["event_id"]]
    if len(resumed):
        ids = temp_table(
            conn, "subsync_ids", [sa.Column("event_id", sa.String(64), primary_key=True)]
        )
        insert_frame(conn, ids, resumed.drop_duplicates(), staging=True)
        conn.execute(decisions.delete().where(decisions.c.event_id.in_(sa.select(ids.c.event_id))))
        ids.drop(conn)
    rows = decided[[name for name in state.DECISION_COLUMNS if name in decided]]
    # In event_id order, the order of the table's key: a million decisions in key (contact)
    # order went into the primary key at random places, at half the speed (bench/RESULTS.md).
    by_id = pc.sort_indices(pa.array(rows["event_id"], pa.large_string())).to_numpy()
    insert_frame(conn, decisions, rows.take(by_id).assign(decided_in_run=run_id, decided_at=now))

    # Of resumed members, only the keys with events decided now are in `states`; the others
    # keep their rows, states and older throughs (see `state.key_states`).
    changed = states.loc[~is_member_of(states, replayed), KEY]
    if len(changed):
        stage = _stage(conn, changed, KEY)
        keys = state.key_states.c
        conn.execute(
            state.key_states.delete().where(
                sa.tuple_(keys.master_customer_id, keys.sub_customer_id, keys.area).in_(
                    sa.select(stage.c.master_customer_id, stage.c.sub_customer_id, stage.c.area)
                )
            )
        )
        stage.drop(conn)
    insert_frame(conn, state.key_states, states.assign(config_hash=config_hash))


def is_member_of(frame: pd.DataFrame, members: pd.DataFrame) -> pd.Series:
    """Which rows of `frame` belong to one of `members` (both with the MEMBER columns)."""
    keys = pd.MultiIndex.from_frame(members[MEMBER].astype({"sub_customer_id": "int64"}))
    probe = pd.MultiIndex.from_frame(frame[MEMBER].astype({"sub_customer_id": "int64"}))
    return pd.Series(probe.isin(keys), index=frame.index)


def record_pending(conn: Connection, targets: list[str], run_id: str) -> int:
    """Note that the Personify `targets` lag this run's new decisions; returns the resolution
    generation they were stored under, which the run's writers compare with the newest."""
    generation = _bump_generation(conn, state.resolution_generation)
    table = state.pending_writes
    # A retried step resolves again under the same run id.
    conn.execute(table.delete().where(table.c.run_id == run_id))
    if targets:
        conn.execute(
            table.insert(),
            [{"run_id": run_id, "target": target, "generation": generation} for target in targets],
        )
    return generation


def pending(conn: Connection, target: str) -> pd.DataFrame:
    """The runs whose decisions `target` lags, with the generation each was stored under."""
    table = state.pending_writes
    return read_frame(
        conn, sa.select(table.c.run_id, table.c.generation).where(table.c.target == target)
    )


def pending_members(conn: Connection, runs: list[str]) -> pd.DataFrame:
    """Members with a decision made by one of `runs`, and the earliest such event's time.

    Their Personify rows lag from `since_at` on: a run that replayed a member decided its whole
    history, so its since is the member's first event.
    """
    ledger, decisions = state.event_ledger, state.decisions
    query = (
        sa.select(
            ledger.c.master_customer_id,
            ledger.c.sub_customer_id,
            sa.func.min(ledger.c.occurred_at).label("since_at"),
        )
        .join(decisions, decisions.c.event_id == ledger.c.event_id)
        .where(decisions.c.decided_in_run.in_(runs))
        .group_by(ledger.c.master_customer_id, ledger.c.sub_customer_id)
    )
    return _state_frame(read_frame(conn, query))


def clear_pending(conn: Connection, target: str, written: pd.DataFrame) -> None:
    """Forget the runs (`run_id`, `generation`) a committed write of `target` covered."""
    table = state.pending_writes
    for run_id, generation in written[["run_id", "generation"]].itertuples(index=False):
        conn.execute(
            table.delete().where(
                table.c.run_id == run_id,
                table.c.target == target,
                table.c.generation == int(generation),
            )
        )


def decisions_of_days(conn: Connection, days: list[str], besides_run: str) -> pd.DataFrame:
    """Decisions of the days' events that a run other than `besides_run` made."""
    table = state.decisions
    return read_frame(
        conn,
        sa.select(
            table.c.event_id,
            table.c.day,
            table.c.decision,
            table.c.status_change,
            table.c.first_time,
        ).where(table.c.day.in_(days), table.c.decided_in_run != besides_run),
    ).astype({"status_change": bool})


def decided_history(conn: Connection, members: pd.DataFrame) -> pd.DataFrame:
    """Decided ledger events of `members` from each one's `since_at` (NaT: all of them)."""
    ledger, decisions = state.event_ledger, state.decisions
    stage = temp_table(
        conn,
        "subsync_since",
        [
            sa.Column("master_customer_id", sa.String(24), primary_key=True),
            sa.Column("sub_customer_id", sa.Integer, primary_key=True),
            sa.Column("since_at", sa.DateTime),
        ],
    )
    insert_frame(conn, stage, members, staging=True)
    query = (
        sa.select(
            ledger,
            decisions.c.area,
            decisions.c.mapped,
            decisions.c.decision,
            decisions.c.status_change,
            decisions.c.first_time,
        )
        .join(decisions, decisions.c.event_id == ledger.c.event_id)
        .join(
            stage,
            sa.and_(
                ledger.c.master_customer_id == stage.c.master_customer_id,
                ledger.c.sub_customer_id == stage.c.sub_customer_id,
                sa.or_(stage.c.since_at.is_(None), ledger.c.occurred_at >= stage.c.since_at),
            ),
        )
    )
    history = read_frame(conn, query)
    stage.drop(conn)
    history = _history_frame(history)
    history["status_change"] = history["status_change"].astype(bool)
    history["opt_in_code"] = history["area"].where(history["mapped"].astype(bool))
    return history
