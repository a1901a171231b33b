"""Writing to Personify: one writer interface, one implementation per SQL dialect.

Every write is set-based: the day's rows go into a temporary staging table in bulk, then a few
statements reconcile the target with it inside the caller's transaction, so a table's write
commits whole or not at all. Rows are only touched when their data differs, which makes a re-run
a no-op (MODDATE included).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import count
from typing import Any, ClassVar, Literal, get_args

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core.personify.merge import Merge, When
from subsync_pipeline.core.personify.rows import (
    ACTIVITY_COLUMNS,
    ACTIVITY_DATA_COLUMNS,
    OPT_IN_COLUMNS,
    OPT_IN_DATA_COLUMNS,
    OPT_IN_KEY,
)
from subsync_pipeline.core.personify.tables import ADDBY, TIMESTAMP, PersonifyTables
from subsync_pipeline.core.sql import insert_frame, read_frame, unkeyed

_stage_ids = count(1)
# Constants of the statements themselves, rendered inline rather than bound.
_ONE: sa.ColumnClause[int] = sa.literal_column("1", sa.Integer)
_ZERO: sa.ColumnClause[int] = sa.literal_column("0", sa.Integer)
_TWO: sa.ColumnClause[int] = sa.literal_column("2", sa.Integer)
# One advisory lock for every subsync writer on a PostgreSQL Personify ("subsync" as a number).
WRITE_LOCK_KEY = int.from_bytes(b"subsync!", "big") & 0x7FFFFFFFFFFFFFFF


StageKind = Literal["members", "opt_in", "activity_ids", "activity"]
STAGE_KINDS: tuple[StageKind, ...] = get_args(StageKind)


class PersonifyWriteError(RuntimeError):
    """A write that would make Personify wrong was refused; the transaction was rolled back."""


@dataclass(frozen=True)
class WriteCounts:
    """What a write did, and what verifying the table inside its transaction found wrong."""

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


def _same(left: sa.FromClause, right: sa.FromClause, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.and_(*[left.c[name] == right.c[name] for name in names])


def _differs(left: sa.FromClause, right: sa.FromClause, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*[left.c[name].is_distinct_from(right.c[name]) for name in names])


class PersonifyWriter:
    """The steps every dialect shares (staging, member lookup, foreign-row guard, verification).

    A dialect supplies its lock and the two reconcile statements: `merge_opt_in` and
    `merge_activity`. Every statement comes from a method returning it unexecuted, so the SQL
    Server ones can be compiled and checked in tests without a SQL Server.
    """

    dialect: ClassVar[str] = ""
    driver: ClassVar[str | None] = None

    def __init__(self, tables: PersonifyTables) -> None:
        self.tables = tables

    def lock(self, conn: Connection) -> None:
        """Serialise subsync's writers on this database until the transaction ends.

        Holds across processes, so two runs can never interleave their writes.
        """
        raise NotImplementedError

    def merge_opt_in(
        self, conn: Connection, stage: sa.Table, staged: int, now: datetime
    ) -> tuple[int, int]:
        """Make CUS_OPT_IN hold the staged rows; returns (inserted, updated)."""
        raise NotImplementedError

    def merge_activity(
        self, conn: Connection, ids: sa.Table, stage: sa.Table, now: datetime
    ) -> tuple[int, int, int]:
        """Make our CUS_ACTIVITY rows among `ids` equal the staged ones; (inserted, updated,
        deleted)."""
        raise NotImplementedError

    # --- statements ---------------------------------------------------------------------

    def stage_table(self, name: str, columns: list[sa.Column[Any]]) -> sa.Table:
        return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])

    def member_lookup(self, stage: sa.Table) -> sa.Select[Any]:
        customer = self.tables.customer
        return (
            sa.select(
                stage.c.MASTER_CUSTOMER_ID.label("master_customer_id"),
                stage.c.SUB_CUSTOMER_ID.label("sub_customer_id"),
            )
            .join(customer, _same(stage, customer, ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"]))
            .distinct()
        )

    def foreign_activity(self, stage: sa.Table) -> sa.Select[Any]:
        """Rows another system wrote under one of the EXTERNAL_IDs we are about to write."""
        target = self.tables.activity
        return (
            sa.select(target.c.EXTERNAL_ID)
            .join(stage, target.c.EXTERNAL_ID == stage.c.EXTERNAL_ID)
            .where(target.c.ADDBY.is_distinct_from(ADDBY))
            .limit(5)
        )

    def opt_in_verify(self, stage: sa.Table) -> sa.Select[Any]:
        """How many staged rows CUS_OPT_IN does not hold exactly, counted by the database."""
        target = self.tables.opt_in
        return (
            sa.select(sa.func.count().label("mismatched"))
            .select_from(stage.outerjoin(target, _same(stage, target, OPT_IN_KEY)))
            .where(
                sa.or_(
                    target.c.MASTER_CUSTOMER_ID.is_(None),
                    _differs(stage, target, OPT_IN_DATA_COLUMNS),
                )
            )
        )

    def activity_verify(self, ids: sa.Table, stage: sa.Table) -> sa.Select[Any]:
        """Our CUS_ACTIVITY rows among `ids` against the staged ones, counted by the database:
        staged rows missing or different, rows of ours that should not be there, and
        EXTERNAL_IDs we hold more than once."""
        target = self.tables.activity
        ours = sa.and_(
            target.c.ADDBY == ADDBY, target.c.EXTERNAL_ID.in_(sa.select(ids.c.EXTERNAL_ID))
        )
        missing = (
            sa.select(sa.func.count())
            .select_from(
                stage.outerjoin(
                    target,
                    sa.and_(target.c.EXTERNAL_ID == stage.c.EXTERNAL_ID, target.c.ADDBY == ADDBY),
                )
            )
            .where(
                sa.or_(
                    target.c.EXTERNAL_ID.is_(None),
                    _differs(stage, target, ACTIVITY_DATA_COLUMNS),
                )
            )
        )
        extra = sa.select(sa.func.count()).where(
            ours, ~sa.exists().where(stage.c.EXTERNAL_ID == target.c.EXTERNAL_ID)
        )
        duplicated = sa.select(
            sa.func.count() - sa.func.count(sa.distinct(target.c.EXTERNAL_ID))
        ).where(ours)
        return sa.select(
            missing.scalar_subquery().label("missing"),
            extra.scalar_subquery().label("extra"),
            duplicated.scalar_subquery().label("duplicated"),
        )

    # --- steps --------------------------------------------------------------------------

    def stage_columns(self, kind: StageKind) -> list[sa.Column[Any]]:
        """The staging table of each kind, typed like its target's columns and keyed."""
        tables = self.tables
        if kind == "members":
            key = ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID")
            return _copy_columns(tables.customer, list(key), key=key)
        if kind == "opt_in":
            return _copy_columns(tables.opt_in, OPT_IN_COLUMNS, key=tuple(OPT_IN_KEY))
        if kind == "activity_ids":
            return _copy_columns(tables.activity, ["EXTERNAL_ID"], key=("EXTERNAL_ID",))
        return _copy_columns(tables.activity, ACTIVITY_COLUMNS, key=("EXTERNAL_ID",))

    def stage(self, conn: Connection, kind: StageKind, frame: pd.DataFrame) -> sa.Table:
        """A temporary table holding `frame`, loaded in bulk."""
        columns = self.stage_columns(kind)
        table = self.stage_table(f"subsync_{kind}_{next(_stage_ids)}", columns)
        table.create(conn)
        if not frame.empty:
            self.load_stage(conn, table, frame[[c.name for c in columns]])
        return table

    def load_stage(self, conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        """One executemany; with pyodbc's fast_executemany, parameter arrays of the whole frame."""
        insert_frame(conn, table, frame, staging=True)

    def known_members(self, conn: Connection, pairs: pd.DataFrame) -> pd.DataFrame:
        """Which (master_customer_id, sub_customer_id) pairs exist in CUSTOMER: one joined query."""
        frame = pairs.drop_duplicates().rename(
            columns={
                "master_customer_id": "MASTER_CUSTOMER_ID",
                "sub_customer_id": "SUB_CUSTOMER_ID",
            }
        )
        stage = self.stage(conn, "members", frame)
        found = read_frame(conn, self.member_lookup(stage))
        stage.drop(conn)
        found["sub_customer_id"] = found["sub_customer_id"].astype("int64")
        found["master_customer_id"] = found["master_customer_id"].astype(str)
        return found

    def upsert_opt_in(self, conn: Connection, rows: pd.DataFrame, now: datetime) -> WriteCounts:
        """Make CUS_OPT_IN hold `rows` for their keys: update rows whose data differ, insert new."""
        stage = self.stage(conn, "opt_in", rows)
        inserted, updated = self.merge_opt_in(conn, stage, len(rows), now)
        mismatched = conn.execute(self.opt_in_verify(stage)).scalar_one()
        stage.drop(conn)
        return WriteCounts(
            inserted=inserted,
            updated=updated,
            unchanged=len(rows) - inserted - updated,
            mismatched=int(mismatched),
        )

    def reconcile_activity(
        self, conn: Connection, candidates: pd.Series, rows: pd.DataFrame, now: datetime
    ) -> WriteCounts:
        """Make subsync's CUS_ACTIVITY rows among `candidates` (EXTERNAL_IDs) equal `rows`.

        Stale rows of ours are deleted, missing ones inserted, changed ones replaced; rows
        another system wrote are never touched.
        """
        target = self.tables.activity
        every_id = pd.concat([candidates, rows["EXTERNAL_ID"]]).drop_duplicates()
        ids = self.stage(conn, "activity_ids", pd.DataFrame({"EXTERNAL_ID": every_id}))
        stage = self.stage(conn, "activity", rows)
        foreign = conn.execute(self.foreign_activity(stage)).scalars().all()
        if foreign:
            raise PersonifyWriteError(
                f"{target.fullname} already holds rows written by another system with "
                f"EXTERNAL_ID {', '.join(map(str, foreign))}; subsync will not overwrite them"
            )
        inserted, updated, deleted = self.merge_activity(conn, ids, stage, now)
        missing, extra, duplicated = conn.execute(self.activity_verify(ids, stage)).one()
        stage.drop(conn)
        ids.drop(conn)
        return WriteCounts(
            inserted=inserted,
            updated=updated,
            deleted=deleted,
            unchanged=len(rows) - inserted - updated,
            mismatched=int(missing) + int(extra),
            duplicate_external_ids=int(duplicated),
        )


class UpsertWriter(PersonifyWriter):
    """SQLite and PostgreSQL: `INSERT ... ON CONFLICT DO UPDATE` for opt-ins, and for activity a
    delete of our stale or changed rows followed by an insert of the missing ones."""

    def upsert_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct, the one that has on_conflict_do_update."""
        raise NotImplementedError

    def opt_in_upsert(self, stage: sa.Table, now: datetime) -> sa.Insert:
        target = self.tables.opt_in
        insert = self.upsert_insert(target).from_select(
            [*OPT_IN_COLUMNS, "ADDDATE", "ADDBY", "MODDATE", "MODBY"],
            sa.select(
                *[stage.c[name] for name in OPT_IN_COLUMNS],
                sa.literal(now, TIMESTAMP),
                sa.literal(ADDBY),
                sa.literal(now, TIMESTAMP),
                sa.literal(ADDBY),
            ).where(sa.true()),  # SQLite needs a WHERE to tell ON CONFLICT from a join's ON
        )
        excluded = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=OPT_IN_KEY,
            set_={
                **{name: excluded[name] for name in OPT_IN_DATA_COLUMNS},
                "MODDATE": excluded.MODDATE,
                "MODBY": excluded.MODBY,
            },
            # Unchanged rows are skipped, so a re-run leaves even MODDATE alone.
            where=sa.or_(
                *[target.c[name].is_distinct_from(excluded[name]) for name in OPT_IN_DATA_COLUMNS]
            ),
        )

    def merge_opt_in(
        self, conn: Connection, stage: sa.Table, staged: int, now: datetime
    ) -> tuple[int, int]:
        target = self.tables.opt_in
        existing = conn.execute(
            sa.select(sa.func.count()).select_from(
                stage.join(target, _same(stage, target, OPT_IN_KEY))
            )
        ).scalar_one()
        changed = conn.execute(self.opt_in_upsert(stage, now)).rowcount
        inserted = staged - existing
        return inserted, changed - inserted

    def merge_activity(
        self, conn: Connection, ids: sa.Table, stage: sa.Table, now: datetime
    ) -> tuple[int, int, int]:
        target = self.tables.activity
        ours = sa.and_(
            target.c.ADDBY == ADDBY, target.c.EXTERNAL_ID.in_(sa.select(ids.c.EXTERNAL_ID))
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
                    sa.literal(now, TIMESTAMP),
                    sa.literal(ADDBY),
                ).where(~sa.exists().where(target.c.EXTERNAL_ID == stage.c.EXTERNAL_ID)),
            )
        ).rowcount
        replaced = min(deleted, inserted)
        return inserted - replaced, replaced, deleted - replaced


class SQLiteWriter(UpsertWriter):
    dialect = "sqlite"

    def upsert_insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def lock(self, conn: Connection) -> None:
        # SQLite has one writer at a time; taking the write lock now, not at the first write,
        # makes the whole read-resolve-write section exclusive.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class PostgresWriter(UpsertWriter):
    """Stages with COPY (through `insert_frame`), PostgreSQL's own bulk load path."""

    dialect = "postgresql"

    def upsert_insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def lock(self, conn: Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))

    def stage_table(self, name: str, columns: list[sa.Column[Any]]) -> sa.Table:
        return super().stage_table(name, unkeyed(columns))


