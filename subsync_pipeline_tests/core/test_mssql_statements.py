"""Every statement the SQL Server writer issues, compiled by SQLAlchemy's mssql dialect (pyodbc,
qmark parameters, as in production) and parsed by sqlglot's T-SQL dialect, against golden copies
in golden/mssql/ that a reviewer reads like any other code.

No SQL Server can run here; this is how its statements are proven. After a deliberate change,
regenerate the copies with SUBSYNC_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc
from sqlglot import exp

from subsync_pipeline.core.config import PersonifyTables as TableNames
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.personify.writers import STAGE_KINDS, MSSQLWriter

GOLDEN = Path(__file__).with_name("golden") / "mssql"
NOW = datetime(2026, 11, 23, 6, 0)


def writer_statements() -> dict[str, sa.Executable | sa.schema.ExecutableDDLElement]:
    tables = personify_tables(
        TableNames(customer="dbo.CUSTOMER", opt_in="dbo.CUS_OPT_IN", activity="dbo.CUS_ACTIVITY")
    )
    writer = MSSQLWriter(tables)
    stages = {
        kind: writer.stage_table(f"subsync_{kind}_1", writer.stage_columns(kind))
        for kind in STAGE_KINDS
    }
    statements: dict[str, sa.Executable | sa.schema.ExecutableDDLElement] = {
        "lock": writer.lock_statement()
    }
    for kind, stage in stages.items():
        statements[f"stage_{kind}_create"] = sa.schema.CreateTable(stage)
        statements[f"stage_{kind}_insert"] = stage.insert()
        statements[f"stage_{kind}_drop"] = sa.schema.DropTable(stage)
    statements["member_lookup"] = writer.member_lookup(stages["members"])
    statements["opt_in_merge"] = writer.opt_in_merge(stages["opt_in"], NOW)
    statements["opt_in_verify"] = writer.opt_in_verify(stages["opt_in"])
    statements["activity_foreign_rows"] = writer.foreign_activity(stages["activity"])
    statements["activity_merge"] = writer.activity_merge(
        stages["activity_ids"], stages["activity"], NOW
    )
    statements["activity_verify"] = writer.activity_verify(
        stages["activity_ids"], stages["activity"]
    )
    return statements


def compiled(statement: sa.Executable | sa.schema.ExecutableDDLElement) -> str:
    dialect = MSDialect_pyodbc(paramstyle="qmark")
    text = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return "\n".join(line.rstrip() for line in str(text).strip().splitlines()) + "\n"


STATEMENTS = writer_statements()


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_matches_golden_and_parses_as_tsql(name: str) -> None:
    sql = compiled(STATEMENTS[name])
    golden = GOLDEN / f"{name}.sql"
    if os.environ.get("SUBSYNC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(sql, encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run with SUBSYNC_UPDATE_GOLDEN=1 and review it"
    assert sql == golden.read_text(encoding="utf-8"), f"{name} differs from {golden}"

    parsed = [
        tree
        for tree in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
        if tree is not None
    ]
    assert parsed
    # sqlglot falls back to an opaque Command for text it does not understand.
    assert not [tree for tree in parsed if isinstance(tree, exp.Command)], parsed


def test_no_stale_golden_copies() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(STATEMENTS)


def test_merges_are_serialisable_and_report_their_actions() -> None:
    for name in ("opt_in_merge", "activity_merge"):
        batch = sqlglot.parse(compiled(STATEMENTS[name]), read="tsql")
        assert [type(tree) for tree in batch] == [
            exp.Set,
            exp.Declare,
            exp.Merge,
            exp.Select,
            exp.Set,
        ]
        tree = batch[2]
        assert isinstance(tree, exp.Merge)
        assert tree.this.name in ("CUS_OPT_IN", "CUS_ACTIVITY")
        assert "WITH (HOLDLOCK)" in tree.sql(dialect="tsql")
        assert "OUTPUT $action INTO @actions" in tree.sql(dialect="tsql")
    activity = compiled(STATEMENTS["activity_merge"])
    # Only our own rows can match, nothing outside the candidates is ever deleted, and activity
    # is only ever deleted and inserted: the subsync login needs no UPDATE right on it.
    assert "target.[ADDBY] = ?" in activity and "NOT MATCHED BY SOURCE" not in activity
    assert "THEN DELETE" in activity and "UPDATE" not in activity


def test_values_are_bound_never_inlined() -> None:
    merge = STATEMENTS["opt_in_merge"].compile(dialect=MSDialect_pyodbc(paramstyle="qmark"))
    assert NOW in merge.params.values() and "SUBSYNC" in merge.params.values()
    assert "SUBSYNC" not in str(merge) and "2026" not in str(merge)
