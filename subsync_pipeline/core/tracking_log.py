"""Reading Real Magnet tracking-log files (SPEC §2) into string DataFrames, one file at a time.

A file either yields its rows (every value kept as text, with its line number) or a whole-file
failure with a reason code; one bad file never stops the others.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from typing_extensions import Buffer

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
# Not in SPEC §3: a file over config.max_file_mb is refused before it can exhaust memory.
FILE_TOO_LARGE = "file_too_large"

# CUS_ACTIVITY.EXTERNAL_ID is varchar(64): a longer event_id can never be written.
EXTERNAL_ID_MAX = 64
MEGABYTE = 1024 * 1024
DEFAULT_MAX_FILE_MB = 512
# Longest first: a UTF-32 little-endian mark begins with the UTF-16 one.
_WIDE_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
_TOO_LARGE_FIX = (
    "split the export into smaller files (Real Magnet: export a shorter date range), or raise "
    "max_file_mb in the config if the machine running subsync has the memory (reading takes "
    "several times the file's size)"
)
_OTHER_SEPARATORS: dict[str, str] = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}

# datetime64[ns] spans the years 1677-2262. A time outside (9999-12-31, 0001-01-01) is no real
# tracking time, and converting it would raise and stop the run for every file: it is unreadable.
_EARLIEST = pd.Timestamp("1678-01-01")
_LATEST = pd.Timestamp("2261-12-31")

# An offset only counts after a time of day: "2026-11-20" ends in "-20" but has none. Written
# as loosely as pandas' ISO-8601 parser reads one (one-digit fields, any digits of offset): a
# value it reads with an offset must not reach the naive branch, which cannot mix offsets.
_OFFSET = r"\d{1,2}:\d{1,2}(?::\d{1,2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d+(?::\d+)?)$"


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
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _failure(status: str, error: str) -> FileRead:
    rows = pd.DataFrame({column: pd.Series(dtype=str) for column in ALL_COLUMNS})
    rows[LINE] = pd.Series(dtype="int64")
    return FileRead(rows=rows, status=status, error=error)


class _Refused(Exception):
    """Reading stopped part-way: the file is over the size limit or is not text."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def _open(path: Path) -> BinaryIO | gzip.GzipFile:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


class _CheckedStream(io.RawIOBase):
    """The bytes pandas parses, counted so an oversized (or gzip-bomb) file stops at the limit
    instead of exhausting memory, and searched for NUL, which no text CSV holds (and which
    PostgreSQL cannot store)."""

    def __init__(self, path: Path, limit: int) -> None:
        self._path, self._raw, self._limit, self._read = path, _open(path), limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer)
        data = self._raw.read(len(view))
        nul = data.find(b"\x00")
        if nul >= 0:
            line = _line_of(self._path, self._read + nul)
            raise _Refused(
                FILE_UNREADABLE,
                f"not a text CSV file: a NUL byte at line {line} (binary data, or UTF-16 "
                "without a byte-order mark); export the file as UTF-8 CSV",
            )
        self._read += len(data)
        if self._read > self._limit:
            raise _Refused(
                FILE_TOO_LARGE,
                f"{self._path.name} unpacks to more than {self._limit // MEGABYTE} MB "
                f"(max_file_mb): {_TOO_LARGE_FIX}",
            )
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _line_of(path: Path, offset: int) -> int:
    """The 1-based line holding byte `offset` of the (unpacked) file."""
    with _open(path) as handle:
        blocks = iter(lambda: handle.read(min(1 << 20, offset - handle.tell())), b"")
        return sum(block.count(b"\n") for block in blocks) + 1


