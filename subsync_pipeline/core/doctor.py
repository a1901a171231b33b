"""`subsync doctor`: a read-only preflight of Personify and the landing folder (SPEC §5, §7).

Each check turns what would otherwise surface as a failed write on the first run (a missing
table or column, an unfilled NOT NULL column, a missing grant, a code Personify does not know, a
member id or a Real Magnet scope the config does not expect) into one line with its fix. Nothing
is written; no password appears in a finding.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Inspector
from sqlalchemy.exc import DBAPIError

from subsync_pipeline.core.config import SCOPE_TYPES, SubsyncConfig
from subsync_pipeline.core.manifest import list_landed_files
from subsync_pipeline.core.personify.connection import (
    PersonifyConnectionError,
    create_personify_engine,
    masked,
    scrubbed,
)
from subsync_pipeline.core.personify.tables import (
    ACTIVITY_TYPE,
    INTEREST_AREA_TYPE,
    SUBSYSTEM,
    PersonifyTables,
    TableShape,
    personify_tables,
    reflected_columns,
)
from subsync_pipeline.core.tracking_log import FILE_OK, read_tracking_file
from subsync_pipeline.core.validation import split_member_ids

OK, WARN, FAIL = "ok", "warn", "fail"
PREFIX = {OK: "[ok]", WARN: "[warn]", FAIL: "[FAIL]"}
EXIT_OK, EXIT_FAILED = 0, 1

# What each finding is about: the checks of `subsync doctor`, in the order they run.
CONNECTION = "connection"
TABLE = "table"
NOT_NULL = "not_null"
GRANT = "grant"
CODE = "code"
MEMBER_ID = "member_id"
SCOPE = "scope"

CUSTOMER_SAMPLE = 1000
EXAMPLES = 5

# The type families of what subsync writes, and of a column.
TEXT, FLAG, INTEGER, NUMBER = "text", "Y/N flag (text)", "integer", "number"
DATETIME, BOOLEAN = "datetime", "boolean"
FLAG_FIELDS = frozenset({"flag", "forced"})
# Mapped fields subsync leaves NULL on some inserts: a NOT NULL column without a default under
# one of them makes such an insert fail.
_UPDATE_ONLY = dict.fromkeys(("mod_oper", "mod_date"), "set on update only, so NULL on insert")
NULL_ON_INSERT: dict[str, dict[str, str]] = {
    "opt_in": {
        **_UPDATE_ONLY,
        "opt_in_date": "NULL for a member whose first change is an unsubscribe",
        "opt_out_date": "NULL while subscribed",
        "opt_out_reason": "NULL while subscribed (always, when personify.opt_out_reason is null)",
        "first_subscribed_date": "NULL until a first subscribe with timestamp_subscribed",
        "first_unsubscribed_date": "NULL until a first unsubscribe",
        "last_subscribe_request_date": "NULL until a subscribe request",
        "last_unsubscribe_request_date": "NULL until an unsubscribe request",
    },
    "activity": {**_UPDATE_ONLY, "activity_subcode": "NULL for a scope no interest area maps"},
}
# The privileges subsync uses, per table (PersonifyTables attribute).
NEEDED_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "customer": ("SELECT",),
    "opt_in": ("SELECT", "INSERT", "UPDATE"),
    "activity": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "app_code": ("SELECT",),
    "app_subcode": ("SELECT",),
}


@dataclass(frozen=True)
class _GrantQueries:
    """How a dialect tells whether the login holds a privilege on a table (:table, :privilege),
    its database user, and (where it takes a grant) whether it may create the TEMPORARY tables
    the writer stages a day's rows in."""

    table: str
    user: str
    temporary: str | None = None


GRANT_QUERIES: dict[str, _GrantQueries] = {
    "postgresql": _GrantQueries(
        table="SELECT has_table_privilege(:table, :privilege)",
        user="SELECT current_user",
        temporary="SELECT has_database_privilege(current_database(), 'TEMPORARY')",
    ),
    "mssql": _GrantQueries(
        table="SELECT HAS_PERMS_BY_NAME(:table, 'OBJECT', :privilege)",
        user="SELECT USER_NAME()",
    ),
}


@dataclass(frozen=True)
class Finding:
    """One line of the checklist: its status, which check, what was found, and the fix."""

    status: str
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{PREFIX[self.status]} {self.message}"
        return f"{text}\n       fix: {self.fix}" if self.fix else text


