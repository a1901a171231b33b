"""The daily sync as plain functions over engines: what each asset does, without Dagster.

landing files -> raw rows -> validated events + rejects -> resolved statuses -> Personify. The
state database is the only source of truth: each step stores its work there and queues the
members the next step owes (`core/queue.py`); steps hand each other only summaries.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import activity_log, ledger, manifest, queue, state
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.ingest import RawFiles, RawTrackingLog, read_days
from subsync_pipeline.core.ledger import MEMBER
from subsync_pipeline.core.personify.rows import activity_rows, audit_now, opt_in_rows
from subsync_pipeline.core.personify.tables import check_tables, personify_tables
from subsync_pipeline.core.personify.writers import PersonifyWriter, WriteCounts, writer_for
from subsync_pipeline.core.quality import ValidationFigures, validation_figures
from subsync_pipeline.core.resolution import KEY, current_status, resolve
from subsync_pipeline.core.tracking_log import FILE_OK
from subsync_pipeline.core.validation import file_rejects, normalise, validate


@dataclass(frozen=True)
class Validated:
    """What validating some days stored, as the UI, the checks and the report show it."""

    days: tuple[str, ...]
    figures: ValidationFigures
    contacts_queued: int
    chunks: int = 1


@dataclass(frozen=True)
class Resolved:
    """What a resolution decided, and the figures of the days' events (whichever run decided
    them): `decisions` counts by decision; `blocked` counts the keys of the days' contacts whose
    latest opposite request is newer than their status, `blocked_sample` shows the first ones."""

    days: tuple[str, ...]
    events_resolved: int
    contacts_resolved: int
    contacts_replayed: int
    keys_changed: int
    decisions: dict[str, int]
    status_changes: int
    first_subscribe: int
    first_unsubscribe: int
    blocked: int
    blocked_sample: pd.DataFrame
    batches: int = 1


# How many of the blocked keys a summary carries (the report lists them).
BLOCKED_SAMPLE = 50


# What a step keeps in this process for the step after it, by kind: the events a validation
# stored, the decisions and statuses a resolution stored. One of each kind at most, so a run never
# holds more than a day's (or a range's) worth. It only ever spares reading back what the state
# database holds too (`_served` says when that is safe).
EVENTS, DECIDED, STATUSES = "events", "decided", "statuses"


@dataclass(frozen=True)
class _Kept:
    batch_id: str
    frame: pd.DataFrame
    days: tuple[str, ...] = ()
    file_ids: tuple[int, ...] = ()


_kept: dict[str, _Kept] = {}


def forget_kept() -> None:
    """Drop what this process kept for later steps (a preview's state was rolled back)."""
    _kept.clear()


def _served(
    kind: str, queued: pd.DataFrame, keep: bool = False
) -> tuple[_Kept | None, pd.DataFrame]:
    """The frame of `kind` this process kept, and the `queued` members it may serve.

    A queue row names a batch only while that batch alone queued the member since the member was
    last dequeued (`queue.enqueue`): the member's owed work is then exactly what that batch
    stored, which the kept frame holds. Any other member is read from the tables. The frame is
    handed over once, unless `keep` (a look at what it would serve).
    """
    kept = _kept.get(kind) if keep else _kept.pop(kind, None)
    if kept is None:
        return None, queued.iloc[:0]
    return kept, queued.loc[queued["batch_id"].eq(kept.batch_id)]


def ingest(
    state_engine: Engine, landing_dir: Path, config: SubsyncConfig, days: list[str]
) -> RawFiles:
    """Record new and changed files in the manifest, then read the rows of `days` a chunk at a
    time (`chunks`) for what happened to each file."""
    with state_engine.begin() as conn:
        state.lock(conn)
        scan = manifest.scan(conn, landing_dir, config, days)
        parts = chunks(conn, days, config.chunk_events)
    return RawFiles.combined([read_days(scan, part, config).summary() for part in parts])


def chunks(conn: Connection, days: list[str], limit: int) -> list[list[str]]:
    """`days` in order, grouped so a group's recorded rows stay within `limit` (a bigger day is
    a group alone): a backfill's range is read and validated a group at a time, so its memory
    stays that of one big day whatever the range."""
    rows = manifest.rows_by_day(conn, days)
    groups: list[list[str]] = []
    held = 0
    for day in sorted(days):
        if groups and held + rows.get(day, 0) <= limit:
            groups[-1].append(day)
        else:
            groups.append([day])
            held = 0
        held += rows.get(day, 0)
    return groups


def read_raw(state_engine: Engine, config: SubsyncConfig, days: list[str]) -> RawTrackingLog:
    """The rows of `days` from the files the manifest records (no scan of the landing folder:
    what the raw step recorded is what is validated)."""
    with state_engine.connect() as conn:
        scan = manifest.recorded(conn)
    return read_days(scan, days, config)


def validate_days(
    state_engine: Engine,
    personify_engine: Engine,
    config: SubsyncConfig,
    days: list[str],
    run_id: str,
    progress: Callable[[str], None] = print,
) -> Validated:
    """Validate the rows of `days`, a chunk of days at a time (`chunks`): store each chunk's
    events in the ledger and its rejects beside them, and queue the touched members for
    resolution, in one transaction a chunk. `contacts_queued` counts a contact once a chunk."""
    with state_engine.connect() as conn:
        parts = chunks(conn, days, config.chunk_events)
    rows = validated = queued = 0
    rejects = []
    for number, part in enumerate(parts, 1):
        raw = read_raw(state_engine, config, part)
        events, rejected, touched = _validate_chunk(
            state_engine, personify_engine, config, raw, run_id, keep=len(parts) == 1
        )
        rows, validated, queued = rows + len(raw.rows), validated + events, queued + touched
        rejects.append(rejected[["line_number", "reasons"]])
        if len(parts) > 1:
            progress(
                f"validated {part[0]} to {part[-1]} (chunk {number} of {len(parts)}): "
                f"{len(raw.rows):,} rows, {events:,} events stored"
            )
    return Validated(
        days=tuple(sorted(days)),
        figures=validation_figures(rows, validated, pd.concat(rejects, ignore_index=True)),
        contacts_queued=queued,
        chunks=len(parts),
    )


def _validate_chunk(
    state_engine: Engine,
    personify_engine: Engine,
    config: SubsyncConfig,
    raw: RawTrackingLog,
    run_id: str,
    keep: bool,
) -> tuple[int, pd.DataFrame, int]:
    """Validate and store one chunk's rows; its events, rejects and members queued. The events
    are kept for the resolution when the run is one chunk (`keep`): a range's would be only
    its last chunk's, held through the whole resolution."""
    days = list(raw.days)
    tables = personify_tables(config.personify)
    rows = raw.rows
    normalised = normalise(rows, config)
    candidates = normalised.loc[normalised["member_id_ok"], MEMBER]
    with personify_engine.connect() as conn:
        check_tables(conn, [tables.customer])
        known = writer_for(conn, tables).known_members(conn, candidates)
    batch_id = f"{run_id}:{uuid.uuid4().hex[:12]}"
    with state_engine.begin() as conn:
        state.lock(conn)
        winners = manifest.winning_versions(conn, days)
        result = validate(rows, normalised, config, known, winners)
        rejected = pd.concat([file_rejects(raw.failed_files), result.rejected], ignore_index=True)
        read_ok = raw.files.loc[raw.files["status"].eq(FILE_OK), "file_id"].astype(int).tolist()
        now = audit_now()
        touched = ledger.store_validation(conn, days, read_ok, result.events, rejected, run_id, now)
        queued = queue.enqueue_staged(conn, [queue.RESOLVE], touched, batch_id, now)
        touched.drop(conn)
    if keep:
        _kept[EVENTS] = _Kept(batch_id, result.events, tuple(days), tuple(read_ok))
    return len(result.events), rejected, queued


def with_areas(events: pd.DataFrame, config: SubsyncConfig) -> pd.DataFrame:
    """Key each event by its interest area (`area_name`), or by `<scope_type>:<scope_id>` when
    unmapped; `opt_in_code` is the area of a mapped event, as activity rows name it."""
    areas = pd.DataFrame(
        [(a.scope_type, a.scope_id, a.area) for a in config.interest_areas],
        columns=["scope_type", "scope_id", "opt_in_code"],
    ).astype({"scope_type": str, "scope_id": str})
    keyed = events.merge(areas, how="left", on=["scope_type", "scope_id"])
    keyed["mapped"] = keyed["opt_in_code"].notna()
    keyed["area"] = keyed["opt_in_code"].where(
        keyed["mapped"], keyed["scope_type"] + ":" + keyed["scope_id"]
    )
    return keyed


def decision_fingerprint(config: SubsyncConfig) -> str:
    """What a checkpoint depends on: the settings that change a decision or the key an event
    is decided under. Anything else (quality thresholds, schedule, file limits, Personify's
    shape) changes no decision, so editing it replays nothing."""
    relevant = config.model_dump(
        mode="json", include={"source_ranks", "interest_areas", "tracking"}
    )
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Resolution:
    """The decisions about some members' undecided events, and the state to keep."""

    config_hash: str
    replayed: pd.DataFrame
    decided: pd.DataFrame
    # The state to keep for keys with events decided now (statuses plus their member's through).
    checkpoints: pd.DataFrame

    def store(self, conn: Connection, run_id: str, now: datetime) -> None:
        """Keep the decisions and checkpoints (see `ledger.store_resolution`)."""
        ledger.store_resolution(
            conn, self.replayed, self.decided, self.checkpoints, self.config_hash, run_id, now
        )


def resolve_members(conn: Connection, config: SubsyncConfig, queued: pd.DataFrame) -> Resolution:
    """Decide the undecided ledger events of `queued` members, each from its checkpoint.

    A member with a checkpoint made under this config resumes from it with its later events; any
    other is replayed over its whole history.
    """
    config_hash = decision_fingerprint(config)
    checkpoints = ledger.key_states(conn, queued, config_hash)
    through = _latest(checkpoints, "through_at", "through_event_id")
    replayed = queued.loc[~ledger.is_member_of(queued, through), MEMBER].reset_index(drop=True)
    events = queued_events(conn, queued, through, replayed)
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
        checkpoints=_checkpoints(decided, statuses),
    )


