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

from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.personify.writers import STAGE_KINDS, MSSQLWriter

GOLDEN = Path(__file__).with_name("golden") / "mssql"
NOW = datetime(2026, 11, 23, 6, 0)


def writer_statements() -> dict[str, sa.Executable | sa.schema.ExecutableDDLElement]:
    config = parse_config(
        {
            "personify": {
                "tables": {
                    "customer": "dbo.CUSTOMER",
                    "opt_in": "dbo.CUS_OPT_IN",
                    "activity": "dbo.CUS_ACTIVITY",
                },
                # One constant column, so the goldens show where constants go.
                "constants": {"activity": {"ACTIVITY_SOURCE": "REALMAGNET"}},
            }
        }
    )
    writer = MSSQLWriter(personify_tables(config.personify), config.personify.operator)
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
    records, activity = stages["records"], stages["activity"]
    statements["member_lookup"] = writer.member_lookup(stages["members"])
    statements["opt_in_merge"] = writer.opt_in_merge(stages["opt_in"], NOW)
    statements["opt_in_verify"] = writer.opt_in_verify(stages["opt_in"])
    statements["activity_delete"] = writer.activity_delete(records)
    statements["activity_update"] = writer.activity_update(records, activity, NOW)
    statements["activity_present"] = writer.present_records(records)
    statements["activity_insert_merge"] = writer.paired_insert(records, activity, NOW)
    statements["activity_verify"] = writer.activity_verify(records, activity)
    statements["activity_existing_ids"] = writer.existing_ids(stages["ids"])
    # A site that maps external_id: rows another system wrote under our event ids are refused.
    external = parse_config({"personify": {"columns": {"activity": {"external_id": "EXT_ID"}}}})
    mapped = MSSQLWriter(personify_tables(external.personify), "SUBSYNC")
    mapped_stage = mapped.stage_table("subsync_activity_2", mapped.stage_columns("activity"))
    statements["activity_foreign_rows"] = mapped.foreign_activity(mapped_stage, records)
    return statements


def compiled(statement: sa.Executable | sa.schema.ExecutableDDLElement) -> str:
    dialect = MSDialect_pyodbc(paramstyle="qmark")
    text = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return "\n".join(line.rstrip() for line in str(text).strip().splitlines()) + "\n"


STATEMENTS = writer_statements()


def updating_goldens() -> bool:
    """SUBSYNC_UPDATE_GOLDEN rewrites the copies, which makes the comparison a tautology: it is
    for a developer reviewing a deliberate change, never for CI."""
    if not os.environ.get("SUBSYNC_UPDATE_GOLDEN"):
        return False
    if os.environ.get("CI"):
        pytest.fail(
            "SUBSYNC_UPDATE_GOLDEN is refused under CI: it would compare the statements "
            "with themselves",
            pytrace=False,
        )
    return True


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_matches_golden_and_parses_as_tsql(name: str) -> None:
    sql = compiled(STATEMENTS[name])
    golden = GOLDEN / f"{name}.sql"
    if updating_goldens():
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


def test_goldens_cannot_be_rewritten_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SUBSYNC_UPDATE_GOLDEN", "1")
    with pytest.raises(pytest.fail.Exception, match="refused under CI"):
        updating_goldens()
    monkeypatch.delenv("SUBSYNC_UPDATE_GOLDEN")
    assert not updating_goldens()


def test_no_stale_golden_copies() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(STATEMENTS)


def test_merges_are_serialisable_and_report_what_they_did() -> None:
    for name in ("opt_in_merge", "activity_insert_merge"):
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
    assert "OUTPUT $action INTO @actions" in compiled(STATEMENTS["opt_in_merge"])
    insert = compiled(STATEMENTS["activity_insert_merge"])
    # The MERGE never matches, so it only inserts; its OUTPUT pairs each generated id with the
    # staged event_id, which an INSERT's OUTPUT cannot name.
    assert "ON 1 = 0" in insert and "THEN DELETE" not in insert and "UPDATE" not in insert
    assert "OUTPUT stage.event_id, INSERTED.[CUS_ACTIVITY_ID] INTO @output" in insert


def test_opt_in_merge_keeps_personify_standard_fields() -> None:
    merge = compiled(STATEMENTS["opt_in_merge"])
    # The five documented key columns; CONCURRENCY_ID 0 on insert and +1 on update; MODOPER and
    # MODDATE on update only; an unchanged row is never touched.
    assert "target.[OPTION_SHORT_SUBNAME] = stage.[OPTION_SHORT_SUBNAME]" in merge
    assert "[CONCURRENCY_ID] = coalesce(target.[CONCURRENCY_ID], 0) + 1" in merge
    inserted = merge[merge.index("WHEN NOT MATCHED") :]
    assert "[MODDATE]" not in inserted and "[ADDOPER]" in inserted
    assert "WHEN MATCHED AND (" in merge


def test_activity_statements_touch_only_recorded_rows() -> None:
    for name in ("activity_delete", "activity_update"):
        sql = compiled(STATEMENTS[name])
        assert "[CUS_ACTIVITY_ID]" in sql and "activity_id" in sql, sql
    assert "[ACTIVITY_SOURCE]" in compiled(STATEMENTS["activity_insert_merge"])


def test_event_ids_are_compared_by_code_point() -> None:
    """SQL Server's usual default collation is case-insensitive: `abc` and `ABC` would be one
    event. Every staged event id is binary, and a Personify column compared with one is made so."""
    for name in ("stage_records_create", "stage_activity_create"):
        assert "event_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2" in compiled(STATEMENTS[name])
    foreign = compiled(STATEMENTS["activity_foreign_rows"])
    assert "[EXT_ID] COLLATE Latin1_General_100_BIN2) = [#subsync_activity_2].event_id" in foreign


def test_values_are_bound_never_inlined() -> None:
    merge = STATEMENTS["opt_in_merge"].compile(dialect=MSDialect_pyodbc(paramstyle="qmark"))
    assert NOW in merge.params.values() and "SUBSYNC" in merge.params.values()
    assert "SUBSYNC" not in str(merge) and "2026" not in str(merge)
