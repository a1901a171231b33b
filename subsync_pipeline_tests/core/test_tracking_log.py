"""Reading tracking-log files (SPEC §2): headers, encodings, compression, timestamps."""

from __future__ import annotations

import gzip
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from subsync_pipeline.core.tracking_log import (
    FILE_OK,
    FILE_TOO_LARGE,
    FILE_UNREADABLE,
    LINE,
    MISSING_COLUMNS,
    local_days,
    parse_timestamps,
    read_tracking_file,
)

HEADER = "event_id,email,custom_member_id,event_type,scope_type,scope_id,source,occurred_at"
ROW = "E1,a@example.org,100,subscribe,group,1201,api,2026-11-20T09:00:00"
NY = ZoneInfo("America/New_York")


def test_headers_are_case_insensitive_order_free_and_renamable(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "\ufeffOccurred_At,Source,SCOPE_ID,scope_type,Event_Type,Member,email,EVENT_ID,extra\n"
        "2026-11-20T09:00:00,api,1201,group,subscribe,100,a@example.org,E1,x\n",
        encoding="utf-8",
    )
    read = read_tracking_file(path, {"member": "custom_member_id"})
    assert read.status == FILE_OK
    row = read.rows.iloc[0]
    assert (row["custom_member_id"], row["event_id"], row["extra"]) == ("100", "E1", "x")
    assert row["force_optin"] == "" and row[LINE] == 2


def test_gzip_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(f"{HEADER}\n{ROW}\n{ROW}\n".encode()))
    read = read_tracking_file(path)
    assert read.status == FILE_OK and read.rows[LINE].tolist() == [2, 3]


def test_values_are_kept_as_text(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(f"{HEADER}\nE1,a@x.org,000123,subscribe,group,0077,api,NA\n")
    row = read_tracking_file(path).rows.iloc[0]
    assert (row["custom_member_id"], row["scope_id"], row["occurred_at"]) == (
        "000123",
        "0077",
        "NA",
    )


def test_whole_file_failures_name_the_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert read_tracking_file(empty).status == FILE_UNREADABLE

    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        f"{HEADER}\n".encode() + "E1,caf\xe9@x.org,1,subscribe,group,1,api,x\n".encode("latin-1")
    )
    read = read_tracking_file(latin)
    assert read.status == FILE_UNREADABLE and "UTF-8" in (read.error or "")

    missing = tmp_path / "missing.csv"
    missing.write_text("event_id,email\nE1,a@x.org\n")
    read = read_tracking_file(missing)
    assert read.status == MISSING_COLUMNS
    assert "custom_member_id" in (read.error or "") and "occurred_at" in (read.error or "")

    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(f"{HEADER}\n{ROW}\n".encode() * 50)[:40])
    assert read_tracking_file(truncated).status == FILE_UNREADABLE


def test_timestamps_with_and_without_offsets() -> None:
    values = pd.Series(
        [
            "2026-11-20T09:00:00",  # local New York time (EST, -5)
            "2026-11-20T09:00:00Z",
            "2026-11-20T23:30:00-05:00",
            "2026-07-01T09:00:00",  # EDT, -4
            "2026-11-20",
            "not a time",
            "",
        ]
    )
    parsed = parse_timestamps(values, NY)
    assert parsed.iloc[0] == pd.Timestamp("2026-11-20T14:00:00")
    assert parsed.iloc[1] == pd.Timestamp("2026-11-20T09:00:00")
    assert parsed.iloc[2] == pd.Timestamp("2026-11-21T04:30:00")
    assert parsed.iloc[3] == pd.Timestamp("2026-07-01T13:00:00")
    assert parsed.iloc[4] == pd.Timestamp("2026-11-20T05:00:00")
    assert parsed.iloc[5:].isna().all()
    days = local_days(parsed, NY)
    # 23:30 at -05:00 is still the 20th in New York although it is the 21st in UTC.
    assert days.iloc[:5].tolist() == [
        "2026-11-20",
        "2026-11-20",
        "2026-11-20",
        "2026-07-01",
        "2026-11-20",
    ]
    assert days.iloc[5:].isna().all()


def test_dst_edges() -> None:
    values = pd.Series(["2026-11-01T01:30:00", "2026-03-08T02:30:00"])
    parsed = parse_timestamps(values, NY)
    # The repeated hour is read as its first occurrence (EDT); the skipped hour moves forward.
    assert parsed.tolist() == [
        pd.Timestamp("2026-11-01T05:30:00"),
        pd.Timestamp("2026-03-08T07:00:00"),
    ]


def test_wide_encodings_are_refused_by_name(tmp_path: Path) -> None:
    """UTF-16/32 exports are refused, naming the encoding and the fix, not mis-read."""
    for encoding, name in (("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")):
        path = tmp_path / f"{encoding}.csv"
        bom = {"utf-16-be": "\ufeff"}.get(encoding, "")
        path.write_bytes(f"{bom}{HEADER}\n{ROW}\n".encode(encoding))
        read = read_tracking_file(path)
        assert read.status == FILE_UNREADABLE, encoding
        assert name in (read.error or "") and "export the file as UTF-8" in (read.error or "")


