"""The daily sync as plain functions over engines: what each asset does, without Dagster.

landing files -> raw rows -> validated events + rejects -> resolved statuses -> Personify.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import activity_log, ledger, manifest, state
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.ingest import RawTrackingLog, read_days
from subsync_pipeline.core.ledger import MEMBER
from subsync_pipeline.core.personify.rows import activity_rows, audit_now, opt_in_rows
from subsync_pipeline.core.personify.tables import check_tables, personify_tables
from subsync_pipeline.core.personify.writers import WriteCounts, writer_for
from subsync_pipeline.core.resolution import KEY, current_status, resolve
from subsync_pipeline.core.tracking_log import FILE_OK
from subsync_pipeline.core.validation import (
    ValidationResult,
    file_rejects,
    normalise,
    validate,
)

# pending_writes targets.
OPT_IN = "opt_in"
ACTIVITY = "activity"


@dataclass(frozen=True)
class ValidatedDays:
    """Validation of some days, and the contacts whose history it changed."""

    days: tuple[str, ...]
    result: ValidationResult
    touched_members: pd.DataFrame
    # The files whose slice of the days the validated events now are in the ledger, and the
    # ledger generation right after they were stored (see `resolve_days`).
    file_ids: tuple[int, ...] = ()
    generation: int = -1
    # Events that left the ledger (their file changed, or they are rejected now).
    removed_event_ids: pd.Series = field(default_factory=lambda: pd.Series(dtype=str))


@dataclass(frozen=True)
class ResolvedDays:
    """What resolving the touched contacts decided, and each of their keys' current status.

    `decided` holds the events decided now: a contact's whole history when it was replayed, else
    only its events after its checkpoint. `day_decisions` are the decisions of every event of the
    days, whichever run made them (what the report counts). `generation` is the resolution
    generation this run's `pending_writes` rows were recorded under (None: nothing decided).
    """

    days: tuple[str, ...]
    decided: pd.DataFrame
    statuses: pd.DataFrame
    day_decisions: pd.DataFrame
    # Event ids of the days' rows that have no decision now (rejected, or gone from the ledger):
    # a CUS_ACTIVITY row of theirs is stale.
    undecided_event_ids: pd.Series
    run_id: str
    generation: int | None = None
    replayed_members: int = 0
    # Slices other runs stored and never resolved, caught up on by this one.
    slices_caught_up: int = 0


def ingest(
    state_engine: Engine, landing_dir: Path, config: SubsyncConfig, days: list[str]
) -> RawTrackingLog:
    """Record new and changed files in the manifest, then read the rows of `days`."""
    with state_engine.begin() as conn:
        state.lock(conn)
        scan = manifest.scan(conn, landing_dir, config)
    return read_days(scan, days, config)


def validate_days(
    state_engine: Engine,
    personify_engine: Engine,
    config: SubsyncConfig,
    raw: RawTrackingLog,
    run_id: str,
) -> ValidatedDays:
    """Validate raw rows; store validated events in the ledger and rejects beside them."""
    days = list(raw.days)
    tables = personify_tables(config.personify)
    rows = raw.rows.reset_index(drop=True)
    normalised = normalise(rows, config)
    candidates = normalised.loc[
        normalised["member_id_ok"], ["master_customer_id", "sub_customer_id"]
    ]
    with personify_engine.connect() as conn:
        check_tables(conn, [tables.customer])
        known = writer_for(conn, tables).known_members(conn, candidates)
    with state_engine.begin() as conn:
        state.lock(conn)
        winners = manifest.winning_versions(conn, days)
        result = validate(rows, normalised, config, known, winners)
        rejected = pd.concat([file_rejects(raw.failed_files), result.rejected], ignore_index=True)
        result = ValidationResult(events=result.events, rejected=rejected)
        read_ok = raw.files.loc[raw.files["status"].eq(FILE_OK), "file_id"].astype(int).tolist()
        stored = ledger.store_validation(
            conn, days, read_ok, result.events, rejected, run_id, audit_now()
        )
        generation = ledger.generation(conn)
    return ValidatedDays(
        days=raw.days,
        result=result,
        touched_members=stored.touched_members,
        file_ids=tuple(read_ok),
        generation=generation,
        removed_event_ids=stored.removed_event_ids,
    )


def with_areas(events: pd.DataFrame, config: SubsyncConfig) -> pd.DataFrame:
    """Key each event by its interest area (`area_name`), or by `<scope_type>:<scope_id>` when
    unmapped; `opt_in_code` is the area of a mapped event, as activity rows name it."""
    areas = pd.DataFrame(
        [
            {"scope_type": a.scope_type, "scope_id": a.scope_id, "opt_in_code": a.area}
            for a in config.interest_areas
        ],
        columns=["scope_type", "scope_id", "opt_in_code"],
    ).astype({"scope_type": str, "scope_id": str})
    keyed = events.merge(areas, how="left", on=["scope_type", "scope_id"])
    keyed["mapped"] = keyed["opt_in_code"].notna()
    keyed["area"] = keyed["opt_in_code"].where(
        keyed["mapped"], keyed["scope_type"] + ":" + keyed["scope_id"]
    )
    return keyed


def resolve_members(
    conn: Connection,
    config: SubsyncConfig,
    members: pd.DataFrame,
    stored: ValidatedDays | None = None,
    *,
    only_stored: bool = False,
) -> Resolution:
    """Decide the ledger events of `members` not yet decided, from their checkpoints.

    A member with a checkpoint made under this config resumes from it with its later events; any
    other is replayed over its whole history. With `stored` (whose events are the ledger's slice
    of its days and files, untouched since), that slice comes from memory and only the rest is
    read: normally nothing, as a day's events are after its members' checkpoints. With
    `only_stored` the caller knows every undecided ledger event is in that slice (no other slice
    awaits resolution: `ledger.unresolved`), so the ledger is not probed for the rest at all.
    """
    config_hash = _fingerprint(config)
    checkpoints = ledger.key_states(conn, members, config_hash)
    through = _latest(checkpoints, "through_at", "through_event_id")
    resumed = members.merge(through, on=MEMBER, how="inner")
    replayed = members.loc[~ledger.is_member_of(members, through), MEMBER].reset_index(drop=True)

    besides = None if stored is None else (list(stored.days), list(stored.file_ids))
    parts = [ledger.member_history(conn, replayed, besides)]
    if stored is None or not only_stored:
        parts.append(ledger.events_after(conn, resumed, besides))
    if stored is not None:
        slice_ = stored.result.events[parts[0].columns]
        slice_ = slice_.astype({"sub_customer_id": "int64"}).merge(through, on=MEMBER, how="left")
        later = (
            slice_["through_at"].isna()
            | (slice_["occurred_at"] > slice_["through_at"])
            | (
                slice_["occurred_at"].eq(slice_["through_at"])
                & (slice_["event_id"] > slice_["through_event_id"])
            )
        )
        parts.append(slice_.loc[later, parts[0].columns])
    events = pd.concat(parts, ignore_index=True)

    initial = checkpoints.drop(columns=["through_at", "through_event_id"])
    decided = resolve(with_areas(events, config), config.source_ranks, initial=initial)
    statuses = current_status(decided, initial=initial)
    mapped = pd.concat([initial[[*KEY, "mapped"]], decided[[*KEY, "mapped"]]]).drop_duplicates(
        KEY, keep="last"
    )
    statuses = statuses.merge(mapped, on=KEY, how="left")
    return Resolution(
        config_hash=config_hash,
        replayed=replayed,
        decided=decided,
        statuses=statuses,
        checkpoints=_checkpoints(decided, statuses),
    )


@dataclass(frozen=True)
class Resolution:
    config_hash: str
    replayed: pd.DataFrame
    decided: pd.DataFrame
    statuses: pd.DataFrame
    # The state to keep for members with events decided now (statuses plus their new through).
    checkpoints: pd.DataFrame

    def store(self, conn: Connection, run_id: str, now: datetime) -> None:
        """Keep the decisions and checkpoints (see `ledger.store_resolution`)."""
        ledger.store_resolution(
            conn, self.replayed, self.decided, self.checkpoints, self.config_hash, run_id, now
        )


def _latest(frame: pd.DataFrame, at: str, event_id: str) -> pd.DataFrame:
    """Each member's latest (`at`, `event_id`) over its rows, ordered as a pair (the member's
    checkpoint): the latest time by a group maximum, then the highest event id among the rows at
    that time only (sorting a million event ids as text took seconds). Two separate maxima would
    pair one row's time with another row's id."""
    latest = frame.groupby(MEMBER, sort=False)[at].transform("max")
    tail = frame.loc[frame[at].eq(latest), [*MEMBER, at, event_id]]
    return tail.sort_values(event_id).drop_duplicates(MEMBER, keep="last").reset_index(drop=True)


def _checkpoints(decided: pd.DataFrame, statuses: pd.DataFrame) -> pd.DataFrame:
    """Statuses of the keys with events decided now, each with its member's latest event's
    position: a key without new events keeps its stored state, so writing it again is waste."""
    last = _latest(decided, "occurred_at", "event_id").rename(
        columns={"occurred_at": "through_at", "event_id": "through_event_id"}
    )
    keys = decided[KEY].drop_duplicates()
    return statuses.merge(keys, on=KEY, how="inner").merge(last, on=MEMBER, how="inner")


def resolve_days(
    state_engine: Engine, config: SubsyncConfig, validated: ValidatedDays, run_id: str
) -> ResolvedDays:
    """Resolve what the touched contacts' new events change; keep decisions and checkpoints."""
    members = validated.touched_members
    targets = [
        target
        for target, enabled in (
            (OPT_IN, config.personify.write_opt_in),
            (ACTIVITY, config.personify.write_activity),
        )
        if enabled
    ]
    with state_engine.begin() as conn:
        state.lock(conn)
        # Reading back a million events just stored is the largest read of a big day: unless
        # another run changed the ledger since, they are taken from the validation step.
        stored = validated if ledger.generation(conn) == validated.generation else None
        # Slices another run stored and never resolved (it died in between): their contacts
        # are resolved now too, and their events read from the ledger.
        unresolved = ledger.unresolved(conn)
        others = unresolved.loc[unresolved["run_id"].ne(run_id)]
        if len(others):
            members = pd.concat([members, ledger.members_of_slices(conn, others)])
            members = members.drop_duplicates(ignore_index=True)
        resolution = resolve_members(conn, config, members, stored, only_stored=others.empty)
        resolution.store(conn, run_id, audit_now())
        ledger.clear_unresolved(conn, unresolved["run_id"].tolist())
        decided = resolution.decided
        generation = ledger.record_pending(conn, targets, run_id) if len(decided) else None
        day_decisions = pd.concat(
            [
                decided.loc[
                    decided["day"].isin(validated.days),
                    ["event_id", "day", "decision", "status_change", "first_time"],
                ],
                ledger.decisions_of_days(conn, list(validated.days), run_id),
            ],
            ignore_index=True,
        )
    rejected_ids = validated.result.rejected["event_id"].dropna().astype(str)
    undecided = pd.concat([rejected_ids[rejected_ids.str.len() <= 64], validated.removed_event_ids])
    return ResolvedDays(
        days=validated.days,
        decided=decided,
        statuses=resolution.statuses,
        day_decisions=day_decisions,
        undecided_event_ids=_not_in(undecided, decided["event_id"]).drop_duplicates(
            ignore_index=True
        ),
        run_id=run_id,
        generation=generation,
        replayed_members=len(resolution.replayed),
        slices_caught_up=len(others),
    )