def exit_code(findings: list[Finding]) -> int:
    """Non-zero when a finding would make a write fail; warnings alone pass."""
    return EXIT_FAILED if any(f.status == FAIL for f in findings) else EXIT_OK


def summary(findings: list[Finding]) -> str:
    counts = Counter(f.status for f in findings)
    verdict = (
        "subsync would fail to write to Personify: fix the [FAIL] lines"
        if counts[FAIL]
        else "ready: subsync can write to Personify"
    )
    return f"{counts[OK]} ok, {counts[WARN]} warning(s), {counts[FAIL]} failure(s) — {verdict}"


def checklist_text(findings: list[Finding]) -> str:
    return "\n".join([*(f.line() for f in findings), "", summary(findings)])


def checklist_json(findings: list[Finding]) -> str:
    return json.dumps(
        {
            "findings": [asdict(f) for f in findings],
            "summary": summary(findings),
            "exit_code": exit_code(findings),
        },
        indent=2,
    )


def checklist_markdown(findings: list[Finding]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [
        f"| {PREFIX[f.status]} | {f.check} | {cell(f.message)} | {cell(f.fix)} |" for f in findings
    ]
    header = ["| status | check | finding | fix |", "|---|---|---|---|"]
    return "\n".join([*header, *rows, "", f"**{summary(findings)}**"])


def doctor(config: SubsyncConfig, url: str, landing: Path | None = None) -> list[Finding]:
    """Connect to the Personify at `url` and check it, then the `landing` folder if given."""
    try:
        engine = create_personify_engine(url)
    except PersonifyConnectionError as error:
        personify = [Finding(FAIL, CONNECTION, str(error), "correct PERSONIFY_DB_URL")]
    else:
        try:
            personify = [
                Finding(OK, CONNECTION, f"connected to Personify at {masked(url)}"),
                *check_personify(config, engine),
            ]
        finally:
            engine.dispose()
    return personify + (check_landing(config, landing) if landing is not None else [])


def check_personify(config: SubsyncConfig, engine: Engine) -> list[Finding]:
    """Every Personify check, each on its own connection so one refused query (a missing grant)
    leaves the others able to run; nothing is committed."""
    tables = personify_tables(config.personify)
    checks = [
        (TABLE, _check_tables),
        (NOT_NULL, _check_not_null),
        (GRANT, _check_grants),
        (CODE, _check_codes),
        (MEMBER_ID, _check_member_ids),
    ]
    findings: list[Finding] = []
    for kind, check in checks:
        with engine.connect() as conn:
            try:
                findings += check(conn, config, tables)
            except DBAPIError as error:
                message = scrubbed(str(error.orig), engine.url)[:300]
                failed = f"the {kind} check could not read Personify: {message}"
                fix = "see the [FAIL] grant lines, or ask the DBA about this error"
                findings.append(Finding(FAIL, kind, failed, fix))
    return findings


# --- 1. tables, columns and their types ---------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    """What a column must be to take what subsync writes into it."""

    what: str  # the field or constant it carries, for messages
    family: str
    length: int | None = None  # text: the longest value subsync writes
    # Whether `length` is what this config writes (a shorter column fails the write) or only
    # the longest value subsync may write (a shorter column fails only on such a value).
    exact: bool = True


def _family(column_type: sa.types.TypeEngine[Any]) -> str | None:
    if isinstance(column_type, sa.Boolean):
        return BOOLEAN
    if isinstance(column_type, sa.DateTime):
        return DATETIME
    if isinstance(column_type, sa.Integer):
        return INTEGER
    if isinstance(column_type, sa.Numeric):
        scale = getattr(column_type, "scale", None)
        return INTEGER if scale == 0 and not isinstance(column_type, sa.Float) else NUMBER
    if isinstance(column_type, sa.String):
        return TEXT
    return None


# A family subsync writes, and the column families that accept it.
_ACCEPTS: dict[str, frozenset[str]] = {
    TEXT: frozenset({TEXT}),
    FLAG: frozenset({TEXT}),
    INTEGER: frozenset({INTEGER}),
    DATETIME: frozenset({DATETIME}),
    BOOLEAN: frozenset({BOOLEAN, INTEGER}),
    NUMBER: frozenset({NUMBER, INTEGER}),
}


def known_lengths(config: SubsyncConfig) -> dict[str, int]:
    """The longest value of each text field whose values this config decides."""
    personify = config.personify
    codes = [area.opt_in_code for area in config.interest_areas] or [""]
    subcodes = [area.subcode for area in config.interest_areas] or [""]
    activity = [personify.activity_codes.subscribe, personify.activity_codes.unsubscribe]
    return {
        "option_type": len(personify.option_type),
        "code": max(map(len, codes)),
        "subcode": max(map(len, subcodes)),
        "activity_subcode": max(map(len, codes)),
        "opt_out_reason": len(personify.opt_out_reason or ""),
        "add_oper": len(personify.operator),
        "mod_oper": len(personify.operator),
        "activity_code": max(map(len, activity)),
        "subsystem": len(SUBSYSTEM),
        **dict.fromkeys(FLAG_FIELDS, 1),
    }


def _expectations(shape: TableShape, known: dict[str, int]) -> dict[str, _Expected]:
    expected = {}
    for field, column in shape.columns.items():
        column_type = shape.column(field).type
        family = FLAG if field in FLAG_FIELDS else _family(column_type) or TEXT
        length = known.get(field, getattr(column_type, "length", None))
        expected[column] = _Expected(f"field {field}", family, length, exact=field in known)
    for column, value in shape.constants.items():
        length = len(value) if isinstance(value, str) else None
        family = _family(shape.table.c[column].type) or TEXT
        expected[column] = _Expected(f"constant {value!r}", family, length)
    return expected


def _type_problem(
    column: str, actual: dict[str, Any], expected: _Expected
) -> tuple[str, str] | None:
    """(severity, problem) of a column that cannot take what subsync writes into it."""
    actual_type = actual["type"]
    family = _family(actual_type)
    if family not in _ACCEPTS[expected.family]:
        return FAIL, (
            f"column {column} is {actual_type} ({family or 'an unknown type'}), but subsync "
            f"writes {expected.what} into it as {expected.family}"
        )
    length = getattr(actual_type, "length", None)
    if expected.length is not None and length is not None and length < expected.length:
        if expected.exact:
            return FAIL, (
                f"column {column} is {actual_type}: {expected.what} needs {expected.length} "
                "characters under this config"
            )
        return WARN, (
            f"column {column} is {actual_type}: {expected.what} may be up to "
            f"{expected.length} characters, and a longer value would fail the write"
        )
    return None


def _generated(inspector: Inspector, table: sa.Table, column: dict[str, Any]) -> bool | None:
    """Whether the database fills the column (identity, autoincrement); None: cannot tell."""
    dialect = inspector.dialect.name
    if dialect == "sqlite":
        # Only a lone INTEGER primary key is an alias of the rowid, which SQLite generates.
        key = inspector.get_pk_constraint(table.name, schema=table.schema)["constrained_columns"]
        return isinstance(column["type"], sa.INTEGER) and key == [column["name"]]
    if column.get("identity") is not None or "nextval(" in str(column.get("default") or ""):
        return True
    if dialect in ("postgresql", "mssql"):
        return column.get("autoincrement") is True
    return None


def _table_check(
    inspector: Inspector, table: sa.Table, expected: dict[str, _Expected], role: str
) -> list[Finding]:
    actual = reflected_columns(inspector, table)
    if actual is None:
        fix = (
            f"correct personify.tables.{role} in the config (SCHEMA.NAME if not in the login's "
            "default schema), or grant the login access to it"
        )
        return [Finding(FAIL, TABLE, f"{role} table {table.fullname} does not exist", fix)]
    problems = []
    for column, wanted in expected.items():
        if column.upper() not in actual:
            absent = f"{table.fullname} has no column {column} (for {wanted.what})"
            fix = (
                f"map the field to the site's column in personify.columns.{role}, or to null if "
                "the site has none (constants: correct personify.constants)"
            )
            problems.append(Finding(FAIL, TABLE, absent, fix))
        elif found := _type_problem(column, actual[column.upper()], wanted):
            severity, problem = found
            fix = (
                f"map {wanted.what} to a column of a compatible type in personify.columns.{role}, "
                "or ask the DBA to widen the column"
            )
            problems.append(Finding(severity, TABLE, f"{table.fullname}: {problem}", fix))
    uses = f"has the {len(expected)} columns subsync uses, of compatible types"
    return problems or [Finding(OK, TABLE, f"{role} table {table.fullname} {uses}")]


def _identity_check(inspector: Inspector, dialect: str, activity: TableShape) -> list[Finding]:
    table = activity.table
    actual = reflected_columns(inspector, table)
    column = activity.columns["id"]
    if actual is None or column.upper() not in actual:
        return []
    generated = _generated(inspector, table, actual[column.upper()])
    if generated is None:
        unknown = f"cannot tell on {dialect} whether {table.fullname}.{column} is an identity"
        fix = "make sure the database generates it: subsync reads it, never writes it"
        return [Finding(WARN, TABLE, unknown, fix)]
    if not generated:
        why = "subsync inserts activity rows without it and reads the generated id"
        not_identity = f"{table.fullname}.{column} (field id) is not an identity / autoincrement"
        fix = "map the field id (personify.columns.activity) to the table's identity column"
        return [Finding(FAIL, TABLE, f"{not_identity} column: {why}", fix)]
    return [Finding(OK, TABLE, f"{table.fullname}.{column} is generated by the database")]


def _written(config: SubsyncConfig, tables: PersonifyTables) -> list[tuple[str, TableShape]]:
    writes = {"opt_in": config.personify.write_opt_in, "activity": config.personify.write_activity}
    return [(role, getattr(tables, role)) for role, on in writes.items() if on]


def _check_tables(
    conn: Connection, config: SubsyncConfig, tables: PersonifyTables
) -> list[Finding]:
    inspector = sa.inspect(conn)
    customer = {
        "MASTER_CUSTOMER_ID": _Expected("member ids", TEXT),
        "SUB_CUSTOMER_ID": _Expected("sub customer ids", INTEGER),
    }
    findings = _table_check(inspector, tables.customer, customer, "customer")
    for role, shape in _written(config, tables):
        expected = _expectations(shape, known_lengths(config))
        findings += _table_check(inspector, shape.table, expected, role)
        if role == "activity":
            findings += _identity_check(inspector, conn.dialect.name, shape)
    return findings


# --- 2. NOT NULL columns subsync must fill ------------------------------------------------------


def _check_not_null(
    conn: Connection, config: SubsyncConfig, tables: PersonifyTables
) -> list[Finding]:
    inspector = sa.inspect(conn)
    findings = []
    for role, shape in _written(config, tables):
        table = shape.table
        actual = reflected_columns(inspector, table)
        if actual is None:
            continue  # reported by the table check
        field_of = {column.upper(): field for field, column in shape.columns.items()}
        constants = {column.upper() for column in shape.constants}
        required = [
            column
            for column in actual.values()
            if not (
                column["nullable"]
                or column.get("default") is not None
                or column.get("computed")
                or _generated(inspector, table, column)
            )
        ]
        problems = []
        for column in required:
            name = column["name"]
            field = field_of.get(name.upper())
            if field in NULL_ON_INSERT[role]:
                problem = f", but field {field} mapped to it is {NULL_ON_INSERT[role][field]}"
                fix = (
                    f"ask the DBA for a default or NULL on the column, or map {field} to null in "
                    f"personify.columns.{role} and fill the column from personify.constants.{role}"
                )
            elif field is None and name.upper() not in constants:
                problem = " and subsync writes nothing into it"
                fix = (
                    f"add it to personify.constants.{role} ({name}: <value>), or map a field to "
                    f"it in personify.columns.{role}"
                )
            else:
                continue
            message = f"{table.fullname}.{name} is NOT NULL without a default{problem}"
            problems.append(Finding(FAIL, NOT_NULL, message, fix))
        filled = f"all {len(required)} NOT NULL columns without a default are filled on insert"
        findings += problems or [Finding(OK, NOT_NULL, f"{table.fullname}: {filled}")]
    return findings


# --- 3. grants ----------------------------------------------------------------------------------


def _check_grants(
    conn: Connection, config: SubsyncConfig, tables: PersonifyTables
) -> list[Finding]:
    if conn.dialect.name == "sqlite":
        return [Finding(OK, GRANT, "SQLite has no grants: any process that opens the file writes")]
    queries = GRANT_QUERIES.get(conn.dialect.name)
    if queries is None:
        needed = "; ".join(f"{', '.join(p)} on {t}" for t, p in NEEDED_PRIVILEGES.items())
        fix = f"make sure the login holds: {needed}"
        return [Finding(WARN, GRANT, f"cannot check grants on {conn.dialect.name}", fix)]
    user = str(conn.execute(sa.text(queries.user)).scalar())
    inspector = sa.inspect(conn)
    written = {role for role, _ in _written(config, tables)}
    held = sa.text(queries.table)
    findings = []
    for role, table in tables.by_role().items():
        if not inspector.has_table(table.name, schema=table.schema):
            continue  # reported by the table (or code) check
        # Every table but those written is only read.
        privileges = NEEDED_PRIVILEGES[role] if role in written else ("SELECT",)
        name = conn.dialect.identifier_preparer.format_table(table)
        missing = [
            privilege
            for privilege in privileges
            if not conn.execute(held, {"table": name, "privilege": privilege}).scalar()
        ]
        if missing:
            lacks = f"{', '.join(missing)} on {table.fullname}"
            fix = f"GRANT {', '.join(missing)} ON {name} TO {user}"
            findings.append(Finding(FAIL, GRANT, f"login {user!r} lacks {lacks}", fix))
        else:
            holds = f"{', '.join(privileges)} on {name}"
            findings.append(Finding(OK, GRANT, f"login {user!r} holds {holds}"))
    if queries.temporary and not conn.execute(sa.text(queries.temporary)).scalar():
        lacks = "lacks TEMPORARY on the database"
        why = "the writer stages each day's rows in temporary tables"
        fix = f"GRANT TEMPORARY ON DATABASE <database> TO {user}"
        findings.append(Finding(FAIL, GRANT, f"login {user!r} {lacks}: {why}", fix))
    return findings


# --- 4. interest-area and activity codes --------------------------------------------------------


@dataclass(frozen=True)
class _Code:
    """A code subsync writes: a key (CODE,) belongs in APP_CODE, (CODE, SUBCODE) in APP_SUBCODE."""

    code_type: str
    key: tuple[str, ...]
    what: str


_CODE_FIXES = {
    INTEREST_AREA_TYPE: (
        "add it in Personify (system types and codes), or correct opt_in_code / opt_in_subcode "
        "of that interest_areas entry; until then Personify's screens do not show its opt-ins"
    ),
    ACTIVITY_TYPE: "add it in Personify, or correct personify.activity_codes",
}


def wanted_codes(config: SubsyncConfig) -> list[_Code]:
    """The codes this config writes, which Personify should define (the sandbox does)."""
    codes = []
    for area in config.interest_areas:
        scope = _scope_of(area.scope_type, area.scope_id)
        code, subcode = area.opt_in_code, area.subcode
        for key, kind in (((code,), "code"), ((code, subcode), "code/subcode")):
            what = f"interest-area {kind} {'/'.join(key)} ({scope})"
            codes.append(_Code(INTEREST_AREA_TYPE, key, what))
    activity = config.personify.activity_codes
    for code in dict.fromkeys((activity.subscribe, activity.unsubscribe)):
        codes.append(_Code(ACTIVITY_TYPE, (code,), f"activity code {code}"))
    return codes


def _known_codes(conn: Connection, table: sa.Table, code_type: str) -> set[tuple[str, ...]]:
    """(CODE,) or (CODE, SUBCODE) of every CUS code of `code_type` in APP_CODE / APP_SUBCODE."""
    columns = [table.c[name] for name in ("CODE", "SUBCODE") if name in table.c]
    query = sa.select(*columns).where(
        table.c["SUBSYSTEM"] == SUBSYSTEM, table.c["TYPE"] == code_type
    )
    return {tuple(str(value).strip() for value in row) for row in conn.execute(query)}


def _check_codes(conn: Connection, config: SubsyncConfig, tables: PersonifyTables) -> list[Finding]:
    inspector = sa.inspect(conn)
    findings = []
    present = set()
    for table in (tables.app_code, tables.app_subcode):
        if inspector.has_table(table.name, schema=table.schema):
            present.add(table.name)
            continue
        unchecked = f"{table.fullname} not found: the codes it should define are not checked"
        fix = "correct personify.tables.app_code / app_subcode if the site names them otherwise"
        findings.append(Finding(WARN, CODE, unchecked, fix))
    known = cache(partial(_known_codes, conn))
    for code in wanted_codes(config):
        table = tables.app_code if len(code.key) == 1 else tables.app_subcode
        if table.name not in present:
            continue
        if code.key not in known(table, code.code_type):
            where = f"{table.fullname} (SUBSYSTEM='{SUBSYSTEM}', TYPE='{code.code_type}')"
            fix = _CODE_FIXES[code.code_type]
            findings.append(Finding(WARN, CODE, f"{code.what} is not in {where}", fix))
    areas = f"the codes and subcodes of the {len(config.interest_areas)} interest areas"
    return findings or [Finding(OK, CODE, f"{areas} and the activity codes exist in Personify")]


def _scope_of(scope_type: str, scope_id: str) -> str:
    return f"Real Magnet {scope_type} {scope_id}"


# --- 5. member ids ------------------------------------------------------------------------------


def _check_member_ids(
    conn: Connection, config: SubsyncConfig, tables: PersonifyTables
) -> list[Finding]:
    customer = tables.customer
    if not sa.inspect(conn).has_table(customer.name, schema=customer.schema):
        return []  # reported by the table check
    query = sa.select(customer.c.MASTER_CUSTOMER_ID).limit(CUSTOMER_SAMPLE)
    ids = pd.Series([str(row[0]) for row in conn.execute(query)], dtype="str")
    pattern = config.member_id_pattern
    if ids.empty:
        empty = f"{customer.fullname} is empty: every event would be rejected as unknown_member"
        fix = "point PERSONIFY_DB_URL at the Personify database that holds the members"
        return [Finding(WARN, MEMBER_ID, empty, fix)]
    bad = ids[~split_member_ids(ids, pattern)["well_formed"]]
    if bad.empty:
        match = f"all {len(ids)} sampled {customer.fullname} ids match member_id_pattern {pattern}"
        return [Finding(OK, MEMBER_ID, match)]
    examples = ", ".join(repr(value) for value in bad.head(EXAMPLES))
    mismatch = (
        f"{len(bad)} of {len(ids)} sampled {customer.fullname} ids do not match member_id_pattern "
        f"{pattern} (e.g. {examples}): their events would be rejected as invalid_member_id"
    )
    fix = "widen member_id_pattern in the config to the site's MASTER_CUSTOMER_ID format"
    return [Finding(WARN, MEMBER_ID, mismatch, fix)]


# --- 6. Real Magnet scopes in the landing folder ------------------------------------------------


def check_landing(config: SubsyncConfig, landing: Path) -> list[Finding]:
    """One warning per Real Magnet scope in the landed files that no interest area maps."""
    try:
        files = list_landed_files(landing)
    except FileNotFoundError as error:
        return [Finding(WARN, SCOPE, str(error))]
    findings = []
    events: Counter[tuple[str, str]] = Counter()
    names: dict[tuple[str, str], str] = {}
    for path in files:
        read = read_tracking_file(path, config.columns, config.max_file_mb)
        if read.status != FILE_OK:
            unreadable = f"{path.name} cannot be read ({read.status}): {read.error}"
            fix = "the daily sync rejects it as a whole; replace it with a good export"
            findings.append(Finding(WARN, SCOPE, unreadable, fix))
            continue
        rows = read.rows
        scope = [rows["scope_type"].str.strip().str.lower(), rows["scope_id"].str.strip()]
        for (scope_type, scope_id), named in rows["scope_name"].str.strip().groupby(scope):
            key = (str(scope_type), str(scope_id))
            events[key] += len(named)
            named = named[named.ne("")]
            if not named.empty:
                names.setdefault(key, str(named.iloc[0]))
    mapped = config.area_map()
    unmapped = [
        key
        for key in sorted(events)
        if key not in mapped and key[0] in SCOPE_TYPES and key[1] != ""
    ]
    for scope_type, scope_id in unmapped:
        key = (scope_type, scope_id)
        about = f"{names.get(key, 'no scope_name')!r}, {events[key]} events in {landing}"
        message = (
            f"{_scope_of(scope_type, scope_id)} ({about}) maps to no interest area: its events "
            "write activity rows only, never CUS_OPT_IN"
        )
        area = f'{{scope_type: {scope_type}, scope_id: "{scope_id}", opt_in_code: <CODE>}}'
        findings.append(Finding(WARN, SCOPE, message, f"add to interest_areas: - {area}"))
    if not unmapped:
        scopes = f"every Real Magnet scope in the {len(files)} file(s) in {landing}"
        findings.append(Finding(OK, SCOPE, f"{scopes} maps to an interest area"))
    return findings
