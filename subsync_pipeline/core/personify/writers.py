"""Writing to Personify: one writer interface, one implementation per SQL dialect.

Every write is set-based: the day's rows go into a temporary staging table in bulk, then a few
statements reconcile the target with it inside the caller's transaction, so a table's write
commits whole or not at all. Rows are only touched when their data differs, which makes a re-run
a no-op (MODDATE and CONCURRENCY_ID included).

CUS_ACTIVITY has no column of subsync's own. The rows subsync inserted are known by their
database-generated ids, which the caller keeps in the state database against each event_id and
hands back as `records`; every statement on CUS_ACTIVITY is confined to those ids, so a row
another system wrote is never touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, Literal, get_args

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.expression import Executable

from subsync_pipeline.core.personify.merge import Inserted, Merge
from subsync_pipeline.core.personify.tables import (
    ACTIVITY_DATA,
    IDENTITY,
    OPT_IN_DATA,
    OPT_IN_KEY,
    TIMESTAMP,
    PersonifyTables,
    TableShape,
)
from subsync_pipeline.core.sql import CODE_POINT_COLLATIONS, insert_frame, read_frame, unkeyed

_stage_ids = count(1)
# Constants of the statements themselves, rendered inline rather than bound.
_ONE: sa.ColumnClause[int] = sa.literal_column("1", sa.Integer)
_ZERO: sa.ColumnClause[int] = sa.literal_column("0", sa.Integer)
# One advisory lock for every subsync writer on a PostgreSQL Personify ("subsync" as a number).
WRITE_LOCK_KEY = int.from_bytes(b"subsync!", "big") & 0x7FFFFFFFFFFFFFFF
# SQL Server's code-point collation for event ids: under its usual case-insensitive default,
# `abc` and `ABC` would be one event.
BINARY = CODE_POINT_COLLATIONS["mssql"]
EVENT_ID = sa.String(64).with_variant(mssql.NVARCHAR(64, collation=BINARY), "mssql")

# CUSTOMER's key, which staged member pairs are looked up by.
_MEMBER_KEY = ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"]
StageKind = Literal["members", "opt_in", "records", "activity", "ids"]
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
    duplicate_rows: int = 0


@dataclass(frozen=True)
class Changes:
    """What a write would do to one table, read without writing: the rows it would insert and
    delete (by column), and per updated row each column's old and new value (`<column> (old)`,
    `<column> (new)`)."""

    inserted: pd.DataFrame
    updated: pd.DataFrame
    deleted: pd.DataFrame


@dataclass(frozen=True)
class ActivityWrite:
    """A CUS_ACTIVITY reconcile: its counts, and the rows it inserted and deleted by event_id
    (event_id, activity_id), which the state database's record must follow once it commits."""

    counts: WriteCounts
    inserted: pd.DataFrame
    deleted: pd.DataFrame


