"""Assembling a day's raw tracking log from the manifest's files (the raw_tracking_log asset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.manifest import ManifestEntry, ScanResult, assign_days
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
    read_tracking_file,
    row_fingerprints,
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
    files: list[dict[str, object]] = []
    for entry in scan.covering(wanted):
        # A file that fails as a whole is reported under the first of its days being processed.
        first_day = min(wanted.intersection(entry.days))
        read = scan.parsed.get(entry.path)
        if read is None:
            if not Path(entry.path).exists():
                files.append(_file_row(entry, first_day, FILE_UNREADABLE, "the file is gone"))
                continue
            read = read_tracking_file(Path(entry.path), config.columns, config.max_file_mb)
        if read.status != FILE_OK:
            files.append(_file_row(entry, first_day, read.status, read.error))
            continue
        rows = read.rows
        if DAY not in rows:
            # The days the scan recorded bound the file's days, so rows dated in the future when
            # it was recorded stay on its earliest day (and are rejected there) however late it
            # is read. A file the scan has just read carries the same days already.
            row_days, occurred = assign_days(
                rows, config, fallback=entry.days[0], latest=entry.days[-1]
            )
            rows = rows.assign(**{DAY: row_days, OCCURRED_UTC: occurred})
        rows = rows.loc[rows[DAY].isin(wanted)].copy()
        if FINGERPRINT not in rows:
            rows[FINGERPRINT] = row_fingerprints(rows)
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


def _failed_elsewhere(scan: ScanResult, wanted: set[str]) -> pd.DataFrame:
    """The whole-file failures this scan recorded under days other than `wanted`."""
    failures = []
    for entry in scan.entries:
        read = scan.parsed.get(entry.path)
        if read is None or read.status == FILE_OK or wanted.intersection(entry.days):
            continue
        failures.append(_file_row(entry, entry.days[0], read.status, read.error))
    return pd.DataFrame(failures, columns=FILE_COLUMNS)


def _file_row(
    entry: ManifestEntry, day: str, status: str, error: str | None, rows_read: int = 0
) -> dict[str, object]:
    return {
        "file_id": entry.file_id,
        "path": entry.path,
        "day": day,
        "status": status,
        "error": error,
        "rows_read": rows_read,
        "repeats_dropped": 0,
    }
