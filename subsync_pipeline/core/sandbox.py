"""A sandbox Personify with demo customers, a demo config and demo tracking files.

This is the only code in subsync that creates or drops Personify tables; it exists so the demo
and the tests run against real databases without touching production.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from subsync_pipeline.core.config import PersonifyTables as TableNames
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.sql import insert_frame
from subsync_pipeline.core.tracking_log import ALL_COLUMNS

DDL_FILES: dict[str, str] = {
    "sqlite": "personify_sqlite.sql",
    "postgresql": "personify_postgresql.sql",
    "mssql": "personify_mssql.sql",
}
CUSTOMER_COLUMNS = [
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "CUSTOMER_STATUS_CODE",
    "PRIMARY_EMAIL_ADDRESS",
]

DEMO_CONFIG_YAML = """\
# subsync demo config (SPEC section 7). Copy and adapt for a real deployment.
timezone: America/New_York
start_date: "2026-01-01"
schedule_time: "02:00"
member_id_pattern: "^[0-9]{1,24}$"
tracking: {subscribe_enabled: true, unsubscribe_enabled: true}
interest_areas:               # Real Magnet scope -> Personify OPT_IN_CODE ("Manage Unsubscribe")
  - {scope_type: group, scope_id: "1201", opt_in_code: NEWSLETTER}
  - {scope_type: group, scope_id: "1202", opt_in_code: ADVOCACY}
  - {scope_type: message_category, scope_id: "77", opt_in_code: EVENTS}
source_ranks: {preference_centre: 1, api: 2, in_app: 2, csv_upload: 2, form: 3, importer: 4,
  third_party: 5}
columns: {}
personify:
  write_opt_in: true
  write_activity: true
  activity_codes: {subscribe: RM_SUBSCRIBE, unsubscribe: RM_UNSUBSCRIBE}
  tables: {customer: CUSTOMER, opt_in: CUS_OPT_IN, activity: CUS_ACTIVITY}
quality: {min_member_match_rate: 0.95, max_reject_rate: 0.05}
"""

_DEMO_SCOPES = [
    ("group", "1201", "Weekly Newsletter"),
    ("group", "1202", "Advocacy Alerts"),
    ("message_category", "77", "Events and Conferences"),
    ("group", "9999", "Chapter News (not mapped)"),
]
_DEMO_SOURCES = [
    "preference_centre",
    "subscription_page",
    "unsubscribe_link",
    "api",
    "in_app",
    "user",
    "manual",
    "csv_upload",
    "form",
    "importer",
    "third_party",
]


def ddl_statements(dialect: str) -> list[str]:
    """The sandbox DDL of a dialect, one statement per item."""
    if dialect not in DDL_FILES:
        raise ValueError(f"no sandbox DDL for {dialect!r}; known: {sorted(DDL_FILES)}")
    text = resources.files("subsync_pipeline").joinpath("sql", DDL_FILES[dialect]).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def demo_customers(n: int = 200) -> pd.DataFrame:
    """Deterministic demo members; every tenth also has a sub customer 1."""
    masters = [f"{100000 + i:09d}" for i in range(1, n + 1)]
    rows = [(m, 0) for m in masters] + [(m, 1) for m in masters[::10]]
    frame = pd.DataFrame(rows, columns=["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"])
    frame["CUSTOMER_STATUS_CODE"] = "ACTIVE"
    frame["PRIMARY_EMAIL_ADDRESS"] = [
        f"member{int(m)}.{s}@example.org"
        for m, s in zip(masters + masters[::10], frame["SUB_CUSTOMER_ID"], strict=True)
    ]
    return frame


def create_sandbox_personify(
    url: str, customers: pd.DataFrame | None = None, reset: bool = False
) -> int:
    """Create the Personify tables at `url` if absent and add the customers not yet there.

    Returns how many customers were added. With reset the three tables are dropped first.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed)
    tables = personify_tables(TableNames())
    customers = demo_customers() if customers is None else customers
    try:
        with engine.begin() as conn:
            if reset:
                for table in (tables.activity, tables.opt_in, tables.customer):
                    table.drop(conn, checkfirst=True)
            if not sa.inspect(conn).has_table(tables.customer.name):
                for statement in ddl_statements(engine.dialect.name):
                    conn.exec_driver_sql(statement)
            existing = pd.DataFrame(
                conn.execute(
                    sa.select(
                        tables.customer.c.MASTER_CUSTOMER_ID, tables.customer.c.SUB_CUSTOMER_ID
                    )
                ).fetchall(),
                columns=["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"],
            )
            new = customers[CUSTOMER_COLUMNS].merge(
                existing.astype({"SUB_CUSTOMER_ID": "int64"}),
                how="left",
                on=["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"],
                indicator=True,
            )
            new = new.loc[new["_merge"].eq("left_only"), CUSTOMER_COLUMNS]
            return insert_frame(conn, tables.customer, new)
    finally:
        engine.dispose()