def test_latin1_is_refused_naming_the_byte_and_line(tmp_path: Path) -> None:
    """The byte and line are of the file, even past pandas' first read buffer."""
    path = tmp_path / "latin.csv.gz"
    body = f"{HEADER}\n" + f"{ROW}\n" * 20_000 + "E2,caf\xe9@x.org,1,subscribe,group,1,api,x\n"
    path.write_bytes(gzip.compress(body.encode("latin-1")))
    read = read_tracking_file(path)
    assert read.status == FILE_UNREADABLE
    assert "byte 0xE9 at line 20002" in (read.error or "")


def test_nul_bytes_and_other_separators_are_named(tmp_path: Path) -> None:
    nul = tmp_path / "nul.csv"
    nul.write_bytes(f"{HEADER}\n{ROW}\n{ROW}\x00\n".encode())
    read = read_tracking_file(nul)
    assert read.status == FILE_UNREADABLE and "NUL byte at line 3" in (read.error or "")

    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        path = tmp_path / "sep.csv"
        path.write_text(f"{HEADER}\n{ROW}\n".replace(",", separator))
        read = read_tracking_file(path)
        assert read.status == MISSING_COLUMNS and name in (read.error or "")


def test_ragged_and_multi_line_records(tmp_path: Path) -> None:
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(
        f'{HEADER}\nE1,a@x.org,100,subscribe,group,1201,api,"2026-11-20\nT09"\n{ROW}\n'
    )
    read = read_tracking_file(quoted)
    assert read.status == FILE_OK and read.rows["occurred_at"].iloc[0] == "2026-11-20\nT09"

    long_row = tmp_path / "long.csv"
    long_row.write_text(f"{HEADER}\n{ROW}\n{ROW},extra\n")
    read = read_tracking_file(long_row)
    assert read.status == FILE_UNREADABLE and "line 3" in (read.error or "")

    # A short row is padded with blanks; validation then rejects what is missing or shifted.
    short = tmp_path / "short.csv"
    short.write_text(f"{HEADER}\n{ROW}\nE2,a@x.org,100\n")
    read = read_tracking_file(short)
    assert read.status == FILE_OK and read.rows["event_type"].tolist() == ["subscribe", ""]

    unterminated = tmp_path / "unterminated.csv"
    unterminated.write_text(f'{HEADER}\n{ROW}\nE2,"a@x.org,100,subscribe\n')
    assert read_tracking_file(unterminated).status == FILE_UNREADABLE


def test_a_very_long_field_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "long_field.csv"
    path.write_text(f"{HEADER}\nE1,{'x' * 5_000_000}@x.org,100,subscribe,group,1201,api,t\n")
    read = read_tracking_file(path)
    assert read.status == FILE_OK and len(read.rows["email"].iloc[0]) == 5_000_006


def test_files_over_the_limit_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "big.csv"
    plain.write_text(f"{HEADER}\n" + f"{ROW}\n" * 30_000)  # about 2 MB
    read = read_tracking_file(plain, max_mb=1)
    assert read.status == FILE_TOO_LARGE
    assert "big.csv is 2 MB, over max_file_mb = 1 MB" in (read.error or "")
    assert "split the export" in (read.error or "")
    assert read_tracking_file(plain, max_mb=3).status == FILE_OK

    # A gzip bomb: small on disk, 200 MB unpacked; refused after reading about 1 MB of it.
    member = gzip.compress(b"x" * (1 << 20))
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(f"{HEADER}\n".encode()) + member * 200)
    assert bomb.stat().st_size < 1 << 20
    read = read_tracking_file(bomb, max_mb=1)
    assert read.status == FILE_TOO_LARGE and "unpacks to more than 1 MB" in (read.error or "")


def test_out_of_range_timestamps_are_unreadable_not_fatal() -> None:
    values = pd.Series(["9999-12-31T23:59:59", "9999-12-31T23:59:59Z", "0001-01-01", "2199-01-01"])
    parsed = parse_timestamps(values, NY)
    assert parsed.iloc[:3].isna().all()
    assert parsed.iloc[3] == pd.Timestamp("2199-01-01T05:00:00")


def test_offsets_after_one_digit_times_are_read_as_offsets_not_fatal() -> None:
    # Found by test_fuzz_reader: pandas reads these offsets; the naive branch raised on them
    # ("Mixed timezones", an aware/naive comparison) and stopped the run for every file.
    values = pd.Series(["0114", "0111-1-1T3:0:0-054", "2026-1-1T3:0:0-0500", "2026-01-01T3:00+5"])
    parsed = parse_timestamps(values, NY)
    assert parsed.iloc[:2].isna().all()
    assert parsed.iloc[2] == pd.Timestamp("2026-01-01T08:00:00")
    assert parsed.iloc[3] == pd.Timestamp("2025-12-31T22:00:00")
