"""Bulk SQL helpers shared by the state database and the Personify writers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

_temp_names = count(1)


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """DataFrame rows as DBAPI parameter dicts: NaN/NaT become None, numpy scalars Python ones."""
    subset = frame[list(columns)].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict("records")  # type: ignore[return-value]


def insert_frame(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Bulk insert as one executemany (batched by SQLAlchemy's insertmanyvalues)."""
    if frame.empty:
        return 0
    columns = [c for c in frame.columns if c in table.c]
    conn.execute(table.insert(), records(frame, columns))
    return len(frame)


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
    """Run a query into a DataFrame whose columns are the query's, even when it returns no row."""
    result = conn.execute(query)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