def _first_undecodable(path: Path) -> str:
    """Where the file stops being UTF-8: the byte, its line and offset (pandas' own offset is
    within a buffer, not the file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with _open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                return f"byte 0x{block[exc.start]:02X} at line {_line_of(path, at)} (offset {at})"
            offset += len(block)
    return "the end of the file (a character cut short)"


def _wide_encoding(path: Path) -> str | None:
    """The name of a UTF-16/UTF-32 byte-order mark the file starts with, if any."""
    with _open(path) as handle:
        start = handle.read(4)
    return next((name for bom, name in _WIDE_BOMS if start.startswith(bom)), None)


def _separator_hint(headers: list[str]) -> str:
    """Why one header can hold every column name: the export used another separator."""
    if len(headers) != 1:
        return ""
    for separator, name in _OTHER_SEPARATORS.items():
        if separator in headers[0]:
            return f"; the header looks separated by {name}, not commas: export as comma-separated"
    return ""


def read_tracking_file(
    path: Path, renames: dict[str, str] | None = None, max_mb: int = DEFAULT_MAX_FILE_MB
) -> FileRead:
    """Read one tracking-log file; header names are matched case-insensitively after `renames`.

    A file over `max_mb` (unpacked) is refused with FILE_TOO_LARGE rather than read.
    """
    renames = renames or {}
    limit = max_mb * MEGABYTE
    try:
        size = path.stat().st_size
        if size == 0:
            return _failure(FILE_UNREADABLE, "the file is empty (0 bytes): no header row")
        if size > limit:
            return _failure(
                FILE_TOO_LARGE,
                f"{path.name} is {size / MEGABYTE:,.0f} MB, over max_file_mb = {max_mb} MB: "
                f"{_TOO_LARGE_FIX}",
            )
        wide = _wide_encoding(path)
        if wide:
            return _failure(
                FILE_UNREADABLE,
                f"{wide} text: subsync reads UTF-8 only; export the file as UTF-8 CSV",
            )
        with io.BufferedReader(_CheckedStream(path, limit)) as handle:
            frame = pd.read_csv(
                handle,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8-sig",
                quoting=csv.QUOTE_MINIMAL,
                engine="c",
            )
    except _Refused as refused:
        return _failure(refused.status, refused.error)
    except pd.errors.EmptyDataError:
        return _failure(FILE_UNREADABLE, "the file holds no header row")
    except UnicodeDecodeError:
        # Latin-1 / Windows-1252 is refused, never guessed: a mis-decoded name is wrong data.
        return _failure(
            FILE_UNREADABLE,
            f"not UTF-8 text ({_first_undecodable(path)}); export the file as UTF-8",
        )
    except pd.errors.ParserError as exc:
        return _failure(FILE_UNREADABLE, f"not a well-formed CSV file: {exc}".strip())
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return _failure(FILE_UNREADABLE, f"cannot read the file: {exc}")

    keys = [str(header).strip().lstrip("\ufeff").strip().lower() for header in frame.columns]
    headers = [renames.get(key, key) for key in keys]
    dupes = sorted(column for column in ALL_COLUMNS if headers.count(column) > 1)
    if dupes:
        return _failure(MISSING_COLUMNS, f"column(s) {dupes} appear more than once after renaming")
    frame.columns = pd.Index(headers)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        return _failure(
            MISSING_COLUMNS,
            f"required column(s) missing: {', '.join(missing)}; "
            f"found: {', '.join(map(str, frame.columns))}{_separator_hint(headers)}",
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
    matched = pc.match_substring_regex(pa.array(text, pa.large_string()), _OFFSET)
    has_offset = pd.Series(
        pc.fill_null(matched, False).to_numpy(zero_copy_only=False), index=text.index
    )
    if has_offset.any():
        parsed = pd.to_datetime(text[has_offset], format="ISO8601", errors="coerce", utc=True)
        parsed = parsed.where(
            parsed.between(_EARLIEST.tz_localize("UTC"), _LATEST.tz_localize("UTC"))
        )
        result.loc[has_offset] = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    local = ~has_offset & text.fillna("").ne("")
    if local.any():
        naive = pd.to_datetime(text[local], format="ISO8601", errors="coerce")
        naive = naive.where(naive.between(_EARLIEST, _LATEST))
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
