"""Bulk SQL helpers shared by the state database and the Personify writers."""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import count
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

_temp_names = count(1)
_COPY_SLICE_ROWS = 100_000


def insert_frame(
    conn: Connection, table: sa.Table, frame: pd.DataFrame, *, staging: bool = False
) -> int:
    """Bulk insert: COPY on PostgreSQL through psycopg, else one executemany (batched by
    SQLAlchemy's insertmanyvalues, or pyodbc parameter arrays with fast_executemany).

    `staging` marks a temporary table about to be joined: PostgreSQL's autovacuum never
    analyses those, so without an ANALYZE the planner guesses a million staged rows are a
    few thousand and picks nested loops.
    """
    if frame.empty:
        return 0
    columns = [c for c in frame.columns if c in table.c]
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        copy_frame(conn, table, frame[columns])
    else:
        # As DBAPI parameters: NaN/NaT become None, numpy scalars Python ones.
        values = frame[columns].astype(object)
        values = values.where(values.notna(), None)
        conn.execute(table.insert(), values.to_dict("records"))  # type: ignore[arg-type]
    if staging:
        analyze(conn, table)
    return len(frame)


def analyze(conn: Connection, table: sa.Table) -> None:
    """Give PostgreSQL's planner the row count of a just-filled temporary table."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ANALYZE {conn.dialect.identifier_preparer.format_table(table)}"))


def copy_frame(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """COPY `frame` into `table` as CSV written by Arrow in C++, not row by row in Python.

    Arrow quotes every text value and leaves NULL unquoted and empty, which is exactly how
    PostgreSQL's CSV COPY tells NULL from an empty string (so even the text \\N stays text).
    Each column is first given the Arrow type of its SQL column, so integer columns holding
    NaN (pandas' float upcast) go in as integers and mixed Python objects as text.
    """
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in frame.columns)
    target = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN WITH (FORMAT csv)"
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None
    with driver_connection.cursor() as cursor, cursor.copy(target) as copy:
        # In slices, so a million rows never exist a second and third time at once (as Arrow
        # columns and as CSV text) beside the frame.
        for start in range(0, len(frame), _COPY_SLICE_ROWS):
            part = frame.iloc[start : start + _COPY_SLICE_ROWS]
            arrow = pa.Table.from_pandas(
                pd.DataFrame(
                    {name: _for_arrow(part[name], table.c[str(name)].type) for name in part.columns}
                ),
                preserve_index=False,
            )
            # pandas' concat leaves Arrow columns chunked differently (some with an empty first
            # chunk); pyarrow 26's CSV writer then emits bytes from outside the table, so the
            # columns are made contiguous first.
            arrow = arrow.combine_chunks()
            sink = io.BytesIO()
            pa_csv.write_csv(arrow, sink, pa_csv.WriteOptions(include_header=False))
            copy.write(sink.getbuffer())


def _for_arrow(values: pd.Series, kind: sa.types.TypeEngine[Any]) -> pd.Series:
    if isinstance(kind, sa.Boolean):
        return values.astype("boolean")
    if isinstance(kind, sa.Integer):
        return values.astype("Int64")
    if isinstance(kind, sa.DateTime):
        return pd.to_datetime(values)
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return values.astype("float64")
    return values.astype("str")


def temp_table(conn: Connection, prefix: str, columns: Sequence[sa.Column[Any]]) -> sa.Table:
    """A new session-private temporary table, gone with the connection; on PostgreSQL without
    a key (`unkeyed`)."""
    name = f"{prefix}_{next(_temp_names)}"
    if conn.dialect.name == "postgresql":
        columns = unkeyed(columns)
    table = sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    table.create(conn)
    return table


def in_stage(table: sa.Table, stage: sa.Table, names: list[str]) -> sa.ColumnElement[bool]:
    """Rows of `table` whose `names` equal those of a row of `stage`: a semi-join the planners
    drive from the (small) stage through `table`'s index on `names`."""
    return sa.tuple_(*(table.c[n] for n in names)).in_(sa.select(*(stage.c[n] for n in names)))


def stage_distinct(
    conn: Connection,
    prefix: str,
    like: sa.Table,
    frame: pd.DataFrame,
    names: list[str],
    key: list[str] | None = None,
) -> sa.Table:
    """A temporary table of the (`names`) rows of `frame`, one per `key` (default: all of
    `names`), typed as `like`'s columns of those names."""
    table = temp_table(
        conn, prefix, [sa.Column(n, like.c[n].type, primary_key=n in (key or names)) for n in names]
    )
    insert_frame(conn, table, frame[names].drop_duplicates(key), staging=True)
    return table


# Collations that compare text by code point, as pandas and Python do (SPEC §4 breaks ties on
# occurred_at by event_id in that order). SQLite's default, BINARY, already does for UTF-8.
CODE_POINT_COLLATIONS: dict[str, str] = {"postgresql": "C", "mssql": "Latin1_General_100_BIN2"}


def code_point(conn: Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """`column` compared and ordered by code point on this connection's database, whatever its
    default collation (an en_US or ICU cluster, SQL Server's case-insensitive default)."""
    collation = CODE_POINT_COLLATIONS.get(conn.dialect.name)
    return column.collate(collation) if collation else column


def unkeyed(columns: Sequence[sa.Column[Any]]) -> list[sa.Column[Any]]:
    """The columns without their primary key, for a PostgreSQL staging table.

    What is staged is unique by construction and joined by hashing, which needs no index, while
    building a B-tree over a million random event ids took seven times the COPY that filled the
    table (bench/RESULTS.md item 12). SQLite keeps its keys: its joins would scan instead.
    """
    return [sa.Column(c.name, c.type, nullable=c.nullable) for c in columns]


def read_frame(conn: Connection, query: sa.Select[Any] | sa.CompoundSelect[Any]) -> pd.DataFrame:
    """Run a query into a DataFrame whose columns are the query's, even when it returns no row.

    On PostgreSQL through psycopg the rows come back as one `COPY (query) TO STDOUT` CSV parsed
    by Arrow, instead of a Python tuple per row; values have the same types either way.
    """
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_out(conn, query)
    result = conn.execute(query)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _arrow_type(kind: sa.types.TypeEngine[Any]) -> pa.DataType:
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("ns")
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return pa.float64()
    return pa.string()


def _copy_out(conn: Connection, query: sa.Select[Any] | sa.CompoundSelect[Any]) -> pd.DataFrame:
    """PostgreSQL writes NULL unquoted and empty and an empty string as "": Arrow's reader keeps
    that distinction, so every text value comes back exactly."""
    # COPY takes no bind parameters, so they are rendered as SQL literals by the dialect.
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    # Arrow parses the typed columns too (PostgreSQL writes booleans as t/f and timestamps as
    # ISO 8601), in C++ rather than through pandas column by column.
    kinds = {column.key: _arrow_type(column.type) for column in query.selected_columns}
    names = list(kinds)
    buffer = io.BytesIO()
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None
    with (
        driver_connection.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy,
    ):
        buffer.writelines(copy)
    if buffer.getbuffer().nbytes:
        arrow = pa_csv.read_csv(
            pa.py_buffer(buffer.getbuffer()),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=kinds,
                null_values=[""],
                true_values=["t"],
                false_values=["f"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    else:
        # No row, the same types: an untyped (object) empty frame concatenated with others
        # turns every text column of the result into Python objects.
        arrow = pa.table({name: pa.array([], kinds[name]) for name in names})
    return pd.DataFrame({name: arrow.column(name).to_pandas() for name in names})