def queued_events(
    conn: Connection, queued: pd.DataFrame, through: pd.DataFrame, replayed: pd.DataFrame
) -> pd.DataFrame:
    """The events to decide for `queued` members: a replayed member's whole history, any other's
    events after its checkpoint (`through`). The events a validation in this process stored come
    from memory for the members it alone queued (reading a million events back took longer than
    resolving them); the rest from the ledger."""
    held, mine = _served(EVENTS, queued)
    theirs = queued.loc[~ledger.is_member_of(queued, mine)]
    replayed_mine = ledger.is_member_of(replayed, mine)
    parts = [
        ledger.member_history(conn, replayed.loc[~replayed_mine]),
        ledger.events_after(conn, through.loc[ledger.is_member_of(through, theirs)]),
    ]
    if held is not None:
        besides = (list(held.days), list(held.file_ids))
        parts.append(ledger.member_history(conn, replayed.loc[replayed_mine], besides))
        slice_ = held.frame[parts[0].columns].astype({"sub_customer_id": "int64"})
        slice_ = slice_.loc[ledger.is_member_of(slice_, mine)].merge(through, on=MEMBER, how="left")
        later = (
            slice_["through_at"].isna()
            | (slice_["occurred_at"] > slice_["through_at"])
            | (
                slice_["occurred_at"].eq(slice_["through_at"])
                & (slice_["event_id"] > slice_["through_event_id"])
            )
        )
        parts.append(slice_.loc[later, parts[0].columns])
    return pd.concat(parts, ignore_index=True)


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


