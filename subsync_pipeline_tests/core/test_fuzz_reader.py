"""Fuzzing the reader and the validator (issue 7): whatever bytes land, reading returns a known
file status and never raises; whatever rows a readable file holds, every row comes out of
validation exactly once, validated or rejected with known reason codes, and a validated row
holds only allowed values. Bounded (max_examples, deadline) so it runs in CI on every push.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.config import EVENT_TYPES, SCOPE_TYPES, SOURCES, parse_config
from subsync_pipeline.core.manifest import assign_days
from subsync_pipeline.core.tracking_log import (
    ALL_COLUMNS,
    DAY,
    FILE_ID,
    FILE_OK,
    FILE_TOO_LARGE,
    FILE_UNREADABLE,
    FINGERPRINT,
    LINE,
    MISSING_COLUMNS,
    SOURCE_FILE,
    read_tracking_file,
    row_fingerprints,
)
from subsync_pipeline.core.validation import REASON_CODES, normalise, validate

CONFIG = parse_config(
    {
        "start_date": "2026-01-01",
        "interest_areas": [{"scope_type": "group", "scope_id": "1201", "opt_in_code": "NEWS"}],
    }
)
KNOWN = pd.DataFrame({"master_customer_id": ["100", "101"], "sub_customer_id": [0, 0]})
NO_WINNERS = pd.DataFrame({"event_id": pd.Series(dtype=str), "winner_fingerprint": []})
FILE_STATUSES = {FILE_OK, FILE_UNREADABLE, MISSING_COLUMNS, FILE_TOO_LARGE}
SETTINGS = settings(
    max_examples=60,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HOSTILE = [
    '\'); DROP TABLE "CUS_OPT_IN"; --',
    "1 OR 1=1",
    "\\N",
    "$$;$$",
    '=HYPERLINK("http://evil.example")',
    "+1-2",
    "@SUM(A1)",
    " line\nbreak ",
    'quote "inside"',
    "caf\u00e9 \u2603 \U0001f600",
    "\u202eevil",
    "x" * 300,
]
PLAUSIBLE = {
    "event_id": st.sampled_from(["E1", "E2", "", " E3 "]),
    "email": st.sampled_from(["a@example.org", "", "not an email"]),
    "custom_member_id": st.sampled_from(["100", "101|0", "100|1", "999", "", "12AB", "100|x"]),
    "event_type": st.sampled_from([*EVENT_TYPES, "SUBSCRIBE ", "resubscribe"]),
    "scope_type": st.sampled_from([*SCOPE_TYPES, "list"]),
    "scope_id": st.sampled_from(["1201", "77", "", "9" * 256]),
    "source": st.sampled_from([*SOURCES, "unsubscribe_link", "manual", "pigeon"]),
    "occurred_at": st.sampled_from(
        [
            "2026-11-20T09:00:00",
            "2026-11-20T09:00:00Z",
            "2026-11-20T23:30:00-05:00",
            "2025-01-01",
            "2199-01-01T00:00:00",
            "9999-12-31T23:59:59",
            "0001-01-01T00:00:00Z",
            "2026-03-08T02:30:00",
            "not a time",
            "",
        ]
    ),
    "timestamp_subscribed": st.sampled_from(["", "2026-01-05T00:00:00Z", "2199-01-01", "x"]),
    "force_optin": st.sampled_from(["", "true", "0", "YES", "perhaps"]),
    "scope_name": st.sampled_from(["", "Weekly News"]),
}


def cell(column: str) -> st.SearchStrategy[str]:
    return st.one_of(PLAUSIBLE[column], st.sampled_from(HOSTILE), st.text(max_size=20))


@st.composite
def tracking_csv(draw: st.DrawFn) -> bytes:
    """A CSV with the spec columns in any order and case, some missing or extra, rows whose
    cells mix plausible, hostile and arbitrary text, and sometimes a short or long row."""
    columns = draw(st.permutations(list(ALL_COLUMNS)))
    columns = columns[: draw(st.integers(len(columns) - 2, len(columns)))]
    headers = [draw(st.sampled_from([c, c.upper(), f" {c.title()} "])) for c in columns]
    rows = [[draw(cell(column)) for column in columns] for _ in range(draw(st.integers(0, 6)))]
    if rows and draw(st.booleans()):
        rows[-1] = rows[-1][: draw(st.integers(1, len(columns)))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(headers)
    writer.writerows(rows)
    prefix = draw(st.sampled_from(["", "\ufeff"]))
    return (prefix + buffer.getvalue()).encode("utf-8")


def read_and_validate(content: bytes, suffix: str = ".csv") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(content)
        read = read_tracking_file(path, max_mb=1)
    assert read.status in FILE_STATUSES
    assert (read.status == FILE_OK) == (read.error is None)
    if read.status != FILE_OK:
        assert read.error and read.rows.empty
        return
    rows = read.rows
    days, _ = assign_days(rows, CONFIG, fallback="2026-11-23", latest="2026-11-24")
    rows = rows.assign(
        **{DAY: days, FILE_ID: 1, SOURCE_FILE: str(path), FINGERPRINT: row_fingerprints(rows)}
    )
    result = validate(rows, normalise(rows, CONFIG), CONFIG, KNOWN, NO_WINNERS)

    events, rejected = result.events, result.rejected
    lines = sorted([*events["line_number"], *rejected["line_number"]])
    assert lines == sorted(rows[LINE])
    for reasons in rejected["reasons"]:
        assert reasons and set(reasons.split(";")) <= set(REASON_CODES)
    assert events["event_type"].isin(EVENT_TYPES).all()
    assert events["scope_type"].isin(SCOPE_TYPES).all()
    assert events["source"].isin(SOURCES).all()
    assert events["master_customer_id"].isin(KNOWN["master_customer_id"]).all()
    assert events["event_id"].str.len().between(1, 64).all()
    assert events["occurred_at"].notna().all()
    assert (events["day"] >= "2026-01-01").all() and (events["day"] <= "2026-11-24").all()


@SETTINGS
@given(tracking_csv())
def test_fuzz_csv_rows(content: bytes) -> None:
    read_and_validate(content)


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=400),
        st.text(max_size=200).map(lambda text: text.encode("utf-8")),
        tracking_csv().map(lambda content: content[: len(content) // 2]),
        tracking_csv().map(lambda content: content.decode("utf-8").encode("utf-16")),
        tracking_csv().map(gzip.compress),
    ),
    st.sampled_from([".csv", ".csv.gz"]),
)
def test_fuzz_arbitrary_bytes(content: bytes, suffix: str) -> None:
    read_and_validate(content, suffix)