def _fingerprint(config: SubsyncConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


@dataclass(frozen=True)
class _Lagging:
    """What a target's write must cover: this run's members from memory, and other members
    (with `since_at`) from the state database, for the pending runs in `runs`."""

    own: pd.DataFrame
    other: pd.DataFrame
    runs: pd.DataFrame


def _lagging(state_engine: Engine, target: str, resolved: ResolvedDays) -> _Lagging:
    """The members whose `target` rows lag, split by where their rows come from.

    Called with the Personify write lock held. This run's members come from memory while its
    resolution is the newest stored; once another run has resolved since, some of them may have
    moved on, so they are read like the members of runs that died before writing theirs.
    """
    with state_engine.connect() as conn:
        runs = ledger.pending(conn, target)
        mine = runs["run_id"].eq(resolved.run_id)
        # No row of its own: nothing decided, or already written (by a retried step, or by a
        # later run's writer catching up on it).
        fresh = bool(mine.any()) and resolved.generation == ledger.resolution_generation(conn)
        read = runs.loc[~mine | (not fresh), "run_id"].tolist()
        other = ledger.pending_members(conn, read) if read else _no_members()
    own = resolved.decided[MEMBER].drop_duplicates() if fresh else _no_members()[MEMBER]
    # A member another pending run also decided is read whole from the state database, which
    # holds both runs' decisions; from memory it would be written twice.
    own = own.loc[~ledger.is_member_of(own, other)]
    return _Lagging(own=own, other=other, runs=runs)


def _no_members() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "master_customer_id": pd.Series(dtype=str),
            "sub_customer_id": pd.Series(dtype="int64"),
            "since_at": pd.Series(dtype="datetime64[ns]"),
        }
    )