def _since(decided: pd.DataFrame, replayed: pd.DataFrame) -> pd.DataFrame:
    """The members whose Personify rows may lag now, and from when: every replayed member over
    its whole history (NULL; even one with no event left, whose rows must go), and each other
    member with events decided now from its earliest one."""
    earliest = decided.groupby(MEMBER, sort=False)["occurred_at"].min()
    since = earliest.rename("since_at").reset_index()
    whole = replayed[MEMBER].copy()
    whole["since_at"] = pd.NaT
    return pd.concat([whole, _besides(since, replayed)], ignore_index=True)


def resolve_queued(
    state_engine: Engine,
    config: SubsyncConfig,
    days: tuple[str, ...],
    run_id: str,
    events: int = 0,
    progress: Callable[[str], None] = print,
) -> Resolved:
    """Resolve every member queued for resolution, whichever run queued it; in the same
    transaction keep the decisions and checkpoints, dequeue the members and queue them for each
    Personify target that is switched on. A range's members (about `events` events to decide)
    go in batches of about config.chunk_events events, one transaction each."""
    switched_on = {
        queue.OPT_IN: config.personify.write_opt_in,
        queue.ACTIVITY: config.personify.write_activity,
    }
    targets = [target for target, enabled in switched_on.items() if enabled]
    with state_engine.connect() as conn:
        waiting = queue.queued(conn, queue.RESOLVE)
    batches = _batches(waiting, math.ceil(events / config.chunk_events))
    if len(batches) > 1:
        # Only the last chunk's events would be there to serve, held through every batch.
        _kept.pop(EVENTS, None)
    decided = replayed = keys = 0
    for number, batch in enumerate(batches, 1):
        with state_engine.begin() as conn:
            state.lock(conn)
            resolution = resolve_members(conn, config, batch)
            now = audit_now()
            batch_id = f"{run_id}:{uuid.uuid4().hex[:12]}"
            resolution.store(conn, run_id, now)
            since = _since(resolution.decided, resolution.replayed)
            queue.enqueue(conn, targets, since, batch_id, now)
            queue.dequeue(conn, queue.RESOLVE, batch)
        decided += len(resolution.decided)
        replayed += len(resolution.replayed)
        keys += len(resolution.checkpoints)
        if len(batches) > 1:
            progress(
                f"resolved batch {number} of {len(batches)}: {len(batch):,} contacts, "
                f"{len(resolution.decided):,} events"
            )
    if len(batches) == 1:
        _kept[DECIDED] = _Kept(batch_id, resolution.decided)
        _kept[STATUSES] = _Kept(batch_id, resolution.checkpoints)
    with state_engine.connect() as conn:
        figures = ledger.day_figures(conn, list(days))
        blocked, sample = ledger.blocked_keys(conn, list(days), BLOCKED_SAMPLE)
    return Resolved(
        days=days,
        events_resolved=decided,
        contacts_resolved=len(waiting),
        contacts_replayed=replayed,
        keys_changed=keys,
        blocked=blocked,
        blocked_sample=sample,
        batches=len(batches),
        **figures,
    )


