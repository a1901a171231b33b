"""A sandbox Personify with demo customers, a demo config and demo tracking files.

This is the only code in subsync that creates or drops Personify tables; it exists so the demo
and the tests run against real databases without touching production.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
import yaml

from subsync_pipeline.core.config import SOURCES, PersonifyConfig, SubsyncConfig, parse_config
from subsync_pipeline.core.doctor import wanted_codes
from subsync_pipeline.core.personify.tables import (
    SUBSYSTEM,
    personify_tables,
)
from subsync_pipeline.core.sql import insert_frame
from subsync_pipeline.core.validation import SOURCE_ALIASES

DDL_FILES: dict[str, str] = {
    dialect: f"personify_{dialect}.sql" for dialect in ("sqlite", "postgresql", "mssql")
}
CUSTOMER_COLUMNS = [
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "CUSTOMER_STATUS_CODE",
    "PRIMARY_EMAIL_ADDRESS",
]
# The header order of Real Magnet's export as SPEC §2 lists it; readers match headers by name.
DEMO_HEADERS: tuple[str, ...] = (
    "event_id",
    "email",
    "custom_member_id",
    "event_type",
    "scope_type",
    "scope_id",
    "scope_name",
    "source",
    "force_optin",
    "occurred_at",
    "timestamp_subscribed",
)
DEMO_TIMEZONE = "America/New_York"
MIN_DEMO_CUSTOMERS = 10

DEMO_CONFIG_YAML = """\
# subsync demo config (SPEC section 7). Copy and adapt for a real deployment.
timezone: America/New_York
start_date: "2026-01-01"
schedule_time: "02:00"
member_id_pattern: "^[0-9]{1,24}$"
tracking: {subscribe_enabled: true, unsubscribe_enabled: true}
interest_areas:               # Real Magnet scope -> Personify interest area code and subcode
  - {scope_type: group, scope_id: "1201", opt_in_code: NEWSLETTER, opt_in_subcode: INSIDER}
  - {scope_type: group, scope_id: "1202", opt_in_code: ADVOCACY}    # subcode: the code
  - {scope_type: message_category, scope_id: "77", opt_in_code: EVENTS}
source_ranks: {preference_centre: 1, api: 2, in_app: 2, csv_upload: 2, form: 3, importer: 4,
  third_party: 5}
columns: {}
personify:
  write_opt_in: true
  write_activity: true
  activity_codes: {subscribe: RM_SUBSCRIBE, unsubscribe: RM_UNSUBSCRIBE}
  tables: {customer: CUSTOMER, opt_in: CUS_OPT_IN, activity: CUS_ACTIVITY}
  option_type: INTEREST_AREA
  operator: SUBSYNC           # ADDOPER / MODOPER of subsync's writes
  opt_out_reason: null        # a CUS OPT_OUT_REASON code, written while unsubscribed
  columns: {opt_in: {}, activity: {}}     # field -> column (or null) where a site differs
  constants: {opt_in: {}, activity: {}}   # COLUMN -> value for NOT NULL columns without a field
