"""Reading Real Magnet tracking-log files (SPEC §2) into string DataFrames, one file at a time.

A file either yields its rows (every value kept as text, with its line number) or a whole-file
failure with a reason code; one bad file never stops the others.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

REQUIRED_COLUMNS: tuple[str, ...] = (
    "event_id",
    "email",
    "custom_member_id",
    "event_type",
    "scope_type",
    "scope_id",
    "source",
    "occurred_at",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("scope_name", "force_optin", "timestamp_subscribed")
ALL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
TRACKING_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")

# Bookkeeping columns start with "_" so they cannot collide with a file's own (extra) headers.
LINE = "_line_number"
FILE_ID = "_file_id"
SOURCE_FILE = "_source_file"
DAY = "_day"
FINGERPRINT = "_fingerprint"
# occurred_at parsed to naive UTC once, when the file is first read, for every later step.
OCCURRED_UTC = "_occurred_utc"

FILE_OK = "ok"
FILE_UNREADABLE = "file_unreadable"
MISSING_COLUMNS = "missing_columns"

# An offset only counts after a time of day: "2026-11-20" ends in "-20" but has none.
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


@dataclass(frozen=True)
class FileRead:
    """The outcome of reading one file: rows, or a whole-file failure with its reason and error."""

    rows: pd.DataFrame
    status: str
    error: str | None = None


def is_tracking_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(TRACKING_SUFFIXES)


def content_hash(path: Path) -> str:
    """SHA-256 of the bytes as stored: the identity of a file's content whatever its name."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=str) for column in ALL_COLUMNS})
    frame[LINE] = pd.Series(dtype="int64")
    return frame


def _failure(status: str, error: str) -> FileRead:
    return FileRead(rows=_empty_rows(), status=status, error=error)


def _normalise_headers(headers: list[str], renames: dict[str, str]) -> tuple[list[str], str | None]:
    normalised = []
    for header in headers:
        key = str(header).strip().lstrip("\ufeff").strip().lower()
        normalised.append(renames.get(key, key))
    counts = Counter(normalised)
    dupes = sorted(h for h in ALL_COLUMNS if counts[h] > 1)
    if dupes:
        return normalised, f"column(s) {dupes} appear more than once after renaming"
    return normalised, None


def read_tracking_file(path: Path, renames: dict[str, str] | None = None) -> FileRead:
    """Read one tracking-log file; header names are matched case-insensitively after `renames`."""
    renames = renames or {}
    try:
        if path.stat().st_size == 0:
            return _failure(FILE_UNREADABLE, "the file is empty (0 bytes): no header row")
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            compression="gzip" if path.name.lower().endswith(".gz") else None,
            quoting=csv.QUOTE_MINIMAL,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        return _failure(FILE_UNREADABLE, "the file holds no header row")
    except UnicodeDecodeError as exc:
        return _failure(
            FILE_UNREADABLE,
            f"not UTF-8 text (byte {exc.start}: {exc.reason}); export the file as UTF-8",
        )
    except pd.errors.ParserError as exc:
        return _failure(FILE_UNREADABLE, f"not a well-formed CSV file: {exc}".strip())
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return _failure(FILE_UNREADABLE, f"cannot read the file: {exc}")

    headers, problem = _normalise_headers(list(frame.columns), renames)
    if problem:
        return _failure(MISSING_COLUMNS, problem)
    frame.columns = pd.Index(headers)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        return _failure(
            MISSING_COLUMNS,
            f"required column(s) missing: {', '.join(missing)}; "
            f"found: {', '.join(map(str, frame.columns))}",
        )
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    # The header is line 1; blank lines are skipped by the reader, so this counts records.
    frame[LINE] = np.arange(2, len(frame) + 2, dtype="int64")
    return FileRead(rows=frame.reset_index(drop=True), status=FILE_OK)


def row_fingerprints(rows: pd.DataFrame) -> pd.Series:
    """A 64-bit hash per row over the spec columns: equal content gives equal fingerprints."""
    trimmed = rows[list(ALL_COLUMNS)].apply(lambda column: column.str.strip())
    return pd.util.hash_pandas_object(trimmed, index=False).astype("int64")


def parse_timestamps(values: pd.Series, tz: ZoneInfo) -> pd.Series:
    """ISO-8601 text -> naive UTC datetimes; no offset means local time in `tz`; bad text -> NaT.

    An ambiguous local time (the repeated hour when clocks go back) is read as the first one, and
    a non-existent one (the skipped hour) is moved forward, as Real Magnet's own exports do.
    """
    text = values.astype(str).str.strip()
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    # pyarrow's RE2 matcher: pandas runs this pattern through Python's re, row by row.
    has_offset = pd.Series(
        pc.match_substring_regex(pa.array(text, pa.large_string()), _OFFSET).to_numpy(
            zero_copy_only=False
        ),
        index=text.index,
    )
    blank = text.eq("")
    with_offset = has_offset & ~blank
    if with_offset.any():
        parsed = pd.to_datetime(text[with_offset], format="ISO8601", errors="coerce", utc=True)
        result.loc[with_offset] = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    local = ~has_offset & ~blank
    if local.any():
        naive = pd.to_datetime(text[local], format="ISO8601", errors="coerce")
        localised = naive.dt.tz_localize(
            tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward"
        )
        result.loc[local] = (
            localised.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
        )
    # Databases keep microseconds; rounding here keeps what we compare equal to what we wrote.
    return result.dt.floor("us")


def local_days(utc: pd.Series, tz: ZoneInfo) -> pd.Series:
    """The partition day (YYYY-MM-DD in `tz`) of naive UTC datetimes; NaT gives a missing day."""
    local = utc.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    # A file spans a few days: format those, not a million timestamps.
    codes, days = pd.factorize(local)
    text = np.append(days.strftime("%Y-%m-%d").to_numpy(object), np.array([None], dtype=object))
    return pd.Series(text[codes], index=utc.index, dtype=object)