def write_demo_config(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_CONFIG_YAML, encoding="utf-8")


def demo_days(today: date, n: int = 3) -> list[date]:
    """The n days before `today`, oldest first."""
    return [today - timedelta(days=k) for k in range(n, 0, -1)]


def _demo_rows(day: date, customers: pd.DataFrame, rng: random.Random) -> list[dict[str, str]]:
    tz = ZoneInfo("America/New_York")
    keys = list(zip(customers["MASTER_CUSTOMER_ID"], customers["SUB_CUSTOMER_ID"], strict=True))[
        :60
    ]
    rows: list[dict[str, str]] = []

    def add(member_id: str, **overrides: str) -> None:
        scope_type, scope_id, scope_name = rng.choice(_DEMO_SCOPES)
        local = datetime.combine(day, datetime.min.time(), tz) + timedelta(
            seconds=rng.randrange(60, 86_000)
        )
        style = rng.randrange(3)
        if style == 0:
            occurred = local.replace(tzinfo=None).isoformat(timespec="seconds")
        elif style == 1:
            occurred = local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            occurred = local.isoformat(timespec="seconds")
        event_type = rng.choice(["subscribe", "subscribe", "unsubscribe"])
        row = {
            "event_id": f"RM-{day:%Y%m%d}-{len(rows) + 1:04d}",
            "email": f"member{member_id.split('|')[0].lstrip('0') or '0'}@example.org",
            "custom_member_id": member_id,
            "event_type": event_type,
            "scope_type": scope_type,
            "scope_id": scope_id,
            "scope_name": scope_name,
            "source": rng.choice(_DEMO_SOURCES),
            "force_optin": "true" if rng.random() < 0.05 else rng.choice(["false", "", "0"]),
            "occurred_at": occurred,
            "timestamp_subscribed": (
                (local - timedelta(days=rng.randrange(1, 400))).strftime("%Y-%m-%dT%H:%M:%SZ")
                if event_type == "subscribe" and rng.random() < 0.5
                else ""
            ),
        }
        row.update(overrides)
        rows.append(row)

    for _ in range(90):
        master, sub = rng.choice(keys)
        add(master if sub == 0 else f"{master}|{sub}")
    add("900000001")  # a well-formed id that is not in CUSTOMER: unknown_member
    add("ABC-17")  # malformed: invalid_member_id
    add("")  # blank: missing_member_id
    add(f"{keys[0][0]}|x")  # bad sub id: invalid_member_id
    add(keys[1][0], source="carrier_pigeon")
    add(keys[2][0], force_optin="true", source="third_party", event_type="unsubscribe")
    rows.append(dict(rows[0]))  # an exact repeat, de-duplicated silently
    return rows


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ALL_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_demo_tracking_files(
    landing_dir: Path, days: list[date], customers: pd.DataFrame, seed: int = 7
) -> list[Path]:
    """One CSV per day, plus a gzip file holding late events of the last two days."""
    rng = random.Random(seed)
    landing_dir.mkdir(parents=True, exist_ok=True)
    written = []
    late: list[dict[str, str]] = []
    for day in days:
        rows = _demo_rows(day, customers, rng)
        late.extend(
            {**row, "event_id": row["event_id"] + "-L", "source": "api"} for row in rows[:10]
        )
        path = landing_dir / f"rm_tracking_{day.isoformat()}.csv"
        path.write_text(_csv_text(rows), encoding="utf-8")
        written.append(path)
    if len(days) >= 2:
        path = landing_dir / f"rm_tracking_late_{days[-1].isoformat()}.csv.gz"
        path.write_bytes(gzip.compress(_csv_text(late[-20:]).encode("utf-8")))
        written.append(path)
    return written
