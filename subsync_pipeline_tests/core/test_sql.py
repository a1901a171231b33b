"""Bulk loading: COPY on PostgreSQL must store exactly what executemany would (NULL vs empty
string, integers upcast to float by pandas, timestamps to the microsecond, booleans, text that
looks like CSV or like COPY's NULL marker)."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline.core import sql
from subsync_pipeline.core.sql import insert_frame, read_frame
from subsync_pipeline.core.state import create_state_engine

TABLE = sa.Table(
    "loaded",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text),
    sa.Column("count", sa.Integer),
    sa.Column("at", sa.DateTime),
    sa.Column("flag", sa.Boolean),
)
AWKWARD = ["plain", "", None, 'comma, "quoted"\nnewline', "=1+1", "\\N", "ünïcödé"]


def frame(values: list[str | None]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            "id": range(n),
            "text": values,
            "count": [float(i) if i % 2 else float("nan") for i in range(n)],
            "at": [
                pd.Timestamp("2026-11-20 09:00:00.123456") if i % 3 else pd.NaT for i in range(n)
            ],
            "flag": [i % 2 == 0 for i in range(n)],
        }
    )


def texts(loaded: pd.DataFrame) -> list[str | None]:
    """None for NULL: pandas may show a missing string as NaN."""
    return [None if pd.isna(value) else value for value in loaded["text"]]


@pytest.mark.postgres
@pytest.mark.parametrize("values", [AWKWARD, [v for v in AWKWARD if v != "\\N"]])
def test_copy_stores_what_executemany_stores(postgres_url: str, tmp_path, values) -> None:
    loaded = {}
    for name, url in {
        "copy": postgres_url,
        "executemany": f"sqlite:///{tmp_path / 'x.db'}",
    }.items():
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            TABLE.create(conn)
            insert_frame(conn, TABLE, frame(values))
            loaded[name] = read_frame(conn, sa.select(TABLE).order_by(TABLE.c.id))
        engine.dispose()
    copy, plain = loaded["copy"], loaded["executemany"]
    assert texts(copy) == values
    assert texts(plain) == values
    assert copy["count"].tolist()[1::2] == list(range(1, len(values), 2))
    assert copy["count"].isna().tolist() == plain["count"].isna().tolist()
    assert pd.to_datetime(copy["at"]).tolist() == pd.to_datetime(plain["at"]).tolist()
    assert copy["flag"].tolist() == [bool(f) for f in plain["flag"]]


@pytest.mark.postgres
def test_an_empty_result_keeps_the_query_columns_and_their_types(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        TABLE.create(conn)
        insert_frame(conn, TABLE, frame(["x"]).assign(at=pd.Timestamp("2026-11-20"), flag=True))
        some = read_frame(conn, sa.select(TABLE))
        empty = read_frame(conn, sa.select(TABLE).where(TABLE.c.id < 0))
    engine.dispose()
    assert list(empty.columns) == [c.name for c in TABLE.columns] and empty.empty
    assert empty["text"].dtype == some["text"].dtype == "str"
    assert empty["id"].dtype == some["id"].dtype == "int64"
    assert empty["flag"].dtype == some["flag"].dtype == "bool"
    assert empty["at"].dtype.kind == some["at"].dtype.kind == "M"
    # An empty part does not turn the text of the rows it is concatenated with into objects,
    # which cost a million Python strings per column on a big day.
    assert pd.concat([empty, some], ignore_index=True)["text"].dtype == "str"


@pytest.mark.postgres
def test_copy_of_a_concatenated_frame_stores_its_values(postgres_url: str) -> None:
    """pd.concat leaves Arrow text columns in chunks (the first one empty) while numeric ones
    are single arrays: the CSV written for COPY must still be these rows, not stray bytes."""
    empty = frame([]).astype({"text": "str"})
    one = frame(["kept"]).astype({"text": "str"})
    joined = pd.concat([empty, one], ignore_index=True)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        TABLE.create(conn)
        insert_frame(conn, TABLE, joined)
        loaded = read_frame(conn, sa.select(TABLE))
    engine.dispose()
    assert texts(loaded) == ["kept"]


@pytest.mark.postgres
def test_a_frame_larger_than_a_copy_slice_is_stored_whole(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "_COPY_SLICE_ROWS", 3)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        TABLE.create(conn)
        insert_frame(conn, TABLE, frame(AWKWARD))
        loaded = read_frame(conn, sa.select(TABLE).order_by(TABLE.c.id))
    engine.dispose()
    assert loaded["id"].tolist() == list(range(len(AWKWARD)))
    assert texts(loaded) == AWKWARD


@pytest.mark.postgres
def test_state_sessions_keep_their_planner_setting_across_checkouts(postgres_url: str) -> None:
    """The state engine prices index probes for cached data on every pooled connection, even
    after a rolled-back transaction (the pool's reset)."""
    engine = create_state_engine(postgres_url)
    seen = []
    for _ in range(2):
        with engine.connect() as conn:
            seen.append(conn.execute(sa.text("SHOW random_page_cost")).scalar_one())
            conn.rollback()
    engine.dispose()
    assert seen == ["1.1", "1.1"]
