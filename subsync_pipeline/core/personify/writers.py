"""Writing to Personify: one writer interface, one implementation per SQL dialect.

Every write is set-based: the day's rows go into a temporary staging table in bulk, then a few
statements reconcile the target with it inside the caller's transaction, so a table's write
commits whole or not at all. Rows are only touched when their data differs, which makes a re-run
a no-op (MODDATE included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import count
from typing import Any, ClassVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core.personify.rows import (
    ACTIVITY_COLUMNS,
    ACTIVITY_DATA_COLUMNS,
    OPT_IN_COLUMNS,
    OPT_IN_DATA_COLUMNS,
    OPT_IN_KEY,
)
from subsync_pipeline.core.personify.tables import ADDBY, PersonifyTables
from subsync_pipeline.core.sql import insert_frame, read_frame, records

_stage_ids = count(1)
# One advisory lock for every subsync writer on a PostgreSQL Personify ("subsync" as a number).
WRITE_LOCK_KEY = int.from_bytes(b"subsync!", "big") & 0x7FFFFFFFFFFFFFFF


class PersonifyWriteError(RuntimeError):
    """A write that would make Personify wrong was refused; the transaction was rolled back."""


@dataclass(frozen=True)
class WriteCounts:
    """What a write did, and what reading the table back inside its transaction found wrong."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    mismatched: int = 0
    duplicate_external_ids: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _copy_columns(
    table: sa.Table, names: list[str], key: tuple[str, ...] = ()
) -> list[sa.Column[Any]]:
    """Staging columns typed like the target's; `key` makes the lookups joins can index."""
    return [sa.Column(name, table.c[name].type, primary_key=name in key) for name in names]