def _batches(queued: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    """`queued` in `count` (at least one) groups of members in key order."""
    if count <= 1 or queued.empty:
        return [queued]
    ordered = queued.sort_values(MEMBER, ignore_index=True)
    size = math.ceil(len(ordered) / count)
    return [ordered.iloc[start : start + size] for start in range(0, len(ordered), size)]


def write_opt_in(
    personify_engine: Engine, state_engine: Engine, config: SubsyncConfig
) -> WriteCounts:
    """Upsert CUS_OPT_IN for every member queued for it, in one locked transaction: each key
    that moved since the member was queued, to its current status. The queue rows are cleared
    after the commit; should that fail, the next write repeats an upsert that changes nothing."""
    tables = personify_tables(config.personify)
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables, config.personify.operator)
        writer.lock(conn)
        check_tables(conn, [tables.opt_in.table])
        taken, rows = opt_in_owed(state_engine, config)
        counts = writer.upsert_opt_in(conn, rows, audit_now())
    with state_engine.begin() as state_conn:
        queue.dequeue(state_conn, queue.OPT_IN, taken)
    return counts


def opt_in_owed(state_engine: Engine, config: SubsyncConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The members queued for CUS_OPT_IN, and the rows (by field) of each key of theirs that
    moved since they were queued, at its current status."""
    with state_engine.connect() as state_conn:
        taken = queue.queued(state_conn, queue.OPT_IN)
        held, mine = _served(STATUSES, taken)
        statuses = [ledger.current_states(state_conn, _besides(taken, mine))]
    if held is not None:
        statuses.append(_of(held.frame, mine))
    return taken, opt_in_rows(pd.concat(statuses, ignore_index=True), config)


def write_activity(
    personify_engine: Engine,
    state_engine: Engine,
    config: SubsyncConfig,
    run_id: str,
    progress: Callable[[str], None] = print,
) -> WriteCounts:
    """Reconcile CUS_ACTIVITY for every member queued for it, in one transaction: subsync's rows
    of each member from its `since_at` on become its status changes from then on. subsync's
    rows are those `activity_log` records; a write's changes to that record are logged before
    Personify commits (see there). The members go in batches of about config.chunk_events
    status changes (`activity_batches`), each reconciled and logged under the one write id
    inside the one transaction, so a first load's millions of rows are never held at once."""
    tables = personify_tables(config.personify)
    write_id = f"{run_id}:{uuid.uuid4().hex[:12]}"
    counts: list[WriteCounts] = []
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables, config.personify.operator)
        writer.lock(conn)
        check_tables(conn, [tables.activity.table])
        activity_log.recover(
            state_engine, lambda ids: writer.activity_exists(conn, ids), audit_now()
        )
        taken, batches = activity_batches(state_engine, config)
        for number, batch in enumerate(batches, 1):
            # One batch's rows at a time: they are gone once its counts are back.
            done = _reconcile_batch(
                conn, writer, state_engine, config, write_id, batch, number == 1
            )
            counts.append(done)
            if len(batches) > 1:
                progress(
                    f"wrote CUS_ACTIVITY batch {number} of {len(batches)}: {len(batch):,} "
                    f"contacts, {done.inserted:,} rows inserted, {done.deleted:,} deleted"
                )
    activity_log.finalize(state_engine, write_id, audit_now())
    with state_engine.begin() as state_conn:
        queue.dequeue(state_conn, queue.ACTIVITY, taken)
    return WriteCounts(*map(sum, zip(*map(astuple, counts), strict=True)))