def write_opt_in(
    personify_engine: Engine, state_engine: Engine, config: SubsyncConfig, resolved: ResolvedDays
) -> WriteCounts:
    """Upsert CUS_OPT_IN for the contacts whose status may have moved, in one locked transaction.

    That is every member with a pending opt-in write: this run's (statuses from memory) and any a
    failed run left behind (statuses from the checkpoints). The pending rows are cleared after the
    commit; should that fail, the next write repeats an upsert that changes nothing.
    """
    tables = personify_tables(config.personify)
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables, config.personify.operator)
        writer.lock(conn)
        check_tables(conn, [tables.opt_in.table])
        lagging = _lagging(state_engine, OPT_IN, resolved)
        # Of this run's members, only keys with events decided now can have moved.
        decided_keys = _of(resolved.decided[KEY], lagging.own).drop_duplicates()
        statuses = [resolved.statuses.merge(decided_keys, on=KEY, how="inner")]
        if len(lagging.other):
            with state_engine.connect() as state_conn:
                statuses.append(ledger.current_states(state_conn, lagging.other))
        rows = opt_in_rows(pd.concat(statuses), config)
        counts = writer.upsert_opt_in(conn, rows, audit_now())
    with state_engine.begin() as state_conn:
        ledger.clear_pending(state_conn, OPT_IN, lagging.runs)
    return counts


