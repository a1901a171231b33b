"""The daily sync as plain functions over engines: what each asset does, without Dagster.

landing files -> raw rows -> validated events + rejects -> resolved statuses -> Personify.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import ledger, manifest, state
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.ingest import RawTrackingLog, read_days
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


@dataclass(frozen=True)
class ResolvedDays:
    """Every event of the touched contacts, decided; and each key's current status."""

    days: tuple[str, ...]
    members: pd.DataFrame
    decided: pd.DataFrame
    statuses: pd.DataFrame
    candidate_event_ids: pd.Series
    # The ledger generation and config the statuses were resolved from (see `_fresh`).
    basis: tuple[int, str] = (-1, "")


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
    tables = personify_tables(config.personify.tables)
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
        touched = ledger.store_validation(
            conn, days, read_ok, result.events, rejected, run_id, audit_now()
        )
        generation = ledger.generation(conn)
    return ValidatedDays(
        days=raw.days,
        result=result,
        touched_members=touched,
        file_ids=tuple(read_ok),
        generation=generation,
    )


def with_areas(events: pd.DataFrame, config: SubsyncConfig) -> pd.DataFrame:
    """Key each event by its OPT_IN_CODE, or by `<scope_type>:<scope_id>` when unmapped."""
    areas = pd.DataFrame(
        [
            {"scope_type": a.scope_type, "scope_id": a.scope_id, "opt_in_code": a.opt_in_code}
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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every ledger event of `members`, decided, and each of their keys' current status.

    With `stored` (whose events are the ledger's slice of its days and files, untouched since),
    that slice comes from memory and only the rest of the history is read.
    """
    if stored is None:
        history = ledger.member_history(conn, members)
    else:
        rest = ledger.member_history(
            conn, members, besides=(list(stored.days), list(stored.file_ids))
        )
        history = pd.concat([rest, stored.result.events[rest.columns]], ignore_index=True)
    decided = resolve(with_areas(history, config), config.source_ranks)
    statuses = current_status(decided)
    mapped = decided.drop_duplicates(KEY)[[*KEY, "mapped"]]
    return decided, statuses.merge(mapped, on=KEY, how="left")


def resolve_days(
    state_engine: Engine, config: SubsyncConfig, validated: ValidatedDays, run_id: str
) -> ResolvedDays:
    """Resolve the full history of every touched contact and keep the decisions as audit trail."""
    members = validated.touched_members
    with state_engine.begin() as conn:
        state.lock(conn)
        generation = ledger.generation(conn)
        basis = (generation, _fingerprint(config))
        # Reading back a million events just stored is the largest read of a big day: unless
        # another run changed the ledger since, they are taken from the validation step.
        stored = validated if generation == validated.generation else None
        decided, statuses = resolve_members(conn, config, members, stored)
        ledger.store_decisions(conn, members, decided, run_id, audit_now())
    rejected_ids = validated.result.rejected["event_id"].dropna().astype(str)
    candidates = pd.concat([decided["event_id"], rejected_ids[rejected_ids.str.len() <= 64]])
    return ResolvedDays(
        days=validated.days,
        members=members,
        decided=decided,
        statuses=statuses,
        candidate_event_ids=candidates.drop_duplicates().reset_index(drop=True),
        basis=basis,
    )


def _fresh(
    state_engine: Engine, config: SubsyncConfig, resolved: ResolvedDays
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contacts' decisions and statuses as of the ledger now.

    Called with the Personify write lock held: another run may have changed the ledger since this
    run resolved, and the last writer must write the newest state. When neither the ledger nor the
    config changed (the usual case), the resolve step's result is still exact and is reused.
    """
    with state_engine.connect() as conn:
        if (ledger.generation(conn), _fingerprint(config)) == resolved.basis:
            return resolved.decided, resolved.statuses
        return resolve_members(conn, config, resolved.members)


def _fingerprint(config: SubsyncConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def write_opt_in(
    personify_engine: Engine, state_engine: Engine, config: SubsyncConfig, resolved: ResolvedDays
) -> WriteCounts:
    """Upsert CUS_OPT_IN for the contacts' mapped keys, in one locked transaction."""
    tables = personify_tables(config.personify.tables)
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables)
        writer.lock(conn)
        check_tables(conn, [tables.opt_in])
        _, statuses = _fresh(state_engine, config, resolved)
        return writer.upsert_opt_in(conn, opt_in_rows(statuses), audit_now())


def write_activity(
    personify_engine: Engine, state_engine: Engine, config: SubsyncConfig, resolved: ResolvedDays
) -> WriteCounts:
    """Reconcile CUS_ACTIVITY for the contacts' events, in one locked transaction."""
    tables = personify_tables(config.personify.tables)
    with personify_engine.begin() as conn:
        writer = writer_for(conn, tables)
        writer.lock(conn)
        check_tables(conn, [tables.activity])
        decided, _ = _fresh(state_engine, config, resolved)
        rows = activity_rows(decided, config.personify.activity_codes)
        candidates = pd.concat([resolved.candidate_event_ids, decided["event_id"]])
        return writer.reconcile_activity(conn, candidates, rows, audit_now())
