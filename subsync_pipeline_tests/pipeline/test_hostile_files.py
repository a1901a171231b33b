"""Hostile input (issue 7): one day's landing folder holds every kind of bad file and bad value
at once, on PostgreSQL for Personify and state (column widths and NUL are enforced there, unlike
SQLite). Each bad file or row is rejected with a named reason and, for whole files, an error that
says where and what to fix; every valid row of every file still lands in Personify, and SQL
injection and formula payloads are stored verbatim as data.
"""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.manifest import fallback_day
from subsync_pipeline.core.tracking_log import ALL_COLUMNS
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer

DAY = "2026-11-20"
T = "2026-11-20T09:00:00"
HEADER = ",".join(ALL_COLUMNS)
# Quotes, comment markers, a dollar quote, a backslash and the COPY NULL spelling \N together.
INJECTION = '\'); DROP TABLE "CUS_OPT_IN"; -- $$ \\N \\'
FORMULA = '=HYPERLINK("http://evil.example","click")'
LONG_EVENT_ID = "L" * 300


def line(row: dict[str, str]) -> str:
    """A CSV line for `row` in ALL_COLUMNS order, quoted where the values need it."""
    return ",".join(
        '"' + value.replace('"', '""') + '"' if set(value) & set(',"\n;') else value
        for value in (row.get(column, "") for column in ALL_COLUMNS)
    )


def csv_text(*rows: dict[str, str]) -> str:
    return "\n".join([HEADER, *(line(row) for row in rows)]) + "\n"


def injection_rows() -> tuple[list[dict[str, str]], dict[str, str]]:
    """A row per column carrying an injection payload: valid where the column is free text (it
    must land verbatim), rejected with the column's reason code where it is coded."""
    landing = [
        event(f"E{INJECTION}"[:64], "000102", "subscribe", "api", T),
        event("INJ_EMAIL", "000101", "subscribe", "api", T, email=f"x{INJECTION}@example.org"),
        event("INJ_SCOPE_ID", "000103", "subscribe", "api", T, scope_id=f"1201{INJECTION}"),
        event("INJ_SCOPE_NAME", "000104", "subscribe", "api", T, scope_name=INJECTION),
        event("FORMULA_OK", "000105", "subscribe", "api", T, scope_name=FORMULA),
    ]
    coded = {
        "custom_member_id": "invalid_member_id",
        "event_type": "invalid_event_type",
        "scope_type": "invalid_scope_type",
        "source": "invalid_source",
        "force_optin": "invalid_force_optin",
        "occurred_at": "invalid_timestamp",
        "timestamp_subscribed": "invalid_timestamp",
    }
    rejected = {f"INJ_{column.upper()}": reason for column, reason in coded.items()}
    landing += [
        {**event(f"INJ_{column.upper()}", "000106", "subscribe", "api", T), column: INJECTION}
        for column in coded
    ]
    return landing, rejected


