"""Assembling a day's raw tracking log from the manifest's files (the raw_tracking_log asset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from subsync_pipeline.core import parsed
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.manifest import ManifestEntry, ScanResult, date_rows
from subsync_pipeline.core.tracking_log import (
    ALL_COLUMNS,
    DAY,
    FILE_ID,
    FILE_OK,
    FILE_UNREADABLE,
    FINGERPRINT,
    LINE,
    OCCURRED_UTC,
    SOURCE_FILE,
    FileRead,
    content_hash,
    read_tracking_file,
)

# The raw rows: the spec columns, any extra columns files carry, then this bookkeeping.
BOOKKEEPING_COLUMNS: list[str] = [LINE, DAY, FILE_ID, SOURCE_FILE, FINGERPRINT, OCCURRED_UTC]
RAW_COLUMNS: list[str] = [*ALL_COLUMNS, *BOOKKEEPING_COLUMNS]

FILE_COLUMNS: list[str] = [
    "file_id",
    "path",
    "day",
    "status",
    "error",
    "rows_read",
    "repeats_dropped",
]


@dataclass(frozen=True)
class RawFiles:
    """What the raw step hands on: the files read for some days and what happened to each (the
    validation reads the rows again from the files the manifest records)."""

    files: pd.DataFrame
    days: tuple[str, ...]
    # Files this run recorded that failed as a whole and are filed under another day (the day
    # they were recorded, having no readable timestamp): reported by the run that finds them too,
    # or a backfill would record a broken upload and say nothing.
    recorded_failures: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=FILE_COLUMNS)
    )

    @property
    def failed_files(self) -> pd.DataFrame:
        return self.files.loc[self.files["status"].ne(FILE_OK)]

    @staticmethod
    def combined(parts: list[RawFiles]) -> RawFiles:
        """The summary of consecutive chunks of days as one: a file read in several counts once,
        under its first day."""
        if len(parts) == 1:
            return parts[0]
        files = (
            pd.concat([part.files for part in parts], ignore_index=True)
            .groupby("file_id", sort=False, as_index=False)
            .agg(
                path=("path", "first"),
                day=("day", "min"),
                status=("status", "first"),
                error=("error", "first"),
                rows_read=("rows_read", "sum"),
                repeats_dropped=("repeats_dropped", "sum"),
            )
        )
        # A failure recorded under a day outside every chunk is "elsewhere" in each of them.
        elsewhere = parts[0].recorded_failures
        return RawFiles(
            files=files[FILE_COLUMNS],
            days=tuple(day for part in parts for day in part.days),
            recorded_failures=elsewhere.loc[~elsewhere["file_id"].isin(files["file_id"])],
        )


@dataclass(frozen=True, kw_only=True)
class RawTrackingLog(RawFiles):
    """The rows of some days, every value as landed, plus what happened to each file read."""

    rows: pd.DataFrame

    def summary(self) -> RawFiles:
        return RawFiles(self.files, self.days, self.recorded_failures)


def read_days(scan: ScanResult, days: list[str], config: SubsyncConfig) -> RawTrackingLog:
    """The rows of the files covering `days` whose day is one of `days`, exact repeats dropped.

    An exact repeat (the same event with the same content, in one file or several) is kept once:
    its first occurrence in manifest order.
    """
    wanted = set(days)
    frames: list[pd.DataFrame] = []
    files: list[tuple[object, ...]] = []
    for entry in scan.covering(wanted):
        # A file that fails as a whole is reported under the first of its days being processed.
        first_day = min(wanted.intersection(entry.days))
        failed = scan.failed.get(entry.path)
        rows = None if failed else parsed.load(entry.content_hash)
        if rows is None:
            read = failed or _read(Path(entry.path), entry, config)
            if read.status != FILE_OK:
                files.append(_file_row(entry, first_day, read.status, read.error))
                continue
            rows = read.rows
        rows = rows.loc[rows[DAY].isin(wanted)].copy()
        rows[FILE_ID] = entry.file_id
        rows[SOURCE_FILE] = entry.path
        frames.append(rows)
        files.append(_file_row(entry, first_day, FILE_OK, None, rows_read=len(rows)))

    if frames:
        rows = pd.concat(frames, ignore_index=True)
        extra = [c for c in rows.columns if c not in RAW_COLUMNS]
        rows = rows[[*ALL_COLUMNS, *extra, *BOOKKEEPING_COLUMNS]]
        rows = rows.sort_values([FILE_ID, LINE], kind="mergesort")
        repeat = rows.duplicated(FINGERPRINT, keep="first")
        dropped = rows.loc[repeat].groupby(FILE_ID).size()
        rows = rows.loc[~repeat].reset_index(drop=True)
    else:
        rows = pd.DataFrame(columns=RAW_COLUMNS, dtype=object)
        dropped = pd.Series(dtype="int64")
    file_frame = pd.DataFrame(files, columns=FILE_COLUMNS)
    file_frame["repeats_dropped"] = file_frame["file_id"].map(dropped).fillna(0).astype("int64")
    return RawTrackingLog(
        rows=rows,
        files=file_frame,
        days=tuple(sorted(wanted)),
        recorded_failures=_failed_elsewhere(scan, wanted),
    )


def _read(path: Path, entry: ManifestEntry, config: SubsyncConfig) -> FileRead:
    """A recorded file read again, dated and fingerprinted as the scan did; kept for the next
    read of this process when its content is still the one recorded."""
    if not path.exists():
        return FileRead(pd.DataFrame(), FILE_UNREADABLE, "the file is gone")
    read = read_tracking_file(path, config.columns, config.max_file_mb)
    if read.status != FILE_OK:
        return read
    # The days the scan recorded bound the file's days, so rows dated in the future when it was
    # recorded stay on its earliest day (and are rejected there) however late it is read.
    date_rows(read.rows, config, fallback=entry.days[0], latest=entry.days[-1])
    if content_hash(path) == entry.content_hash:
        parsed.keep(entry.content_hash, read.rows)
    return read


def _failed_elsewhere(scan: ScanResult, wanted: set[str]) -> pd.DataFrame:
    """The whole-file failures this scan recorded under days other than `wanted`."""
    failures = []
    for entry in scan.entries:
        read = scan.failed.get(entry.path)
        if read is None or wanted.intersection(entry.days):
            continue
        failures.append(_file_row(entry, entry.days[0], read.status, read.error))
    return pd.DataFrame(failures, columns=FILE_COLUMNS)


def _file_row(
    entry: ManifestEntry, day: str, status: str, error: str | None, rows_read: int = 0
) -> tuple[object, ...]:
    """A row of FILE_COLUMNS; the repeats dropped are counted over all the files read."""
    return (entry.file_id, entry.path, day, status, error, rows_read, 0)