def _same(left: sa.Table, right: sa.Table, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.and_(*[left.c[name] == right.c[name] for name in names])


def _differs(left: sa.Table, right: sa.Table, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*[left.c[name].is_distinct_from(right.c[name]) for name in names])


def _same_values(left: pd.Series, right: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(left) or pd.api.types.is_datetime64_any_dtype(right):
        left, right = pd.to_datetime(left), pd.to_datetime(right)
    else:
        left, right = left.astype(object), right.astype(object)
    return (left == right) | (left.isna() & right.isna())


def mismatches(
    desired: pd.DataFrame, actual: pd.DataFrame, key: list[str], columns: list[str]
) -> int:
    """Rows of `desired` missing from or different in `actual`, plus rows only in `actual`."""
    merged = desired.merge(actual, on=key, how="outer", suffixes=("", "_db"), indicator=True)
    wrong = ~merged["_merge"].eq("both")
    for column in columns:
        wrong |= ~_same_values(merged[column], merged[f"{column}_db"])
    return int(wrong.sum())


class PersonifyWriter:
    """Portable SQLAlchemy Core; a dialect overrides staging where it has a faster path."""

    dialect: ClassVar[str] = ""

    def __init__(self, tables: PersonifyTables) -> None:
        self.tables = tables

    def lock(self, conn: Connection) -> None:
        """Serialise subsync's writers on this database until the transaction ends.

        Holds across processes, so two runs can never interleave their writes.
        """
        raise NotImplementedError

    def stage_name(self, prefix: str) -> str:
        return f"subsync_{prefix}_{next(_stage_ids)}"

    def create_stage(
        self, conn: Connection, prefix: str, columns: list[sa.Column[Any]]
    ) -> sa.Table:
        table = sa.Table(self.stage_name(prefix), sa.MetaData(), *columns, prefixes=["TEMPORARY"])
        table.create(conn)
        return table

    def load_stage(self, conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        insert_frame(conn, table, frame)

    def stage(
        self, conn: Connection, prefix: str, columns: list[sa.Column[Any]], frame: pd.DataFrame
    ) -> sa.Table:
        table = self.create_stage(conn, prefix, columns)
        if not frame.empty:
            self.load_stage(conn, table, frame[[c.name for c in columns]])
        return table

    def known_members(self, conn: Connection, pairs: pd.DataFrame) -> pd.DataFrame:
        """Which (master_customer_id, sub_customer_id) pairs exist in CUSTOMER: one joined query."""
        customer = self.tables.customer
        frame = pairs.drop_duplicates().rename(
            columns={
                "master_customer_id": "MASTER_CUSTOMER_ID",
                "sub_customer_id": "SUB_CUSTOMER_ID",
            }
        )
        stage = self.stage(
            conn,
            "members",
            _copy_columns(
                customer,
                ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"],
                key=("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"),
            ),
            frame,
        )
        query = (
            sa.select(
                stage.c.MASTER_CUSTOMER_ID.label("master_customer_id"),
                stage.c.SUB_CUSTOMER_ID.label("sub_customer_id"),
            )
            .join(customer, _same(stage, customer, ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"]))
            .distinct()
        )
        found = read_frame(conn, query)
        stage.drop(conn)
        found["sub_customer_id"] = found["sub_customer_id"].astype("int64")
        found["master_customer_id"] = found["master_customer_id"].astype(str)
        return found

    def upsert_opt_in(self, conn: Connection, rows: pd.DataFrame, now: datetime) -> WriteCounts:
        """Make CUS_OPT_IN hold `rows` for their keys: update rows whose data differ, insert new."""
        target = self.tables.opt_in
        stage = self.stage(
            conn, "opt_in", _copy_columns(target, OPT_IN_COLUMNS, key=tuple(OPT_IN_KEY)), rows
        )
        updated = conn.execute(
            sa.update(target)
            .where(_same(target, stage, OPT_IN_KEY), _differs(target, stage, OPT_IN_DATA_COLUMNS))
            .values(
                {
                    **{target.c[name]: stage.c[name] for name in OPT_IN_DATA_COLUMNS},
                    target.c.MODDATE: now,
                    target.c.MODBY: ADDBY,
                }
            )
        ).rowcount
        missing = ~sa.exists().where(_same(target, stage, OPT_IN_KEY))
        inserted = conn.execute(
            sa.insert(target).from_select(
                [*OPT_IN_COLUMNS, "ADDDATE", "ADDBY", "MODDATE", "MODBY"],
                sa.select(
                    *[stage.c[name] for name in OPT_IN_COLUMNS],
                    sa.literal(now, sa.DateTime),
                    sa.literal(ADDBY),
                    sa.literal(now, sa.DateTime),
                    sa.literal(ADDBY),
                ).where(missing),
            )
        ).rowcount
        written = read_frame(
            conn,
            sa.select(*[target.c[name] for name in OPT_IN_COLUMNS]).join(
                stage, _same(target, stage, OPT_IN_KEY)
            ),
        )
        stage.drop(conn)
        return WriteCounts(
            inserted=inserted,
            updated=updated,
            unchanged=len(rows) - inserted - updated,
            mismatched=mismatches(rows, written, OPT_IN_KEY, OPT_IN_DATA_COLUMNS),
        )

    def reconcile_activity(
        self, conn: Connection, candidates: pd.Series, rows: pd.DataFrame, now: datetime
    ) -> WriteCounts:
        """Make subsync's CUS_ACTIVITY rows among `candidates` (EXTERNAL_IDs) equal `rows`.

        Stale rows of ours are deleted, missing ones inserted, a changed one is deleted and
        inserted again; rows another system wrote are never touched.
        """
        target = self.tables.activity
        ids = self.stage(
            conn,
            "activity_ids",
            _copy_columns(target, ["EXTERNAL_ID"], key=("EXTERNAL_ID",)),
            pd.DataFrame({"EXTERNAL_ID": candidates.drop_duplicates()}),
        )
        stage = self.stage(
            conn, "activity", _copy_columns(target, ACTIVITY_COLUMNS, key=("EXTERNAL_ID",)), rows
        )

        foreign = (
            conn.execute(
                sa.select(target.c.EXTERNAL_ID)
                .join(stage, target.c.EXTERNAL_ID == stage.c.EXTERNAL_ID)
                .where(target.c.ADDBY.is_distinct_from(ADDBY))
                .limit(5)
            )
            .scalars()
            .all()
        )
        if foreign:
            raise PersonifyWriteError(
                f"{target.fullname} already holds rows written by another system with "
                f"EXTERNAL_ID {', '.join(map(str, foreign))}; subsync will not overwrite them"
            )

        ours = sa.and_(
            target.c.ADDBY == ADDBY,
            target.c.EXTERNAL_ID.in_(sa.select(ids.c.EXTERNAL_ID)),
        )
        identical = sa.exists().where(
            stage.c.EXTERNAL_ID == target.c.EXTERNAL_ID,
            ~_differs(stage, target, ACTIVITY_DATA_COLUMNS),
        )
        deleted = conn.execute(sa.delete(target).where(ours, ~identical)).rowcount
        inserted = conn.execute(
            sa.insert(target).from_select(
                [*ACTIVITY_COLUMNS, "ADDDATE", "ADDBY"],
                sa.select(
                    *[stage.c[name] for name in ACTIVITY_COLUMNS],
                    sa.literal(now, sa.DateTime),
                    sa.literal(ADDBY),
                ).where(~sa.exists().where(target.c.EXTERNAL_ID == stage.c.EXTERNAL_ID)),
            )
        ).rowcount
        written = read_frame(
            conn,
            sa.select(*[target.c[name] for name in ACTIVITY_COLUMNS]).where(
                target.c.ADDBY == ADDBY, target.c.EXTERNAL_ID.in_(sa.select(ids.c.EXTERNAL_ID))
            ),
        )
        stage.drop(conn)
        ids.drop(conn)
        replaced = min(deleted, inserted)
        duplicates = int(written["EXTERNAL_ID"].duplicated().sum())
        return WriteCounts(
            inserted=inserted - replaced,
            updated=replaced,
            deleted=deleted - replaced,
            unchanged=len(rows) - inserted,
            mismatched=mismatches(
                rows, written.drop_duplicates("EXTERNAL_ID"), ["EXTERNAL_ID"], ACTIVITY_DATA_COLUMNS
            ),
            duplicate_external_ids=duplicates,
        )


class SQLiteWriter(PersonifyWriter):
    dialect = "sqlite"

    def lock(self, conn: Connection) -> None:
        # SQLite has one writer at a time; taking the write lock now, not at the first write,
        # makes the whole read-resolve-write section exclusive.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class PostgresWriter(PersonifyWriter):
    """Stages with COPY, PostgreSQL's own bulk load path."""

    dialect = "postgresql"

    def lock(self, conn: Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))

    def load_stage(self, conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        preparer = conn.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(c.name) for c in table.columns)
        statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
        driver_connection = conn.connection.driver_connection
        assert driver_connection is not None
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in records(frame, [c.name for c in table.columns]):
                copy.write_row(tuple(row.values()))


class MSSQLWriter(PersonifyWriter):
    """SQL Server: temporary tables are the ones whose name starts with '#'."""

    dialect = "mssql"

    def lock(self, conn: Connection) -> None:
        result = conn.exec_driver_sql(
            "DECLARE @result int; "
            "EXEC @result = sp_getapplock @Resource = N'subsync-personify-write', "
            "@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 600000; "
            "SELECT @result"
        ).scalar()
        if result is None or result < 0:
            raise PersonifyWriteError(
                f"could not take the subsync write lock (sp_getapplock {result})"
            )

    def create_stage(
        self, conn: Connection, prefix: str, columns: list[sa.Column[Any]]
    ) -> sa.Table:
        table = sa.Table("#" + self.stage_name(prefix), sa.MetaData(), *columns)
        table.create(conn)
        return table


WRITERS: dict[str, type[PersonifyWriter]] = {
    writer.dialect: writer for writer in (SQLiteWriter, PostgresWriter, MSSQLWriter)
}


def writer_for(engine: Engine | Connection, tables: PersonifyTables) -> PersonifyWriter:
    """The writer for the engine's dialect (sqlite, postgresql, mssql)."""
    name = engine.dialect.name
    if name not in WRITERS:
        raise PersonifyWriteError(
            f"no Personify writer for the {name!r} dialect; "
            f"PERSONIFY_DB_URL must use one of {sorted(WRITERS)}"
        )
    return WRITERS[name](tables)