def land_hostile_folder(deployment: Deployment, outside: Path) -> None:
    land = deployment.landing
    injections, _ = injection_rows()
    (land / "a_good.csv").write_text(
        csv_text(event("GOOD1", "000100", "subscribe", "api", T), *injections), encoding="utf-8"
    )
    # Formula payloads in a rejected row: the stewards' CSV must not run them.
    (land / "b_formula.csv").write_text(
        csv_text(
            {**event("FORMULA_BAD", "999999", "subscribe", "api", T), "email": "=cmd|' /C calc'!A0"}
        ),
        encoding="utf-8",
    )
    (land / "c_semicolon.csv").write_text(
        HEADER.replace(",", ";") + "\n" + line(event("SEMI1", "000107", "subscribe", "api", T))
    )
    ragged = csv_text(event("RAG1", "000107", "subscribe", "api", T))
    (land / "d_ragged_long.csv").write_text(
        ragged + line(event("RAG2", "000107", "a", "b", T)) + ",x\n"
    )
    # A short row: its values shift left and fail their checks; the file's other rows land.
    short = event("SHORT2", "000108", "subscribe", "api", T)
    (land / "e_ragged_short.csv").write_text(
        csv_text(event("SHORT1", "000108", "unsubscribe", "api", T))
        + ",".join(short[column] for column in ALL_COLUMNS if column != "email")
        + "\n"
    )
    (land / "f_quoted_newline.csv").write_text(
        csv_text(
            event("QN1", "000109", "subscribe", "api", T, scope_name='Weekly\nNews, "quoted"'),
            event("QN2", "000110", "subscribe", "api", T),
        )
    )
    (land / "g_unterminated.csv").write_text(
        HEADER + '\nUQ1,"a@example.org,000111,subscribe,group,1201,x,api,false,' + T + ",\n"
    )
    (land / "h_utf16.csv").write_bytes(
        csv_text(event("U16", "000112", "subscribe", "api", T)).encode("utf-16")
    )
    latin = csv_text(
        event("LAT1", "000113", "subscribe", "api", T),
        event("LAT2", "000113", "subscribe", "api", T, scope_name="Caf\u00e9 News"),
    )
    (land / "i_latin1.csv").write_bytes(latin.encode("latin-1"))
    (land / "j_bom.csv").write_bytes(
        b"\xef\xbb\xbf" + csv_text(event("BOM1", "000114", "subscribe", "api", T)).encode()
    )
    (land / "k_empty.csv").write_bytes(b"")
    (land / "l_header_only.csv").write_text(HEADER + "\n")
    whole = gzip.compress(
        csv_text(*[event(f"GZ{n}", "000115", "subscribe", "api", T) for n in range(200)]).encode()
    )
    (land / "m_truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (land / "n_long.csv").write_text(
        csv_text(
            event(LONG_EVENT_ID, "000116", "subscribe", "api", T),
            event("LONG_NAME", "000116", "subscribe", "api", T, scope_name="N" * 300),
            event("LONG_SCOPE", "000116", "subscribe", "api", T, scope_id="9" * 300),
            event("LONG_EMAIL", "000117", "subscribe", "api", T, email="e" * 1_000_000 + "@x.org"),
        )
    )
    (land / "o_dup_first.csv").write_text(csv_text(event("DUP1", "000118", "subscribe", "api", T)))
    (land / "p_dup_second.csv").write_text(
        csv_text(event("DUP1", "000118", "unsubscribe", "api", T))
    )
    (land / "q_times.csv").write_text(
        csv_text(
            event("FUTURE", "000119", "unsubscribe", "preference_centre", "2199-01-01T00:00:00"),
            event("FAR_FUTURE", "000119", "unsubscribe", "api", "9999-12-31T23:59:59"),
            event("EARLY", "000119", "unsubscribe", "api", "2025-06-01T09:00:00"),
            event("SUB_FUTURE", "000119", "subscribe", "api", T, timestamp_subscribed="2199-01-01"),
            event("TIME_OK", "000120", "subscribe", "api", T),
        )
    )
    (land / "r_binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (land / "s_nul.csv").write_text(
        csv_text(event("NUL1", "000121", "subscribe", "api", T))
        + line(event("NUL2", "000121", "subscribe", "api", T, scope_name="a\x00b"))
        + "\n"
    )
    (land / "t_notes.txt").write_text(csv_text(event("TXT1", "000122", "subscribe", "api", T)))
    (outside / "stolen.csv").write_text(csv_text(event("LINK1", "000123", "subscribe", "api", T)))
    (land / "u_link.csv").symlink_to(outside / "stolen.csv")


LANDS = {
    "GOOD1",
    f"E{INJECTION}"[:64],
    "INJ_EMAIL",
    "INJ_SCOPE_ID",
    "INJ_SCOPE_NAME",
    "FORMULA_OK",
    "SHORT1",
    "QN1",
    "QN2",
    "BOM1",
    "LONG_EMAIL",
    "DUP1",
    "TIME_OK",
}
FILE_FAILURES = {
    "c_semicolon.csv": ("missing_columns", ["semicolons"]),
    "d_ragged_long.csv": ("file_unreadable", ["line 3", "Expected 11 fields"]),
    "g_unterminated.csv": ("file_unreadable", ["EOF inside string"]),
    "h_utf16.csv": ("file_unreadable", ["UTF-16", "export the file as UTF-8"]),
    "i_latin1.csv": ("file_unreadable", ["0xE9 at line 3", "export the file as UTF-8"]),
    "k_empty.csv": ("file_unreadable", ["empty"]),
    "m_truncated.csv.gz": ("file_unreadable", ["cannot read"]),
    "r_binary.csv": ("file_unreadable", ["NUL byte at line 3"]),
    "s_nul.csv": ("file_unreadable", ["NUL byte at line 3"]),
}