def write_activity(
    personify_engine: Engine, state_engine: Engine, config: SubsyncConfig, resolved: ResolvedDays
) -> WriteCounts:
    """Reconcile CUS_ACTIVITY for the events whose decisions may have moved, in one transaction.

    As for `write_opt_in`: this run's members from memory, those a failed run left behind from
    the decisions table, from their `since_at` on. subsync's rows are those `activity_log`
    records; a write's changes to that record are logged before Personify commits (see there).
    """
    tables = personify_tables(config.personify)
    write_id = f"{resolved.run_id}:{uuid.uuid4().hex[:12]}"
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables, config.personify.operator)
        writer.lock(conn)
        check_tables(conn, [tables.activity.table])
        activity_log.recover(
            state_engine, lambda ids: writer.activity_exists(conn, ids), audit_now()
        )
        lagging = _lagging(state_engine, ACTIVITY, resolved)
        decided = [_of(resolved.decided, lagging.own)]
        if len(lagging.other):
            with state_engine.connect() as state_conn:
                decided.append(ledger.decided_history(state_conn, lagging.other))
        events = pd.concat(decided, ignore_index=True)
        rows = activity_rows(events, config.personify.activity_codes)
        # Only events written now are probed: an event of a member another run holds is left to it.
        candidates = pd.concat([resolved.undecided_event_ids, events["event_id"]])
        with state_engine.connect() as state_conn:
            records = activity_log.records(state_conn, candidates.drop_duplicates())
        records["stale"] = ~_is_in(records["event_id"], rows["event_id"])
        now = audit_now()
        written = writer.reconcile_activity(conn, records, rows, now)
        activity_log.log(state_engine, write_id, written.inserted, written.deleted, now)
    activity_log.finalize(state_engine, write_id, audit_now())
    with state_engine.begin() as state_conn:
        ledger.clear_pending(state_conn, ACTIVITY, lagging.runs)
    return written.counts


def _is_in(values: pd.Series, others: pd.Series) -> np.ndarray:
    """Which `values` are among `others`, by Arrow's hash set: pandas' isin took four seconds
    for a million ids against a million."""
    found = pc.is_in(
        pa.array(values, pa.large_string()), value_set=pa.array(others, pa.large_string())
    )
    return found.to_numpy(zero_copy_only=False)


def _not_in(values: pd.Series, others: pd.Series) -> pd.Series:
    """The `values` not among `others`."""
    return values.loc[~_is_in(values, others)]


def _of(frame: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(members[MEMBER].drop_duplicates(), on=MEMBER, how="inner")
