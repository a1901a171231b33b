"""The file manifest: which landed files exist, what they hold, and which days they cover.

Every scan records new and changed files (size, mtime, content hash, days, row count, status) so a
day's run reads only the files covering that day, and so the duplicate_event rule can judge an
event id against every file ever recorded, in recording order, whatever order days run in.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import parsed, state
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.sql import insert_frame, read_frame
from subsync_pipeline.core.tracking_log import (
    DAY,
    EXTERNAL_ID_MAX,
    FILE_OK,
    FINGERPRINT,
    LINE,
    OCCURRED_UTC,
    FileRead,
    content_hash,
    is_tracking_file,
    local_days,
    parse_timestamps,
    read_tracking_file,
    row_fingerprints,
)


@dataclass(frozen=True)
class ManifestEntry:
    """What a run needs of a recorded file: which it is, its content and the days it covers."""

    file_id: int
    path: str
    content_hash: str
    days: tuple[str, ...]


@dataclass
class ScanResult:
    """The manifest after a scan, plus the files this scan found unreadable as a whole."""

    entries: list[ManifestEntry]
    failed: dict[str, FileRead] = field(default_factory=dict)

    def covering(self, days: set[str]) -> list[ManifestEntry]:
        return [entry for entry in self.entries if days.intersection(entry.days)]


def list_landed_files(landing_dir: Path) -> list[Path]:
    """Tracking files directly in the landing folder, in path order (the recording order)."""
    if not landing_dir.is_dir():
        raise FileNotFoundError(
            f"landing folder {landing_dir} does not exist; set SUBSYNC_LANDING_DIR or create it"
        )
    root = landing_dir.resolve()
    # A link that leads out of the landing folder is not a landed file.
    return [
        path
        for path in sorted(landing_dir.iterdir())
        if is_tracking_file(path) and path.is_file() and path.resolve().is_relative_to(root)
    ]


def assign_days(
    rows: pd.DataFrame, config: SubsyncConfig, fallback: str, latest: str
) -> tuple[pd.Series, pd.Series]:
    """The partition day of every row, and its occurred_at as naive UTC.

    A row whose occurred_at cannot be read, falls before config.start_date or after `latest` (a
    day in the future when the file was recorded: see `latest_day`) still needs a day so it is
    rejected (and reported) in some partition rather than lost: it takes the file's earliest
    valid day, or `fallback` when the file has none.
    """
    occurred = parse_timestamps(rows["occurred_at"], config.tz)
    days = local_days(occurred, config.tz)
    in_range = days.notna() & (days >= config.start_date.isoformat()) & (days <= latest)
    valid_days = days[in_range]
    file_day = valid_days.min() if not valid_days.empty else fallback
    return days.where(in_range, file_day).astype(str), occurred


def date_rows(rows: pd.DataFrame, config: SubsyncConfig, fallback: str, latest: str) -> None:
    """Add each row's day and occurred_at (`assign_days`) and its fingerprint to the parsed rows:
    kept with them, so reading the day does not parse and hash them again."""
    rows[DAY], rows[OCCURRED_UTC] = assign_days(rows, config, fallback, latest)
    rows[FINGERPRINT] = row_fingerprints(rows)


def latest_day(config: SubsyncConfig, now: datetime) -> str:
    """The last day a file recorded `now` may hold events of: tomorrow, for clocks and time zones
    a little ahead. A later event (a clock years off) would otherwise wait, unreported, for a
    partition that does not exist yet, and then win over every real change of its contact."""
    local = now.replace(tzinfo=UTC).astimezone(config.tz).date()
    return (local + timedelta(days=1)).isoformat()


def fallback_day(config: SubsyncConfig, now: datetime) -> str:
    """The day a file with no usable timestamp is reported under: the day it was first recorded."""
    local = now.replace(tzinfo=UTC).astimezone(config.tz).date()
    return max(local, config.start_date).isoformat()


def _load_entries(conn: Connection) -> list[dict[str, Any]]:
    query = sa.select(state.file_manifest).order_by(state.file_manifest.c.file_id)
    return [dict(row) for row in conn.execute(query).mappings()]


def _entry(row: dict[str, Any]) -> ManifestEntry:
    return ManifestEntry(
        file_id=int(row["file_id"]),
        path=str(row["path"]),
        content_hash=str(row["content_hash"]),
        days=tuple(json.loads(row["days"])),
    )


def _update(conn: Connection, file_id: int, **values: Any) -> None:
    manifest = state.file_manifest
    conn.execute(manifest.update().where(manifest.c.file_id == file_id).values(**values))


def scan(
    conn: Connection, landing_dir: Path, config: SubsyncConfig, days: Collection[str] = ()
) -> ScanResult:
    """Record new and changed files in the manifest (in the caller's transaction), keeping the
    parsed rows of those that cover `days` (`core/parsed.py`) for the steps that read them next;
    a first backfill lands a year of files at once, whose other days later runs read."""
    now = datetime.now(UTC).replace(tzinfo=None)
    known = {row["path"]: row for row in _load_entries(conn)}
    failed: dict[str, FileRead] = {}
    for path in list_landed_files(landing_dir):
        key = str(path)
        stat = path.stat()
        previous = known.get(key)
        if (
            previous is not None
            and previous["size"] == stat.st_size
            and previous["mtime"] == stat.st_mtime
        ):
            continue
        digest = content_hash(path)
        stamp = {"size": stat.st_size, "mtime": stat.st_mtime, "updated_at": now}
        if previous is not None and previous["content_hash"] == digest:
            _update(conn, previous["file_id"], **stamp)
            continue
        read = read_tracking_file(path, config.columns, config.max_file_mb)
        default_day = fallback_day(config, now)
        if read.status == FILE_OK and not read.rows.empty:
            date_rows(read.rows, config, default_day, latest_day(config, now))
            covered = sorted(read.rows[DAY].unique().tolist())
        else:
            covered = [default_day]
        if read.status != FILE_OK:
            failed[key] = read
        elif not read.rows.empty and not set(days).isdisjoint(covered):
            parsed.keep(digest, read.rows)
        values = {
            **stamp,
            "content_hash": digest,
            "days": json.dumps(covered),
            "row_count": len(read.rows),
            "status": read.status,
            "error": read.error,
        }
        if previous is None:
            inserted = conn.execute(
                state.file_manifest.insert().values(path=key, recorded_at=now, **values)
            )
            file_id = inserted.inserted_primary_key[0]  # type: ignore[index]
        else:
            file_id = previous["file_id"]
            _update(conn, file_id, **values)
            conn.execute(
                state.event_versions.delete().where(state.event_versions.c.file_id == file_id)
            )
        if not read.rows.empty:
            versions = pd.DataFrame(
                {
                    "file_id": file_id,
                    "line_number": read.rows[LINE],
                    "event_id": read.rows["event_id"].str.strip(),
                    "fingerprint": read.rows[FINGERPRINT],
                    "day": read.rows[DAY],
                }
            )
            # An id too long for CUS_ACTIVITY.EXTERNAL_ID is rejected anyway (invalid_event_id)
            # and may not fit event_versions.event_id: it takes no part in the duplicate rule.
            versions = versions.loc[versions["event_id"].str.len() <= EXTERNAL_ID_MAX]
            insert_frame(conn, state.event_versions, versions)
    return ScanResult(recorded(conn).entries, failed)


def recorded(conn: Connection) -> ScanResult:
    """The manifest as recorded, without scanning the landing folder."""
    return ScanResult(entries=[_entry(row) for row in _load_entries(conn)])


def rows_by_day(conn: Connection, days: list[str]) -> dict[str, int]:
    """How many rows the recorded files hold on each of `days` (those with a versioned id)."""
    versions = state.event_versions
    query = (
        sa.select(versions.c.day, sa.func.count())
        .where(versions.c.day.in_(days))
        .group_by(versions.c.day)
    )
    return {str(day): int(count) for day, count in conn.execute(query).all()}


def winning_versions(conn: Connection, days: list[str]) -> pd.DataFrame:
    """For every event id seen on `days` in more than one place, the fingerprint of its version
    recorded first anywhere.

    Returns event_id -> winner_fingerprint; the first is by (file_id, line_number), i.e. manifest
    order, so the winner does not depend on which day is processed first. An id seen once is
    its own winner and cannot be a duplicate, so only ids with another version are read: on a
    big day that is a handful of rows instead of one per event.
    """
    versions = state.event_versions
    other = versions.alias("other")
    # Per row of the days, a probe of the event_id index for a version elsewhere: the cost
    # follows the days' rows, not the whole table (a grouping over every version did).
    seen_twice = sa.select(versions.c.event_id).where(
        versions.c.day.in_(days),
        sa.exists().where(
            other.c.event_id == versions.c.event_id,
            sa.or_(
                other.c.file_id != versions.c.file_id,
                other.c.line_number != versions.c.line_number,
            ),
        ),
    )
    query = (
        sa.select(versions.c.event_id, versions.c.fingerprint.label("winner_fingerprint"))
        .where(versions.c.event_id.in_(seen_twice))
        .order_by(versions.c.file_id, versions.c.line_number)
    )
    return read_frame(conn, query).drop_duplicates("event_id").reset_index(drop=True)
