"""Bulk SQL helpers shared by the state database and the Personify writers."""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import count
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

_temp_names = count(1)
_NULL = "\\N"
_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """DataFrame rows as DBAPI parameter dicts: NaN/NaT become None, numpy scalars Python ones."""
    subset = frame[list(columns)].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict("records")  # type: ignore[return-value]


def insert_frame(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Bulk insert: COPY on PostgreSQL through psycopg, else one executemany (batched by
    SQLAlchemy's insertmanyvalues, or pyodbc parameter arrays with fast_executemany)."""
    if frame.empty:
        return 0
    columns = [c for c in frame.columns if c in table.c]
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        copy_frame(conn, table, frame[columns])
        return len(frame)
    conn.execute(table.insert(), records(frame, columns))
    return len(frame)


def copy_frame(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """COPY `frame` into `table`: as CSV formatted by pandas in C, not row by row in Python.

    NULL is spelled \\N, so an empty string stays an empty string; integer columns holding
    NaN (pandas' float upcast) are written as integers. A frame holding the text \\N itself
    goes row by row, so that value is not read back as NULL.
    """
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in frame.columns)
    target = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None
    out = frame.copy()
    for name in out.columns:
        if isinstance(table.c[name].type, sa.Integer) and out[name].dtype.kind == "f":
            out[name] = out[name].astype("Int64")
    text = out.select_dtypes(include=["object", "string"])
    if bool(text.isin([_NULL]).any().any()):
        with driver_connection.cursor() as cursor, cursor.copy(target) as copy:
            for row in records(out, list(out.columns)):
                copy.write_row(tuple(row.values()))
        return
    buffer = io.StringIO()
    out.to_csv(buffer, header=False, index=False, na_rep=_NULL, date_format=_TIMESTAMP)
    with (
        driver_connection.cursor() as cursor,
        cursor.copy(f"{target} WITH (FORMAT csv, NULL '{_NULL}')") as copy,
    ):
        copy.write(buffer.getvalue())


def temp_table(conn: Connection, prefix: str, columns: Sequence[sa.Column[Any]]) -> sa.Table:
    """Create a session-private temporary table; it disappears with the connection."""
    name = f"{prefix}_{next(_temp_names)}"
    table = sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    table.create(conn)
    return table


def stage_frame(
    conn: Connection, prefix: str, columns: Sequence[sa.Column[Any]], frame: pd.DataFrame
) -> sa.Table:
    """A temporary table holding `frame`, for set-based joins instead of long IN lists."""
    table = temp_table(conn, prefix, columns)
    insert_frame(conn, table, frame)
    return table


def read_frame(conn: Connection, query: sa.Select[Any]) -> pd.DataFrame:
    """Run a query into a DataFrame whose columns are the query's, even when it returns no row.

    On PostgreSQL through psycopg the rows come back as one `COPY (query) TO STDOUT` CSV parsed
    by pandas in C, instead of a Python tuple per row; values have the same types either way.
    """
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        copied = _copy_out(conn, query)
        if copied is not None:
            return copied
    result = conn.execute(query)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _copy_out(conn: Connection, query: sa.Select[Any]) -> pd.DataFrame | None:
    """None when a value is the text \\N itself (COPY quotes it; pandas could not tell it from
    NULL): the caller then fetches the rows the ordinary way."""
    # COPY takes no bind parameters, so they are rendered as SQL literals by the dialect.
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    columns = list(query.selected_columns)
    buffer = io.BytesIO()
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None
    with (
        driver_connection.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, NULL '{_NULL}')") as copy,
    ):
        for block in copy:
            buffer.write(block)
    if b'"' + _NULL.encode() + b'"' in buffer.getvalue():
        return None
    names = [column.key for column in columns]
    buffer.seek(0)
    if not buffer.getbuffer().nbytes:
        return pd.DataFrame(columns=names)
    raw = pd.read_csv(
        buffer,
        header=None,
        names=names,
        dtype=str,
        keep_default_na=False,
        na_values=[_NULL],
    )
    for column in columns:
        name, kind = column.key, column.type
        if isinstance(kind, sa.Boolean):
            raw[name] = raw[name].map({"t": True, "f": False})
        elif isinstance(kind, sa.DateTime):
            raw[name] = pd.to_datetime(raw[name])
        elif isinstance(kind, (sa.Integer, sa.Float, sa.Numeric)):
            raw[name] = pd.to_numeric(raw[name])
    return raw