def _reconcile_batch(
    conn: Connection,
    writer: PersonifyWriter,
    state_engine: Engine,
    config: SubsyncConfig,
    write_id: str,
    members: pd.DataFrame,
    first: bool,
) -> WriteCounts:
    """Reconcile the CUS_ACTIVITY rows of `members` inside the write's transaction and log what
    it changed; the first batch also deletes the rows of records whose event is gone."""
    records, rows = activity_owed(state_engine, config, members, gone=first)
    now = audit_now()
    written = writer.reconcile_activity(conn, records, rows, now)
    activity_log.log(state_engine, write_id, written.inserted, written.deleted, now)
    return written.counts


def activity_batches(
    state_engine: Engine, config: SubsyncConfig
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The members queued for CUS_ACTIVITY, and the same members in batches (`_batches`) of
    about config.chunk_events status changes owed: the queue's size says nothing of what a
    member owes (a replayed one, its whole history). The members a resolution of this process
    decided are counted in the frame it kept (all its status changes: a member queued again
    by another run since is counted twice, which only makes the batches smaller); the others
    in the database, where counting a day's few costs what reading them does."""
    with state_engine.connect() as state_conn:
        taken = queue.queued(state_conn, queue.ACTIVITY)
        held, mine = _served(DECIDED, taken, keep=True)
        owed = ledger.count_status_changes(state_conn, _besides(taken, mine))
    if held is not None:
        owed += int(held.frame["status_change"].sum())
    batches = _batches(taken, math.ceil(owed / config.chunk_events))
    if len(batches) > 1:
        # The kept decisions would be served to one batch only, and held through all of them.
        _kept.pop(DECIDED, None)
    return taken, batches


def activity_owed(
    state_engine: Engine, config: SubsyncConfig, members: pd.DataFrame, gone: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """subsync's records of the rows of `members` (as queued for CUS_ACTIVITY) from each one's
    `since_at` on (event_id, activity_id, stale: the row must go), with every record whose
    event left the ledger when `gone` (they belong to no member: one batch of a write takes
    them); the rows (by field) the members' status changes from then on want."""
    with state_engine.connect() as state_conn:
        held, mine = _served(DECIDED, members)
        changes = [ledger.status_changes(state_conn, _besides(members, mine))]
        # A member served from memory and not replayed has no record the resolution could
        # have made stale: its events decided now are new, its older rows stay as they are.
        resumed = mine.loc[mine["since_at"].notna()]
        records = activity_log.records(state_conn, _besides(members, resumed), gone)
    if held is not None:
        decided = held.frame.loc[held.frame["status_change"].to_numpy(bool)]
        changes.append(_of(decided, mine))
    rows = activity_rows(pd.concat(changes, ignore_index=True), config.personify.activity_codes)
    records["stale"] = records.pop("gone").to_numpy(bool) | ~_is_in(
        records["event_id"], rows["event_id"]
    )
    return records, rows


def _is_in(values: pd.Series, others: pd.Series) -> np.ndarray:
    """Which `values` are among `others`, by Arrow's hash set: pandas' isin took four seconds
    for a million ids against a million."""
    found = pc.is_in(
        pa.array(values, pa.large_string()), value_set=pa.array(others, pa.large_string())
    )
    return found.to_numpy(zero_copy_only=False)


def _of(frame: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[ledger.is_member_of(frame, members)]


def _besides(frame: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[~ledger.is_member_of(frame, members)]