quality: {min_member_match_rate: 0.95, max_reject_rate: 0.05}
"""

_Scope = tuple[str, str, str]  # scope_type, scope_id, scope_name
_NEWSLETTER = ("group", "1201", "Weekly Newsletter")
_ADVOCACY = ("group", "1202", "Advocacy Alerts")
_EVENTS = ("message_category", "77", "Events and Conferences")
_UNMAPPED = ("group", "9999", "Chapter News (not mapped)")
_DEMO_SCOPES = [_NEWSLETTER, _ADVOCACY, _EVENTS, _UNMAPPED]
# Every known source, each followed by its aliases.
_DEMO_SOURCES = [
    name
    for source in SOURCES
    for name in (source, *[alias for alias, of in SOURCE_ALIASES.items() if of == source])
]
_RANDOM_EVENTS_PER_DAY = 80
_RANDOM_POOL_SIZE = 72


@dataclass(frozen=True)
class _Step:
    source: str
    event_type: str
    forced: bool = False
    first_subscribed: bool | None = False  # None: drawn at random for a subscribe


# SPEC §4's worked examples, one member each, one step per demo day, so the report shows every
# decision kind on data a steward can follow by hand.
_STORIES: list[tuple[_Scope, _Step, _Step, _Step]] = [
    (
        _NEWSLETTER,
        _Step("form", "subscribe", first_subscribed=True),
        _Step("third_party", "unsubscribe"),  # blocked_by_precedence
        _Step("unsubscribe_link", "unsubscribe"),  # applied
    ),
    (
        _ADVOCACY,
        _Step("subscription_page", "unsubscribe"),
        _Step("api", "subscribe", first_subscribed=True),  # blocked_by_precedence
        _Step("subscription_page", "subscribe", first_subscribed=True),  # applied
    ),
    (
        _EVENTS,
        _Step("api", "subscribe", first_subscribed=True),
        _Step("csv_upload", "unsubscribe"),  # applied: equal weight
        _Step("manual", "subscribe"),  # applied: in_app, equal weight
    ),
    (
        _NEWSLETTER,
        _Step("third_party", "unsubscribe", forced=True),
        _Step("preference_centre", "subscribe"),  # blocked_by_forced
        _Step("form", "subscribe", forced=True, first_subscribed=True),  # applied
    ),
    (
        _ADVOCACY,
        _Step("importer", "subscribe"),  # no timestamp_subscribed: never a first_subscribe
        _Step("api", "subscribe", first_subscribed=True),  # no_change
        _Step("api", "unsubscribe"),  # applied: first_unsubscribe
    ),
]

_TABLE_OF_STATEMENT = re.compile(r"\b(?:TABLE|ON)\s+(?:dbo\.)?\"?(\w+)\"?", re.IGNORECASE)


def ddl_statements(dialect: str) -> list[str]:
    """The sandbox DDL of a dialect, one statement per item."""
    if dialect not in DDL_FILES:
        raise ValueError(f"no sandbox DDL for {dialect!r}; known: {sorted(DDL_FILES)}")
    text = resources.files("subsync_pipeline").joinpath("sql", DDL_FILES[dialect]).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    statements = ("\n".join(lines) + "\n").split(";\n")
    return [statement.strip() for statement in statements if statement.strip()]


def statement_table(statement: str) -> str:
    """The table a sandbox DDL statement creates or indexes."""
    found = _TABLE_OF_STATEMENT.search(statement)
    if found is None:
        raise ValueError(f"sandbox DDL statement names no table: {statement[:60]!r}")
    return found.group(1)


def demo_customers(n: int = 200) -> pd.DataFrame:
    """Deterministic demo members; every tenth also has a sub customer 1, to exercise MASTER|SUB."""
    masters = [f"{100000 + i:09d}" for i in range(1, n + 1)]
    keys = [(m, 0) for m in masters] + [(m, 1) for m in masters[::10]]
    frame = pd.DataFrame(keys, columns=["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"])
    frame["CUSTOMER_STATUS_CODE"] = "ACTIVE"
    frame["PRIMARY_EMAIL_ADDRESS"] = [
        f"member{int(m)}@example.org" if s == 0 else f"member{int(m)}.{s}@example.org"
        for m, s in keys
    ]
    return frame


def demo_codes(config: SubsyncConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """APP_CODE and APP_SUBCODE rows of the codes `subsync doctor` looks for under `config`."""
    rows = [(code.code_type, *code.key) for code in wanted_codes(config)]
    app_code = pd.DataFrame([r for r in rows if len(r) == 2], columns=["TYPE", "CODE"])
    app_subcode = pd.DataFrame(
        [r for r in rows if len(r) == 3], columns=["TYPE", "CODE", "SUBCODE"]
    )
    return app_code.drop_duplicates(), app_subcode.drop_duplicates()


def create_sandbox_personify(
    url: str, customers: pd.DataFrame | None = None, reset: bool = False
) -> int:
    """Create whichever Personify tables are missing at `url` and add the customers and codes
    (those of the demo config) not yet there.

    Safe to re-run: existing tables and rows are left alone, so a second run returns 0. With
    reset the tables are dropped first. Returns how many customers were added.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed)
    tables = personify_tables(PersonifyConfig())
    every = list(tables.by_role().values())
    customers = demo_customers() if customers is None else customers
    app_code, app_subcode = demo_codes(parse_config(yaml.safe_load(DEMO_CONFIG_YAML)))
    try:
        with engine.begin() as conn:
            if reset:
                tables.customer.metadata.drop_all(conn)
            inspector = sa.inspect(conn)
            missing = {table.name for table in every if not inspector.has_table(table.name)}
            _refuse_outdated(inspector, [t for t in every if t.name not in missing], url)
            for statement in ddl_statements(engine.dialect.name):
                if statement_table(statement) in missing:
                    conn.exec_driver_sql(statement)
            _add_new(conn, tables.app_code, app_code.assign(SUBSYSTEM=SUBSYSTEM))
            _add_new(conn, tables.app_subcode, app_subcode.assign(SUBSYSTEM=SUBSYSTEM))
            return _add_new(
                conn,
                tables.customer,
                customers[CUSTOMER_COLUMNS].astype({"SUB_CUSTOMER_ID": "int64"}),
                ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"],
            )
    finally:
        engine.dispose()


