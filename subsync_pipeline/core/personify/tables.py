"""Personify's tables as SQLAlchemy objects (SPEC §5), and the check that they exist as expected.

Personify owns these tables: subsync never creates, drops or truncates them (the sandbox command
is the only exception) and refuses to write when one is missing or lacks a column.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection

from subsync_pipeline.core.config import PersonifyTables as TableNames

ADDBY = "SUBSYNC"
# Personify on SQL Server stores text as nvarchar and times as datetime2; the staging tables copy
# these types, so fast_executemany binds Unicode and full-precision timestamps.
TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mssql.NVARCHAR(length), "mssql")


def _flag() -> sa.types.TypeEngine[str]:
    return sa.CHAR(1).with_variant(mssql.NCHAR(1), "mssql")


class PersonifySchemaError(RuntimeError):
    """A Personify table or column subsync needs is missing; nothing has been written."""


@dataclass(frozen=True)
class PersonifyTables:
    customer: sa.Table
    opt_in: sa.Table
    activity: sa.Table


def _split(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def personify_tables(names: TableNames) -> PersonifyTables:
    """Table objects for the configured (already identifier-checked) names."""
    meta = sa.MetaData()
    schema, name = _split(names.customer)
    customer = sa.Table(
        name,
        meta,
        sa.Column("MASTER_CUSTOMER_ID", _text(24), primary_key=True),
        sa.Column("SUB_CUSTOMER_ID", sa.Integer, primary_key=True),
        sa.Column("CUSTOMER_STATUS_CODE", _text(24)),
        sa.Column("PRIMARY_EMAIL_ADDRESS", _text(100)),
        schema=schema,
    )
    schema, name = _split(names.opt_in)
    opt_in = sa.Table(
        name,
        meta,
        sa.Column("MASTER_CUSTOMER_ID", _text(24), primary_key=True),
        sa.Column("SUB_CUSTOMER_ID", sa.Integer, primary_key=True),
        sa.Column("OPT_IN_CODE", _text(24), primary_key=True),
        sa.Column("OPT_IN_FLAG", _flag()),
        sa.Column("OPT_IN_DATE", TIMESTAMP),
        sa.Column("OPT_IN_SOURCE", _text(40)),
        sa.Column("FORCED_FLAG", _flag()),
        sa.Column("FIRST_SUBSCRIBED_DATE", TIMESTAMP),
        sa.Column("FIRST_UNSUBSCRIBED_DATE", TIMESTAMP),
        sa.Column("LAST_SUBSCRIBE_REQUEST_DATE", TIMESTAMP),
        sa.Column("LAST_UNSUBSCRIBE_REQUEST_DATE", TIMESTAMP),
        sa.Column("ADDDATE", TIMESTAMP),
        sa.Column("ADDBY", _text(24)),
        sa.Column("MODDATE", TIMESTAMP),
        sa.Column("MODBY", _text(24)),
        schema=schema,
    )
    schema, name = _split(names.activity)
    activity = sa.Table(
        name,
        meta,
        sa.Column(
            "ACTIVITY_ID",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("MASTER_CUSTOMER_ID", _text(24)),
        sa.Column("SUB_CUSTOMER_ID", sa.Integer),
        sa.Column("ACTIVITY_CODE", _text(24)),
        sa.Column("ACTIVITY_SUBCODE", _text(24)),
        sa.Column("ACTIVITY_DATE", TIMESTAMP),
        sa.Column("ACTIVITY_TEXT", _text(2000)),
        sa.Column("EXTERNAL_ID", _text(64)),
        sa.Column("ADDDATE", TIMESTAMP),
        sa.Column("ADDBY", _text(24)),
        schema=schema,
    )
    return PersonifyTables(customer=customer, opt_in=opt_in, activity=activity)


def check_tables(conn: Connection, tables: list[sa.Table]) -> None:
    """Fail, naming every missing table and column, unless all `tables` exist as subsync needs."""
    inspector = sa.inspect(conn)
    problems = []
    for table in tables:
        if not inspector.has_table(table.name, schema=table.schema):
            problems.append(f"table {table.fullname} does not exist")
            continue
        present = {
            column["name"].upper() for column in inspector.get_columns(table.name, table.schema)
        }
        missing = [column.name for column in table.columns if column.name.upper() not in present]
        if missing:
            problems.append(f"table {table.fullname} lacks column(s) {', '.join(missing)}")
    if problems:
        url = conn.engine.url.render_as_string(hide_password=True)
        raise PersonifySchemaError(
            f"Personify database {url} is not as subsync needs it: {'; '.join(problems)}. "
            "Nothing was written. Check config.personify.tables, or create a sandbox with "
            "`subsync sandbox`."
        )
