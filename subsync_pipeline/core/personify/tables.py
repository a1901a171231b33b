"""Personify's tables as SQLAlchemy objects (SPEC §5), and the check that they exist as expected.

Personify owns these tables: subsync never creates, drops or truncates them (the sandbox command
is the only exception) and refuses to write when one is missing or lacks a column. Which columns
subsync writes is configured (`personify.columns`, `personify.constants`): a `TableShape` holds
only the mapped ones, under their physical names, and knows the field each one carries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection, Inspector

from subsync_pipeline.core.config import Constant, PersonifyConfig

# Personify on SQL Server stores text as nvarchar and times as datetime2; the staging tables copy
# these types, so fast_executemany binds Unicode and full-precision timestamps, and their text is
# collated like the Personify database, not like tempdb: the joins with Personify's tables would
# otherwise fail with a collation conflict.
_DATABASE_DEFAULT = "DATABASE_DEFAULT"
TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")
_FLAG = sa.CHAR(1).with_variant(mssql.NCHAR(1, collation=_DATABASE_DEFAULT), "mssql")


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mssql.NVARCHAR(length, collation=_DATABASE_DEFAULT), "mssql"
    )


IDENTITY = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# Personify's standard fields, stamped on insert and update but never compared.
_AUDIT_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "add_oper": _text(60),
    "add_date": TIMESTAMP,
    "mod_oper": _text(60),
    "mod_date": TIMESTAMP,
    "concurrency_id": sa.Integer(),
}
OPT_IN_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "master_customer_id": _text(24),
    "sub_customer_id": sa.Integer(),
    "option_type": _text(24),
    "code": _text(24),
    "subcode": _text(24),
    "flag": _FLAG,
    "opt_in_date": TIMESTAMP,
    "opt_out_date": TIMESTAMP,
    "opt_out_reason": _text(24),
    "source": _text(40),
    "forced": _FLAG,
    "first_subscribed_date": TIMESTAMP,
    "first_unsubscribed_date": TIMESTAMP,
    "last_subscribe_request_date": TIMESTAMP,
    "last_unsubscribe_request_date": TIMESTAMP,
    **_AUDIT_TYPES,
}
ACTIVITY_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "id": IDENTITY,
    "master_customer_id": _text(24),
    "sub_customer_id": sa.Integer(),
    "subsystem": _text(24),
    "activity_code": _text(24),
    "activity_subcode": _text(24),
    "activity_date": TIMESTAMP,
    "text": _text(2000),
    "external_id": _text(64),
    **_AUDIT_TYPES,
}
# The fields that name a CUS_OPT_IN row, and those compared to tell whether it must change.
OPT_IN_KEY: list[str] = ["master_customer_id", "sub_customer_id", "option_type", "code", "subcode"]
OPT_IN_DATA: list[str] = [n for n in OPT_IN_TYPES if n not in (*OPT_IN_KEY, *_AUDIT_TYPES)]
# What subsync writes into a CUS_ACTIVITY row (all compared); the row is found by its id.
ACTIVITY_DATA: list[str] = [n for n in ACTIVITY_TYPES if n not in ("id", *_AUDIT_TYPES)]
SUBSYSTEM = "CUS"
# Personify's APP_CODE / APP_SUBCODE types of the codes subsync writes (SPEC §5).
INTEREST_AREA_TYPE = "OPT_IN_INTEREST_AREA"
ACTIVITY_TYPE = "ACTIVITY"


class PersonifySchemaError(RuntimeError):
    """A Personify table or column subsync needs is missing; nothing has been written."""


def _constant_type(value: Constant) -> sa.types.TypeEngine[Any]:
    if isinstance(value, str):
        return _text(max(len(value), 1))
    # Boolean, Integer or Float: the type SQLAlchemy gives the value, as an instance of our own.
    return type(sa.literal(value).type)()


@dataclass(frozen=True)
class TableShape:
    """One Personify table as a site has it: the fields subsync writes, under the site's column
    names, plus the constant columns."""

    table: sa.Table
    columns: dict[str, str]
    constants: dict[str, Constant]

    def has(self, field: str) -> bool:
        return field in self.columns

    def column(self, field: str) -> sa.Column[Any]:
        return self.table.c[self.columns[field]]

    def names(self, fields: Iterable[str]) -> list[str]:
        """The physical names of those of `fields` that are mapped, in order."""
        return [self.columns[field] for field in fields if field in self.columns]

    def mapped(self, fields: Iterable[str]) -> list[str]:
        return [field for field in fields if field in self.columns]

    def physical(self, frame: pd.DataFrame, fields: Iterable[str]) -> pd.DataFrame:
        """The mapped ones of `fields` of a frame keyed by field, renamed to their columns."""
        return frame[self.mapped(fields)].rename(columns=self.columns)

    def constant_values(self) -> dict[str, sa.ColumnElement[Any]]:
        return {
            name: sa.literal(value, self.table.c[name].type)
            for name, value in self.constants.items()
        }


@dataclass(frozen=True)
class PersonifyTables:
    customer: sa.Table
    opt_in: TableShape
    activity: TableShape
    app_code: sa.Table
    app_subcode: sa.Table

    def by_role(self) -> dict[str, sa.Table]:
        """Every table by its key in personify.tables, the shapes' tables included."""
        found = {role.name: getattr(self, role.name) for role in fields(self)}
        return {role: t.table if isinstance(t, TableShape) else t for role, t in found.items()}