class SandboxOutdatedError(RuntimeError):
    """A sandbox made by an earlier subsync, in a shape this version does not write."""


def _refuse_outdated(inspector: sa.Inspector, tables: list[sa.Table], url: str) -> None:
    stale = []
    for table in tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        lacking = [column.name for column in table.columns if column.name not in present]
        if lacking:
            stale.append(f"{table.name} lacks {', '.join(lacking)}")
    if stale:
        raise SandboxOutdatedError(
            f"the sandbox Personify at {sa.make_url(url).render_as_string(hide_password=True)} was "
            f"made by an earlier subsync ({'; '.join(stale)}). Recreate it with "
            "`subsync sandbox --reset` (or `make clean`, then `make demo`)."
        )


def _add_new(
    conn: sa.Connection, table: sa.Table, rows: pd.DataFrame, keys: list[str] | None = None
) -> int:
    """Insert the `rows` whose `keys` (default: all given columns) the table does not hold yet;
    the standard fields of a sandbox code row are filled as Personify's screens would."""
    keys = keys or list(rows.columns)
    result = conn.execute(sa.select(*[sa.column(k) for k in keys]).select_from(table))
    existing = pd.DataFrame(result.fetchall(), columns=keys).astype(rows[keys].dtypes.to_dict())
    merged = rows.merge(existing, how="left", on=keys, indicator=True)
    new = merged.loc[merged["_merge"].eq("left_only"), list(rows.columns)]
    if table.name != "CUSTOMER":
        new = new.assign(
            ACTIVE_FLAG="Y",
            ADDOPER="SANDBOX",
            ADDDATE=datetime.now(UTC).replace(tzinfo=None),
            CONCURRENCY_ID=0,
        )
    # Reflected, as subsync's table objects lack the standard fields filled above.
    target = sa.Table(table.name, sa.MetaData(), schema=table.schema, autoload_with=conn)
    return insert_frame(conn, target, new)


def write_demo_config(path: Path) -> None:
    """Write DEMO_CONFIG_YAML, so a first run has a config file to read and copy from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_CONFIG_YAML, encoding="utf-8")


def demo_days(today: date, n: int = 3) -> list[date]:
    """The n days before `today`, oldest first: complete days, as the daily schedule sees them."""
    return [today - timedelta(days=k) for k in range(n, 0, -1)]


class _DayWriter:
    """Builds one day's rows; event ids are numbered per day so they are stable across re-runs."""

    def __init__(self, day: date, emails: dict[tuple[str, int], str], rng: random.Random) -> None:
        self.day = day
        self.emails = emails
        self.rng = rng
        self.rows: list[dict[str, str]] = []
        tz = ZoneInfo(DEMO_TIMEZONE)
        # Instants are drawn in UTC so days of a DST change (23 or 25 hours) get real local times.
        self.start = datetime.combine(day, time.min, tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time.min, tz).astimezone(UTC)
        self.seconds = int((end - self.start).total_seconds())

    def add(
        self, member_id: str, email: str, scope: _Scope, step: _Step, at_second: int | None = None
    ) -> None:
        rng = self.rng
        second = rng.randrange(60, self.seconds - 60) if at_second is None else at_second
        instant = self.start + timedelta(seconds=second)
        local = instant.astimezone(ZoneInfo(DEMO_TIMEZONE))
        occurred = (
            local.replace(tzinfo=None).isoformat(timespec="seconds"),
            instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
            local.isoformat(timespec="seconds"),
        )[rng.randrange(3)]
        first_subscribed = step.first_subscribed
        if first_subscribed is None:
            first_subscribed = step.event_type == "subscribe" and rng.random() < 0.5
        subscribed_at = instant - timedelta(days=rng.randrange(1, 400))
        self.rows.append(
            {
                "event_id": f"RM-{self.day:%Y%m%d}-{len(self.rows) + 1:04d}",
                "email": email,
                "custom_member_id": member_id,
                "event_type": step.event_type,
                "scope_type": scope[0],
                "scope_id": scope[1],
                "scope_name": scope[2],
                "source": step.source,
                "force_optin": "true" if step.forced else rng.choice(["false", "", "0", "no"]),
                "occurred_at": occurred,
                "timestamp_subscribed": (
                    subscribed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if first_subscribed else ""
                ),
            }
        )

    def add_member(self, key: tuple[str, int], source: str, forced: bool = False) -> None:
        master, sub = key
        member_id = master if sub == 0 else f"{master}|{sub}"
        event_type = self.rng.choice(["subscribe", "subscribe", "unsubscribe"])
        if source == "unsubscribe_link":
            event_type = "unsubscribe"
        scope = self.rng.choice(_DEMO_SCOPES)
        self.add(member_id, self.emails[key], scope, _Step(source, event_type, forced, None))