def _same(left: sa.FromClause, right: sa.FromClause, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.and_(*[left.c[name] == right.c[name] for name in names])


def _differs(left: sa.FromClause, right: sa.FromClause, names: list[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*[left.c[name].is_distinct_from(right.c[name]) for name in names])


def _like(table: sa.Table, names: list[str], key: list[str]) -> list[sa.Column[Any]]:
    return [sa.Column(name, table.c[name].type, primary_key=name in key) for name in names]


class PersonifyWriter:
    """The steps every dialect shares (staging, member lookup, the statements SQLAlchemy writes
    alike for every dialect, verification).

    A dialect supplies its lock, the opt-in upsert and the activity insert that reads back the
    generated ids. Every statement comes from a method returning it unexecuted, so the SQL Server
    ones can be compiled and checked in tests without a SQL Server.
    """

    def __init__(self, tables: PersonifyTables, operator: str) -> None:
        self.tables = tables
        self.operator = operator
        self.opt_in, self.activity = tables.opt_in, tables.activity
        # The columns of the mapped fields, in the order of OPT_IN_KEY, OPT_IN_DATA, ACTIVITY_DATA.
        self.opt_in_key = self.opt_in.names(OPT_IN_KEY)
        self.opt_in_data = self.opt_in.names(OPT_IN_DATA)
        self.activity_data = self.activity.names(ACTIVITY_DATA)
        self.identity = self.activity.column("id")

    def lock(self, conn: Connection) -> None:
        """Serialise subsync's writers on this database, across processes, until the transaction
        ends: two runs never interleave their writes."""
        raise NotImplementedError

    def merge_opt_in(self, conn: Connection, stage: sa.Table, now: datetime) -> tuple[int, int]:
        """Make CUS_OPT_IN hold the staged rows; returns (inserted, updated)."""
        raise NotImplementedError

    def paired_insert(self, records: sa.Table, stage: sa.Table, now: datetime) -> Executable:
        """The insert of the staged rows that have no row of ours, returning (event_id,
        activity_id) of each."""
        raise NotImplementedError

    def insert_activity(
        self,
        conn: Connection,
        records: sa.Table,
        stage: sa.Table,
        missing: pd.DataFrame,
        now: datetime,
    ) -> pd.DataFrame:
        """Run `paired_insert` for `missing` (not empty): (event_id, activity_id) of each row."""
        statement = self.paired_insert(records, stage, now)
        # A select (PostgreSQL's insert in a CTE) comes back through read_frame's COPY: framing
        # a million fetched rows took 12 s, more than the insert.
        if isinstance(statement, sa.Select):
            return read_frame(conn, statement)
        return pd.DataFrame(conn.execute(statement).fetchall(), columns=["event_id", "activity_id"])

    # --- names --------------------------------------------------------------------------

    def code_point(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """An event id compared by code point: the staged ids already are on every dialect
        (`stage_columns`); a Personify column compared with them may need a COLLATE."""
        return column

    def _literal(self, shape: TableShape, name: str, value: Any) -> sa.ColumnElement[Any]:
        return sa.literal(value, shape.column(name).type)

    def _inserted(
        self, shape: TableShape, source: sa.FromClause, names: list[str], now: datetime
    ) -> dict[str, sa.ColumnElement[Any]]:
        """The values of an insert: the columns `names` of `source`, then the standard fields
        (ADDOPER, ADDDATE, CONCURRENCY_ID 0) and the constants of the columns subsync has no
        field for."""
        values: dict[str, sa.ColumnElement[Any]] = {name: source.c[name] for name in names}
        if shape.has("add_oper"):
            values[shape.columns["add_oper"]] = self._literal(shape, "add_oper", self.operator)
        if shape.has("add_date"):
            values[shape.columns["add_date"]] = sa.literal(now, TIMESTAMP)
        if shape.has("concurrency_id"):
            values[shape.columns["concurrency_id"]] = _ZERO
        return {**values, **shape.constant_values()}

    def _updated(
        self,
        shape: TableShape,
        target: sa.FromClause,
        source: sa.FromClause,
        names: list[str],
        now: datetime,
    ) -> dict[str, sa.ColumnElement[Any]]:
        """The values of an update: the columns `names` of `source`, then the standard fields
        MODOPER, MODDATE, CONCURRENCY_ID + 1 (Personify's optimistic lock: its own screens then
        see that the row moved under them)."""
        values: dict[str, sa.ColumnElement[Any]] = {name: source.c[name] for name in names}
        if shape.has("mod_oper"):
            values[shape.columns["mod_oper"]] = self._literal(shape, "mod_oper", self.operator)
        if shape.has("mod_date"):
            values[shape.columns["mod_date"]] = sa.literal(now, TIMESTAMP)
        if shape.has("concurrency_id"):
            concurrency = target.c[shape.columns["concurrency_id"]]
            values[shape.columns["concurrency_id"]] = sa.func.coalesce(concurrency, _ZERO) + _ONE
        return values

    # --- statements ---------------------------------------------------------------------

    def stage_table(self, name: str, columns: list[sa.Column[Any]]) -> sa.Table:
        return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])

    def stage_columns(self, kind: StageKind) -> list[sa.Column[Any]]:
        """The staging table of each kind, typed like its target's columns and keyed."""
        if kind == "members":
            return _like(self.tables.customer, _MEMBER_KEY, key=_MEMBER_KEY)
        if kind == "opt_in":
            return _like(self.opt_in.table, [*self.opt_in_key, *self.opt_in_data], self.opt_in_key)
        if kind == "records":
            # Every row of ours an event may have: (event_id, activity_id), and whether the
            # event still wants a row (0) or its row is stale (1).
            return [
                sa.Column("event_id", EVENT_ID, primary_key=True),
                sa.Column("activity_id", IDENTITY, primary_key=True),
                sa.Column("stale", sa.SmallInteger, nullable=False),
            ]
        if kind == "ids":
            # Given ids: not an IDENTITY (SQL Server) or a BIGSERIAL (PostgreSQL) column.
            return [sa.Column("activity_id", IDENTITY, primary_key=True, autoincrement=False)]
        return [
            sa.Column("event_id", EVENT_ID, primary_key=True),
            *_like(self.activity.table, self.activity_data, key=[]),
        ]

    def member_lookup(self, stage: sa.Table) -> sa.Select[Any]:
        customer = self.tables.customer
        return (
            sa.select(*[stage.c[name].label(name.lower()) for name in _MEMBER_KEY])
            .join(customer, _same(stage, customer, _MEMBER_KEY))
            .distinct()
        )

    def opt_in_verify(self, stage: sa.Table) -> sa.Select[Any]:
        """How many staged rows CUS_OPT_IN does not hold exactly, counted by the database."""
        target = self.opt_in.table
        key, data = self.opt_in_key, self.opt_in_data
        identical = sa.exists().where(_same(stage, target, key), ~_differs(stage, target, data))
        return sa.select(sa.func.count().label("mismatched")).where(~identical)

    def foreign_activity(self, stage: sa.Table, records: sa.Table) -> sa.Select[Any]:
        """Rows another system wrote under an external id we are about to write (only when
        the site maps `external_id`)."""
        external = self.activity.column("external_id")
        ours = sa.exists().where(records.c.activity_id == self.identity)
        joined = self.activity.table.join(stage, self.code_point(external) == stage.c.event_id)
        return sa.select(external).select_from(joined).where(~ours).limit(5)

    def _held(self, records: sa.Table) -> sa.Join:
        """`records` (or staged ids) joined to the rows of ours CUS_ACTIVITY still holds."""
        return records.join(self.activity.table, self.identity == records.c.activity_id)

    def present_records(self, records: sa.Table) -> sa.Select[Any]:
        """The event ids whose recorded row of ours still exists and is still wanted."""
        held = sa.select(records.c.event_id).select_from(self._held(records))
        return held.where(records.c.stale == _ZERO)

    def activity_delete(self, records: sa.Table) -> sa.Delete:
        """Our rows whose events no longer want one (rejected, gone, no longer a change)."""
        stale = sa.select(records.c.activity_id).where(records.c.stale == _ONE)
        return sa.delete(self.activity.table).where(self.identity.in_(stale))

    def activity_update(self, records: sa.Table, stage: sa.Table, now: datetime) -> sa.Update:
        """Our rows whose event's row now reads differently (its text, its area), in place."""
        target = self.activity.table
        data = self.activity_data
        return (
            sa.update(target)
            .values(self._updated(self.activity, target, stage, data, now))
            .where(
                self.identity == records.c.activity_id,
                records.c.stale == _ZERO,
                records.c.event_id == stage.c.event_id,
                _differs(target, stage, data),
            )
        )

    def activity_missing(self, records: sa.Table, stage: sa.Table) -> sa.ColumnElement[bool]:
        """A staged row without a row of ours in the table."""
        held = sa.select(_ONE).select_from(self._held(records))
        return ~sa.exists(
            held.where(records.c.event_id == stage.c.event_id, records.c.stale == _ZERO)
        )

    def activity_verify(self, records: sa.Table, stage: sa.Table) -> sa.Select[Any]:
        """Our rows against the staged ones, counted by the database once the write is done
        (`records` then holds the new rows too): staged rows without an identical row of ours,
        stale rows of ours still there, and events with more than one row of ours."""
        target = self.activity.table
        data = self.activity_data
        identical = sa.exists().where(
            records.c.event_id == stage.c.event_id,
            records.c.stale == _ZERO,
            self.identity == records.c.activity_id,
            ~_differs(target, stage, data),
        )
        missing = sa.select(sa.func.count()).select_from(stage).where(~identical)
        held = self._held(records)
        extra = sa.select(sa.func.count()).select_from(held).where(records.c.stale == _ONE)
        duplicated = (
            sa.select(sa.func.count() - sa.func.count(sa.distinct(records.c.event_id)))
            .select_from(held)
            .where(records.c.stale == _ZERO)
        )
        return sa.select(
            missing.scalar_subquery().label("missing"),
            extra.scalar_subquery().label("extra"),
            duplicated.scalar_subquery().label("duplicated"),
        )

    def opt_in_changes(self, stage: sa.Table) -> tuple[sa.Select[Any], sa.Select[Any]]:
        """The staged rows `merge_opt_in` would insert, and those it would update with the
        target's values beside them."""
        target = self.opt_in.table
        key, data = self.opt_in_key, self.opt_in_data
        new = sa.select(*stage.c).where(~sa.exists().where(_same(stage, target, key)))
        changed = (
            sa.select(
                *(stage.c[name] for name in key),
                *(target.c[name].label(f"{name} (old)") for name in data),
                *(stage.c[name].label(f"{name} (new)") for name in data),
            )
            .select_from(stage.join(target, _same(stage, target, key)))
            .where(_differs(stage, target, data))
        )
        return new, changed

    def activity_changes(
        self, records: sa.Table, stage: sa.Table
    ) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
        """The rows `reconcile_activity` would insert, update (with the target's values beside
        them) and delete: the same conditions as its statements, as queries."""
        target = self.activity.table
        data = self.activity_data
        ours = self._held(records)
        new = sa.select(*stage.c).where(self.activity_missing(records, stage))
        changed = (
            sa.select(
                records.c.event_id,
                self.identity.label("activity_id"),
                *(target.c[name].label(f"{name} (old)") for name in data),
                *(stage.c[name].label(f"{name} (new)") for name in data),
            )
            .select_from(ours.join(stage, records.c.event_id == stage.c.event_id))
            .where(records.c.stale == _ZERO, _differs(target, stage, data))
        )
        gone = (
            sa.select(
                records.c.event_id, self.identity.label("activity_id"), *(target.c[n] for n in data)
            )
            .select_from(ours)
            .where(records.c.stale == _ONE)
        )
        return new, changed, gone

    def existing_ids(self, ids: sa.Table) -> sa.Select[Any]:
        return sa.select(ids.c.activity_id).select_from(self._held(ids))

    # --- steps --------------------------------------------------------------------------

    def stage(self, conn: Connection, kind: StageKind, frame: pd.DataFrame) -> sa.Table:
        columns = self.stage_columns(kind)
        table = self.stage_table(f"subsync_{kind}_{next(_stage_ids)}", columns)
        table.create(conn)
        insert_frame(conn, table, frame[[c.name for c in columns]], staging=True)
        return table

    def known_members(self, conn: Connection, pairs: pd.DataFrame) -> pd.DataFrame:
        """Which (master_customer_id, sub_customer_id) pairs exist in CUSTOMER: one joined query."""
        stage = self.stage(conn, "members", pairs.drop_duplicates().rename(columns=str.upper))
        found = read_frame(conn, self.member_lookup(stage))
        stage.drop(conn)
        return found.astype({"sub_customer_id": "int64", "master_customer_id": str})

    def upsert_opt_in(self, conn: Connection, rows: pd.DataFrame, now: datetime) -> WriteCounts:
        """Make CUS_OPT_IN hold `rows` (by field) for their keys: update rows whose data differ,
        insert new ones."""
        stage = self.stage(conn, "opt_in", self.opt_in.physical(rows, [*OPT_IN_KEY, *OPT_IN_DATA]))
        inserted, updated = self.merge_opt_in(conn, stage, now)
        mismatched = conn.execute(self.opt_in_verify(stage)).scalar_one()
        stage.drop(conn)
        return WriteCounts(
            inserted=inserted,
            updated=updated,
            unchanged=len(rows) - inserted - updated,
            mismatched=int(mismatched),
        )

    def preview_opt_in(self, conn: Connection, rows: pd.DataFrame) -> Changes:
        """What `upsert_opt_in(rows)` would change, read without writing."""
        stage = self.stage(conn, "opt_in", self.opt_in.physical(rows, [*OPT_IN_KEY, *OPT_IN_DATA]))
        inserted, updated = (read_frame(conn, query) for query in self.opt_in_changes(stage))
        stage.drop(conn)
        return Changes(inserted, updated, deleted=pd.DataFrame(columns=list(stage.c.keys())))

    def activity_exists(self, conn: Connection, ids: pd.Series) -> pd.Series:
        """Which of `ids` are rows of CUS_ACTIVITY now."""
        stage = self.stage(conn, "ids", pd.DataFrame({"activity_id": ids.drop_duplicates()}))
        found = read_frame(conn, self.existing_ids(stage))["activity_id"].astype("int64")
        stage.drop(conn)
        return ids.isin(found)

    def reconcile_activity(
        self, conn: Connection, records: pd.DataFrame, rows: pd.DataFrame, now: datetime
    ) -> ActivityWrite:
        """Make subsync's CUS_ACTIVITY rows of `records` (event_id, activity_id, stale: what
        the state database holds of the events being written) equal `rows` (by field, with
        event_id): stale ones deleted, changed ones updated, missing ones inserted.
        """
        rows = rows.drop_duplicates("event_id")
        staged, stage = self._stage_activity(conn, records, rows)
        deleted = conn.execute(self.activity_delete(staged)).rowcount
        updated = conn.execute(self.activity_update(staged, stage, now)).rowcount
        present = read_frame(conn, self.present_records(staged))["event_id"]
        missing = rows.loc[~rows["event_id"].isin(present)]
        inserted = (
            self.insert_activity(conn, staged, stage, missing, now)
            if len(missing)
            else pd.DataFrame(columns=["event_id", "activity_id"])
        ).astype({"event_id": str, "activity_id": "int64"})
        if len(inserted) != len(missing):
            raise PersonifyWriteError(
                f"inserted {len(missing)} rows into {self.activity.table.fullname} but read "
                f"back {len(inserted)} ids; nothing was written"
            )
        insert_frame(conn, staged, inserted.assign(stale=0), staging=True)
        missed, extra, duplicated = conn.execute(self.activity_verify(staged, stage)).one()
        stage.drop(conn)
        staged.drop(conn)
        stale = records.loc[records["stale"].eq(1), ["event_id", "activity_id"]]
        return ActivityWrite(
            counts=WriteCounts(
                inserted=len(inserted),
                updated=updated,
                deleted=deleted,
                unchanged=len(rows) - len(inserted) - updated,
                mismatched=int(missed) + int(extra),
                duplicate_rows=int(duplicated),
            ),
            inserted=inserted,
            deleted=stale.reset_index(drop=True),
        )

    def preview_activity(
        self, conn: Connection, records: pd.DataFrame, rows: pd.DataFrame
    ) -> Changes:
        """What `reconcile_activity(records, rows)` would change, read without writing."""
        staged, stage = self._stage_activity(conn, records, rows.drop_duplicates("event_id"))
        changes = Changes(*(read_frame(conn, q) for q in self.activity_changes(staged, stage)))
        stage.drop(conn)
        staged.drop(conn)
        return changes

    def _stage_activity(
        self, conn: Connection, records: pd.DataFrame, rows: pd.DataFrame
    ) -> tuple[sa.Table, sa.Table]:
        """Stage the records and the wanted rows; refuse to go on when a row another system
        wrote carries an external id subsync would write."""
        staged = self.stage(conn, "records", records.assign(stale=records["stale"].astype("int16")))
        wanted = self.activity.physical(rows, ACTIVITY_DATA).assign(event_id=rows["event_id"])
        stage = self.stage(conn, "activity", wanted)
        if self.activity.has("external_id"):
            foreign = conn.execute(self.foreign_activity(stage, staged)).scalars().all()
            if foreign:
                raise PersonifyWriteError(
                    f"{self.activity.table.fullname} already holds rows another system wrote "
                    f"with {self.activity.columns['external_id']} "
                    f"{', '.join(map(str, foreign))}; subsync will not overwrite them"
                )
        return staged, stage


class UpsertWriter(PersonifyWriter):
    """SQLite and PostgreSQL: an UPDATE ... FROM then an INSERT ... SELECT of the missing keys
    (a real CUS_OPT_IN need have no unique index for ON CONFLICT to use), and for activity an
    INSERT ... RETURNING."""

    def opt_in_update(self, stage: sa.Table, now: datetime) -> sa.Update:
        target = self.opt_in.table
        key, data = self.opt_in_key, self.opt_in_data
        return (
            sa.update(target)
            .values(self._updated(self.opt_in, target, stage, data, now))
            .where(_same(target, stage, key), _differs(target, stage, data))
        )

    def opt_in_insert(self, stage: sa.Table, now: datetime) -> sa.Insert:
        target = self.opt_in.table
        key, data = self.opt_in_key, self.opt_in_data
        values = self._inserted(self.opt_in, stage, [*key, *data], now)
        return sa.insert(target).from_select(
            list(values),
            sa.select(*values.values()).where(~sa.exists().where(_same(target, stage, key))),
        )

    def merge_opt_in(self, conn: Connection, stage: sa.Table, now: datetime) -> tuple[int, int]:
        updated = conn.execute(self.opt_in_update(stage, now)).rowcount
        inserted = conn.execute(self.opt_in_insert(stage, now)).rowcount
        return inserted, updated

    def activity_insert(self, records: sa.Table, stage: sa.Table, now: datetime) -> sa.Insert:
        target = self.activity.table
        data = self.activity_data
        values = self._inserted(self.activity, stage, data, now)
        return (
            sa.insert(target)
            .from_select(
                list(values),
                sa.select(*values.values()).where(self.activity_missing(records, stage)),
            )
            .returning(self.identity, *[target.c[name] for name in data])
        )


_MISSING = "\x00"


def _comparable(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """The `fields` of a frame as the database gives them back and as pandas holds them, made
    equal: times to the microsecond, the sub customer id as an integer, the rest as text, and
    missing values as one marker."""
    columns: dict[str, pd.Series] = {}
    for name in fields:
        values = frame[name].reset_index(drop=True)
        if name == "activity_date":
            columns[name] = pd.to_datetime(values).astype("datetime64[us]")
        elif name == "sub_customer_id":
            columns[name] = pd.to_numeric(values).astype("int64")
        else:
            columns[name] = values.astype(object).where(values.notna(), _MISSING).astype(str)
    return pd.DataFrame(columns)


class SQLiteWriter(UpsertWriter):
    """SQLite cannot put an INSERT in a CTE: the ids come back with the inserted values and are
    paired with the staged events in pandas."""

    def lock(self, conn: Connection) -> None:
        # SQLite has one writer at a time; taking the write lock now, not at the first write,
        # makes the whole read-resolve-write section exclusive.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def insert_activity(
        self,
        conn: Connection,
        records: sa.Table,
        stage: sa.Table,
        missing: pd.DataFrame,
        now: datetime,
    ) -> pd.DataFrame:
        result = conn.execute(self.activity_insert(records, stage, now))
        returned = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        return self.match_inserted(missing, returned)

    def match_inserted(self, missing: pd.DataFrame, returned: pd.DataFrame) -> pd.DataFrame:
        """(event_id, activity_id) of inserted rows read back with their values (RETURNING
        cannot name the staged event_id): each returned row is matched to the missing row with
        the same values. Rows with equal values are interchangeable (either id may stand for
        either event), so they are paired in order."""
        data = self.activity.mapped(ACTIVITY_DATA)
        theirs = returned.rename(
            columns={column: name for name, column in self.activity.columns.items()}
        )
        ours, theirs = _comparable(missing, data), _comparable(theirs, data)
        ours["event_id"] = missing["event_id"].to_numpy()
        theirs["activity_id"] = returned[self.activity.columns["id"]].to_numpy()
        for frame in (ours, theirs):
            frame["nth"] = frame.groupby(data, sort=False).cumcount()
        matched = ours.merge(theirs, on=[*data, "nth"], how="inner")
        return matched[["event_id", "activity_id"]].astype({"activity_id": "int64"})


class PostgresWriter(UpsertWriter):
    """Stages through `insert_frame`: with COPY, PostgreSQL's own bulk load path, through
    psycopg; with fast_executemany, as on SQL Server, through pyodbc. The activity insert pairs
    its returned ids with the staged events inside the database (the data-modifying CTE and the
    staged rows see one snapshot), so only (event_id, id) comes back: reading every inserted
    row's values into Python took longer than the insert itself."""

    def lock(self, conn: Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))

    def stage_table(self, name: str, columns: list[sa.Column[Any]]) -> sa.Table:
        return super().stage_table(name, unkeyed(columns))

    def paired_insert(self, records: sa.Table, stage: sa.Table, now: datetime) -> sa.Select[Any]:
        data = self.activity_data
        inserted = self.activity_insert(records, stage, now).cte("inserted")
        identity = inserted.c[self.activity.columns["id"]]

        def numbered(source: Any, order: Any, first: Any) -> Any:
            # Equal rows are numbered 1, 2, ... on both sides; NULLs group and join as a value
            # (hashable equalities: IS NOT DISTINCT FROM would force a nested loop).
            columns = [source.c[name] for name in data]
            keys = [
                key
                for column in columns
                for key in (sa.func.coalesce(sa.cast(column, sa.Text), ""), column.is_(None))
            ]
            return sa.select(
                first,
                *[key.label(f"k{n}") for n, key in enumerate(keys)],
                sa.func.row_number().over(partition_by=keys, order_by=order).label("nth"),
            )

        ours = numbered(stage, stage.c.event_id, stage.c.event_id)
        ours = ours.where(self.activity_missing(records, stage)).subquery("ours")
        theirs = numbered(inserted, identity, identity.label("activity_id")).subquery("theirs")
        on = sa.and_(
            ours.c.nth == theirs.c.nth,
            *[ours.c[f"k{n}"] == theirs.c[f"k{n}"] for n in range(2 * len(data))],
        )
        return sa.select(ours.c.event_id, theirs.c.activity_id).select_from(ours.join(theirs, on))