class PostgresODBCWriter(PostgresWriter):
    """PostgreSQL reached through pyodbc (`postgresql+pyodbc`): the same statements, staged
    with fast_executemany as on SQL Server (`insert_frame` uses COPY only through psycopg)."""

    driver = "pyodbc"


class MSSQLWriter(PersonifyWriter):
    """SQL Server: `#temp` staging loaded with fast_executemany, then one MERGE per table."""

    dialect = "mssql"

    def lock_statement(self) -> sa.TextClause:
        return sa.text(
            "SET NOCOUNT ON; DECLARE @result int; "
            "EXEC @result = sp_getapplock @Resource = N'subsync-personify-write', "
            "@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 600000; "
            "SELECT @result; SET NOCOUNT OFF"
        )

    def lock(self, conn: Connection) -> None:
        result = conn.execute(self.lock_statement()).scalar()
        if result is None or result < 0:
            raise PersonifyWriteError(
                f"could not take the subsync write lock (sp_getapplock {result})"
            )

    def stage_table(self, name: str, columns: list[sa.Column[Any]]) -> sa.Table:
        # A name starting with # is what makes a SQL Server table temporary.
        return sa.Table("#" + name, sa.MetaData(), *columns)

    def stage_columns(self, kind: StageKind) -> list[sa.Column[Any]]:
        """Text columns collated like the Personify database, not like tempdb: the joins with
        Personify's tables would otherwise fail with a collation conflict."""
        columns = []
        for column in super().stage_columns(kind):
            kind_type = column.type
            if isinstance(kind_type, sa.String):
                national = mssql.NCHAR if isinstance(kind_type, sa.CHAR) else mssql.NVARCHAR
                kind_type = national(kind_type.length, collation="DATABASE_DEFAULT")
            columns.append(sa.Column(column.name, kind_type, primary_key=column.primary_key))
        return columns

    def opt_in_merge(self, stage: sa.Table, now: datetime) -> Merge:
        target = self.tables.opt_in
        alias, source = target.alias("target"), stage.alias("stage")
        audit: dict[str, sa.ColumnElement[Any]] = {
            "MODDATE": sa.literal(now, TIMESTAMP),
            "MODBY": sa.literal(ADDBY),
        }
        return Merge(
            target,
            alias,
            source,
            on=_same(alias, source, OPT_IN_KEY),
            whens=[
                When(
                    "matched",
                    _differs(alias, source, OPT_IN_DATA_COLUMNS),
                    values={**{n: source.c[n] for n in OPT_IN_DATA_COLUMNS}, **audit},
                ),
                When(
                    "not_matched",
                    values={
                        **{n: source.c[n] for n in OPT_IN_COLUMNS},
                        "ADDDATE": sa.literal(now, TIMESTAMP),
                        "ADDBY": sa.literal(ADDBY),
                        **audit,
                    },
                ),
            ],
        )

    def activity_merge(self, ids: sa.Table, stage: sa.Table, now: datetime) -> Merge:
        """One statement that only deletes and inserts, like the other dialects, so subsync
        needs no UPDATE right on CUS_ACTIVITY.

        The source holds two kinds of rows. Role 1: every candidate id, with the staged row when
        there is one (none: the id is stale); it can only match our own row, which is deleted
        when stale or different. Role 2: each staged row that has no identical row of ours yet;
        it never matches, and is inserted. A changed row is thus deleted and inserted again in
        the same statement. Only candidates are probed, so the rest of CUS_ACTIVITY is never
        scanned (no NOT MATCHED BY SOURCE).
        """
        target = self.tables.activity
        alias, existing = target.alias("target"), target.alias("existing")
        data = [stage.c[name] for name in ACTIVITY_DATA_COLUMNS]
        current = sa.select(
            ids.c.EXTERNAL_ID.label("external_id"),
            _ONE.label("role"),
            sa.case((stage.c.EXTERNAL_ID.is_(None), _ONE), else_=_ZERO).label("stale"),
            *data,
        ).select_from(ids.outerjoin(stage, stage.c.EXTERNAL_ID == ids.c.EXTERNAL_ID))
        identical = sa.exists().where(
            existing.c.EXTERNAL_ID == stage.c.EXTERNAL_ID,
            existing.c.ADDBY == ADDBY,
            ~_differs(existing, stage, ACTIVITY_DATA_COLUMNS),
        )
        wanted = sa.select(
            stage.c.EXTERNAL_ID.label("external_id"),
            _TWO.label("role"),
            _ZERO.label("stale"),
            *data,
        ).where(~identical)
        source = sa.union_all(current, wanted).subquery("source")
        return Merge(
            target,
            alias,
            source,
            on=sa.and_(
                source.c.external_id == alias.c.EXTERNAL_ID,
                alias.c.ADDBY == ADDBY,
                source.c.role == _ONE,
            ),
            whens=[
                When(
                    "matched",
                    sa.or_(source.c.stale == _ONE, _differs(alias, source, ACTIVITY_DATA_COLUMNS)),
                    delete=True,
                ),
                When(
                    "not_matched",
                    source.c.role == _TWO,
                    values={
                        **{n: source.c[n] for n in ACTIVITY_DATA_COLUMNS},
                        "EXTERNAL_ID": source.c.external_id,
                        "ADDDATE": sa.literal(now, TIMESTAMP),
                        "ADDBY": sa.literal(ADDBY),
                    },
                ),
            ],
        )

    def merge_opt_in(
        self, conn: Connection, stage: sa.Table, staged: int, now: datetime
    ) -> tuple[int, int]:
        actions = self._actions(conn, self.opt_in_merge(stage, now))
        return actions["INSERT"], actions["UPDATE"]

    def merge_activity(
        self, conn: Connection, ids: sa.Table, stage: sa.Table, now: datetime
    ) -> tuple[int, int, int]:
        actions = self._actions(conn, self.activity_merge(ids, stage, now))
        replaced = min(actions["INSERT"], actions["DELETE"])
        return actions["INSERT"] - replaced, replaced, actions["DELETE"] - replaced

    @staticmethod
    def _actions(conn: Connection, merge: Merge) -> Counter[str]:
        return Counter({str(action): int(rows) for action, rows in conn.execute(merge)})


WRITERS: list[type[PersonifyWriter]] = [
    SQLiteWriter,
    PostgresODBCWriter,
    PostgresWriter,
    MSSQLWriter,
]


def writer_for(engine: Engine | Connection, tables: PersonifyTables) -> PersonifyWriter:
    """The writer for the engine's dialect (sqlite, postgresql, mssql) and driver."""
    dialect = engine.dialect
    for writer in WRITERS:
        if writer.dialect == dialect.name and writer.driver in (None, dialect.driver):
            return writer(tables)
    raise PersonifyWriteError(
        f"no Personify writer for the {dialect.name!r} dialect; PERSONIFY_DB_URL must use one "
        f"of {sorted({writer.dialect for writer in WRITERS})}"
    )