@pytest.mark.postgres
def test_hostile_files_are_named_and_every_valid_row_lands(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    deployment = deploy(
        tmp_path / "deployment",
        personify_url=postgres_server.create_database("hostile_personify"),
        state_url=postgres_server.create_database("hostile_state"),
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    land_hostile_folder(deployment, outside)
    _, injected_rejects = injection_rows()

    assert deployment.materialize(DAY).success
    # Files with no readable row are reported under the day they were recorded.
    recorded = fallback_day(parse_config(deployment.config), datetime.now(UTC))
    assert deployment.materialize(recorded).success

    activity = deployment.activity().set_index("event_id")
    assert set(activity.index) == LANDS
    # Payloads are data: stored as sent, in Personify and in the state database.
    assert INJECTION in activity.loc["INJ_SCOPE_NAME", "ACTIVITY_TEXT"]
    assert f"1201{INJECTION}" in activity.loc["INJ_SCOPE_ID", "ACTIVITY_TEXT"]
    assert FORMULA in activity.loc["FORMULA_OK", "ACTIVITY_TEXT"]
    assert 'Weekly\nNews, "quoted"' in activity.loc["QN1", "ACTIVITY_TEXT"]
    engine = deployment.engine()
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "CUSTOMER"')).scalar_one() == 40
    engine.dispose()

    rejects = deployment.state(
        "select source_file, event_id, reasons, error, original_values from rejected_records"
    )
    rejects["file"] = rejects["source_file"].map(lambda p: Path(p).name)
    whole = rejects.loc[rejects["original_values"].isna()].set_index("file")
    assert set(whole.index) == set(FILE_FAILURES)
    for name, (reason, phrases) in FILE_FAILURES.items():
        assert whole.loc[name, "reasons"] == reason, name
        for phrase in phrases:
            assert phrase in whole.loc[name, "error"], (name, whole.loc[name, "error"])

    rows = rejects.dropna(subset=["original_values"])
    by_id = {row.event_id: set(row.reasons.split(";")) for row in rows.itertuples()}
    expected = {
        **{event_id: {reason} for event_id, reason in injected_rejects.items()},
        "FORMULA_BAD": {"unknown_member"},
        "SHORT2": {"invalid_member_id", "invalid_event_type", "invalid_scope_type"},
        LONG_EVENT_ID[:255]: {"invalid_event_id"},
        "LONG_NAME": {"value_too_long"},
        "LONG_SCOPE": {"value_too_long"},
        "DUP1": {"duplicate_event"},
        "FUTURE": {"invalid_timestamp"},
        "FAR_FUTURE": {"invalid_timestamp"},
        "EARLY": {"invalid_timestamp"},
        "SUB_FUTURE": {"invalid_timestamp"},
    }
    assert {k: v for k, v in by_id.items() if k != "SHORT2"} == {
        k: v for k, v in expected.items() if k != "SHORT2"
    }
    assert expected["SHORT2"] <= by_id["SHORT2"]
    originals = {row.event_id: json.loads(row.original_values) for row in rows.itertuples()}
    for event_id in injected_rejects:
        assert INJECTION in originals[event_id].values(), event_id
    assert originals[LONG_EVENT_ID[:255]]["event_id"] == LONG_EVENT_ID

    # Neither the file behind a link out of the landing folder nor a non-CSV file is read.
    manifest = deployment.state("select path from file_manifest")["path"].map(
        lambda p: Path(p).name
    )
    assert "u_link.csv" not in set(manifest) and "t_notes.txt" not in set(manifest)

    with (deployment.reports / DAY / "rejected_rows.csv").open(encoding="utf-8") as handle:
        cells = [cell for row in csv.DictReader(handle) for cell in row.values() if cell]
    assert "'=cmd|' /C calc'!A0" in cells
    assert not [cell for cell in cells if cell[0] in "=+-@"]
    assert pd.Series(cells).str.contains("DROP TABLE", regex=False).any()