class MSSQLWriter(PersonifyWriter):
    """SQL Server: `#temp` staging loaded with fast_executemany, a MERGE for opt-ins, and for
    activity an insert through MERGE, whose OUTPUT (unlike INSERT's) can name the staged
    event_id beside the generated id."""

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

    def code_point(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return column.collate(BINARY)

    def opt_in_merge(self, stage: sa.Table, now: datetime) -> Merge:
        target = self.opt_in.table
        alias, source = target.alias("target"), stage.alias("stage")
        key, data = self.opt_in_key, self.opt_in_data
        return Merge(
            target,
            alias,
            source,
            on=_same(alias, source, key),
            insert=self._inserted(self.opt_in, source, [*key, *data], now),
            update=(
                _differs(alias, source, data),
                self._updated(self.opt_in, alias, source, data, now),
            ),
        )

    def paired_insert(self, records: sa.Table, stage: sa.Table, now: datetime) -> Merge:
        """INSERT of the missing rows as a MERGE that never matches (ON 1 = 0), so its OUTPUT
        pairs each generated id with the staged event_id."""
        target = self.activity.table
        data = self.activity_data
        source = sa.select(stage).where(self.activity_missing(records, stage)).subquery("stage")
        return Merge(
            target,
            target.alias("target"),
            source,
            on=_ONE == _ZERO,
            insert=self._inserted(self.activity, source, data, now),
            output={"event_id": source.c.event_id, "activity_id": Inserted(self.identity)},
        )

    def merge_opt_in(self, conn: Connection, stage: sa.Table, now: datetime) -> tuple[int, int]:
        actions = Counter(
            {str(action): int(rows) for action, rows in conn.execute(self.opt_in_merge(stage, now))}
        )
        return actions["INSERT"], actions["UPDATE"]


WRITERS: dict[str, type[PersonifyWriter]] = {
    "sqlite": SQLiteWriter,
    "postgresql": PostgresWriter,
    "mssql": MSSQLWriter,
}


def writer_for(
    engine: Engine | Connection, tables: PersonifyTables, operator: str = "SUBSYNC"
) -> PersonifyWriter:
    """The writer for the engine's dialect (sqlite, postgresql, mssql)."""
    dialect = engine.dialect.name
    if dialect not in WRITERS:
        raise PersonifyWriteError(
            f"no Personify writer for the {dialect!r} dialect; PERSONIFY_DB_URL must use one "
            f"of {sorted(WRITERS)}"
        )
    return WRITERS[dialect](tables, operator)