def _table(meta: sa.MetaData, qualified: str, *columns: sa.Column[Any]) -> sa.Table:
    """The table named NAME or SCHEMA.NAME in the config."""
    schema, _, name = qualified.rpartition(".")
    return sa.Table(name, meta, *columns, schema=schema or None)


def _shape(
    meta: sa.MetaData,
    config: PersonifyConfig,
    role: str,
    types: dict[str, sa.types.TypeEngine[Any]],
    key: list[str],
) -> TableShape:
    columns, constants = config.columns_of(role), getattr(config.constants, role)
    table = _table(
        meta,
        getattr(config.tables, role),
        *[
            sa.Column(column, types[field], primary_key=field in key)
            for field, column in columns.items()
        ],
        *[sa.Column(column, _constant_type(value)) for column, value in constants.items()],
    )
    return TableShape(table=table, columns=columns, constants=dict(constants))


def _code_columns(*names: str) -> list[sa.Column[Any]]:
    return [sa.Column(name, _text(24)) for name in ("SUBSYSTEM", "TYPE", *names)]


def personify_tables(config: PersonifyConfig) -> PersonifyTables:
    """Table objects for the configured (already checked) names, columns and constants."""
    meta = sa.MetaData()
    names = config.tables
    return PersonifyTables(
        customer=_table(
            meta,
            names.customer,
            sa.Column("MASTER_CUSTOMER_ID", _text(24), primary_key=True),
            sa.Column("SUB_CUSTOMER_ID", sa.Integer, primary_key=True),
        ),
        opt_in=_shape(meta, config, "opt_in", OPT_IN_TYPES, OPT_IN_KEY),
        activity=_shape(meta, config, "activity", ACTIVITY_TYPES, ["id"]),
        app_code=_table(meta, names.app_code, *_code_columns("CODE")),
        app_subcode=_table(meta, names.app_subcode, *_code_columns("CODE", "SUBCODE")),
    )


def reflected_columns(inspector: Inspector, table: sa.Table) -> dict[str, dict[str, Any]] | None:
    """The table's reflected columns by upper-case name, or None when it does not exist."""
    if not inspector.has_table(table.name, schema=table.schema):
        return None
    reflected = inspector.get_columns(table.name, schema=table.schema)
    return {str(column["name"]).upper(): dict(column) for column in reflected}


def check_tables(conn: Connection, tables: list[sa.Table]) -> None:
    """Fail, naming every missing table and column, unless all `tables` exist as subsync needs."""
    inspector = sa.inspect(conn)
    problems = []
    for table in tables:
        present = reflected_columns(inspector, table)
        if present is None:
            problems.append(f"table {table.fullname} does not exist")
            continue
        missing = [column.name for column in table.columns if column.name.upper() not in present]
        if missing:
            problems.append(f"table {table.fullname} lacks column(s) {', '.join(missing)}")
    if problems:
        url = conn.engine.url.render_as_string(hide_password=True)
        raise PersonifySchemaError(
            f"Personify database {url} is not as subsync needs it: {'; '.join(problems)}. "
            "Nothing was written. Check config.personify.tables and config.personify.columns, "
            "run `subsync doctor`, or create a sandbox with `subsync sandbox`."
        )
