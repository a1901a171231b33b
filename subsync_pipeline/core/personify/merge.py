"""T-SQL `MERGE ... WITH (HOLDLOCK)` as a SQLAlchemy construct.

SQLAlchemy has no MERGE. Building it from Core parts keeps every name quoted by the mssql
dialect's preparer and every value a bound parameter, exactly like the statements SQLAlchemy
writes itself; only the clause keywords are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable, FromClause


class Inserted(ClauseElement):
    """`INSERTED.<column>` in an OUTPUT clause: the value the row got, generated ids included."""

    inherit_cache = False

    def __init__(self, column: sa.Column[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Inserted, "mssql")
def _compile_inserted(inserted: Inserted, compiler: SQLCompiler, **kw: Any) -> str:
    return f"INSERTED.{compiler.preparer.quote(inserted.column.name)}"


@dataclass(eq=False)
class Merge(Executable, ClauseElement):
    """MERGE INTO target WITH (HOLDLOCK) AS <alias> USING source ON ..., inserting `insert` for
    unmatched rows and, given `update` (condition, values), updating matched rows that meet the
    condition; as one batch that returns (action, rows) for 'INSERT' and 'UPDATE', or with
    `output` the named values of every row it touched (source columns and `Inserted` ones).

    HOLDLOCK makes MERGE serializable on the keys it probes, so a concurrent insert cannot slip
    in between its "not matched" test and its INSERT. The actions go `OUTPUT ... INTO` a table
    variable, because a bare OUTPUT is refused on tables with enabled triggers, which Personify
    installations often add; NOCOUNT keeps the counts the only result set of the batch.
    """

    inherit_cache = False

    target: sa.Table
    alias: FromClause
    source: FromClause
    on: sa.ColumnElement[bool]
    insert: Mapping[str, sa.ColumnElement[Any]]
    update: tuple[sa.ColumnElement[bool], Mapping[str, sa.ColumnElement[Any]]] | None = None
    output: Mapping[str, sa.ColumnElement[Any] | Inserted] = field(default_factory=dict)


@compiles(Merge, "mssql")
def _compile_merge(merge: Merge, compiler: SQLCompiler, **kw: Any) -> str:
    quote = compiler.preparer.quote
    if merge.output:
        declared = ", ".join(
            f"{quote(name)} {compiler.dialect.type_compiler_instance.process(value.type)}"
            for name, value in merge.output.items()
        )
        into = "@output"
        outputs = ", ".join(compiler.process(value, **kw) for value in merge.output.values())
        names = ", ".join(quote(name) for name in merge.output)
        result = f"SELECT {names} FROM @output;"  # noqa: S608
    else:
        declared = "[action] nvarchar(10)"
        into = "@actions"
        outputs = "$action"
        result = "SELECT [action], COUNT(*) AS [rows] FROM @actions GROUP BY [action];"
    lines = [
        "SET NOCOUNT ON;",
        f"DECLARE {into} TABLE ({declared});",
        f"MERGE INTO {compiler.preparer.format_table(merge.target)} WITH (HOLDLOCK) AS "
        f"{quote(str(merge.alias.name))}",  # type: ignore[attr-defined]
        f"USING {compiler.process(merge.source, asfrom=True, **kw)}",
        f"ON {compiler.process(merge.on, **kw)}",
    ]
    if merge.update is not None:
        condition, assigned = merge.update
        head = f"WHEN MATCHED AND ({compiler.process(condition, **kw)})"
        sets = [f"{quote(name)} = {compiler.process(v, **kw)}" for name, v in assigned.items()]
        lines.append(f"{head} THEN UPDATE SET {', '.join(sets)}")
    # Names come quoted from the dialect's preparer and values as bound parameters.
    columns = ", ".join(quote(name) for name in merge.insert)
    values = ", ".join(compiler.process(value, **kw) for value in merge.insert.values())
    lines.append(f"WHEN NOT MATCHED BY TARGET THEN INSERT ({columns}) VALUES ({values})")  # noqa: S608
    lines += [f"OUTPUT {outputs} INTO {into};", result, "SET NOCOUNT OFF;"]
    return "\n".join(lines)