def _demo_rows(
    day_index: int, day: date, customers: pd.DataFrame, rng: random.Random
) -> list[dict[str, str]]:
    emails = {
        (str(master), int(sub)): str(email)
        for master, sub, email in customers[
            ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", "PRIMARY_EMAIL_ADDRESS"]
        ].itertuples(index=False)
    }
    keys = sorted(emails)
    story_keys = [key for key in keys if key[1] == 0][1 : 1 + len(_STORIES)]
    pool = [key for key in keys if key not in story_keys][:_RANDOM_POOL_SIZE]
    out = _DayWriter(day, emails, rng)

    for source in _DEMO_SOURCES:  # every source and alias on every day
        out.add_member(rng.choice(pool), source)
    for _ in range(_RANDOM_EVENTS_PER_DAY):
        out.add_member(rng.choice(pool), rng.choice(_DEMO_SOURCES), forced=rng.random() < 0.04)
    out.add_member(rng.choice(pool), "third_party", forced=True)
    sub_keys = [key for key in pool if key[1] != 0]
    if sub_keys:
        out.add_member(rng.choice(sub_keys), "preference_centre")

    for index, (key, (scope, *steps)) in enumerate(zip(story_keys, _STORIES, strict=False)):
        if day_index < len(steps):
            out.add(key[0], emails[key], scope, steps[day_index], at_second=9 * 3600 + 60 * index)

    master, _ = pool[0]
    reject_cases = [
        ("900000001", "not.a.member@example.net", "api"),  # well-formed, absent: unknown_member
        (f"{master}|7", "member.sub7@example.org", "api"),  # unknown sub customer
        ("ABC-17", "letters@example.org", "form"),  # invalid_member_id
        ("", "blank.id@example.org", "unsubscribe_link"),  # missing_member_id
        (f"{master}|x", "bad.sub@example.org", "api"),  # invalid_member_id (sub id)
        (master, emails[pool[0]], "carrier_pigeon"),  # invalid_source
    ]
    for member_id, email, source in reject_cases:
        out.add(member_id, email, _NEWSLETTER, _Step(source, "unsubscribe"))
    # Activity only, no opt-in.
    out.add(master, emails[pool[0]], _UNMAPPED, _Step("form", "subscribe", first_subscribed=None))
    out.rows.append(dict(out.rows[0]))  # an exact repeat, de-duplicated silently
    return out.rows


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(DEMO_HEADERS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_demo_tracking_files(
    landing_dir: Path, days: list[date], customers: pd.DataFrame, seed: int = 7
) -> list[Path]:
    """One CSV per day, plus one gzip file of late events spanning the last two days.

    Deterministic for the same days, customers and seed, so re-running the demo rewrites the same
    bytes and the same event ids, as a re-delivered Real Magnet export would.
    """
    if len(customers) < MIN_DEMO_CUSTOMERS:
        raise ValueError(f"demo tracking files need at least {MIN_DEMO_CUSTOMERS} customers")
    rng = random.Random(seed)
    landing_dir.mkdir(parents=True, exist_ok=True)
    each_day = [_demo_rows(index, day, customers, rng) for index, day in enumerate(days)]
    written = [landing_dir / f"rm_tracking_{day.isoformat()}.csv" for day in days]
    for path, rows in zip(written, each_day, strict=True):
        path.write_text(_csv_text(rows), encoding="utf-8")
    if len(days) >= 2:
        # Late arrivals: events of each day re-sent by a later export as API changes.
        late = [
            {**row, "event_id": f"{row['event_id']}-L", "source": "api"}
            for rows in each_day[-2:]
            for row in rows[:10]
        ]
        path = landing_dir / f"rm_tracking_late_{days[-1].isoformat()}.csv.gz"
        # mtime=0 keeps the gzip header, and so the file's hash, the same on every re-run.
        path.write_bytes(gzip.compress(_csv_text(late).encode("utf-8"), mtime=0))
        written.append(path)
    return written
