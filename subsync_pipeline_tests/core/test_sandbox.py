"""The sandbox: DDL that real databases accept, demo data that exercises every rule, and the
`subsync` command a new user runs first.
"""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from subsync_pipeline.cli import main
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.sandbox import (
    DEMO_CONFIG_YAML,
    create_sandbox_personify,
    ddl_statements,
    demo_customers,
    demo_days,
    write_demo_tracking_files,
)
from subsync_pipeline.core.validation import SOURCE_ALIASES
from subsync_pipeline_tests.pg_server import PostgresServer

SPEC_COLUMNS = {
    "CUSTOMER": {
        "MASTER_CUSTOMER_ID",
        "SUB_CUSTOMER_ID",
        "CUSTOMER_STATUS_CODE",
        "PRIMARY_EMAIL_ADDRESS",
    },
    "CUS_OPT_IN": {
        "MASTER_CUSTOMER_ID",
        "SUB_CUSTOMER_ID",
        "OPT_IN_CODE",
        "OPT_IN_FLAG",
        "OPT_IN_DATE",
        "OPT_IN_SOURCE",
        "FORCED_FLAG",
        "FIRST_SUBSCRIBED_DATE",
        "FIRST_UNSUBSCRIBED_DATE",
        "LAST_SUBSCRIBE_REQUEST_DATE",
        "LAST_UNSUBSCRIBE_REQUEST_DATE",
        "ADDDATE",
        "ADDBY",
        "MODDATE",
        "MODBY",
    },
    "CUS_ACTIVITY": {
        "ACTIVITY_ID",
        "MASTER_CUSTOMER_ID",
        "SUB_CUSTOMER_ID",
        "ACTIVITY_CODE",
        "ACTIVITY_SUBCODE",
        "ACTIVITY_DATE",
        "ACTIVITY_TEXT",
        "EXTERNAL_ID",
        "ADDDATE",
        "ADDBY",
    },
}


def check_sandbox(url: str) -> None:
    customers = demo_customers(20)
    assert create_sandbox_personify(url, customers) == len(customers)
    assert create_sandbox_personify(url, customers) == 0  # a re-run adds nothing
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table, columns in SPEC_COLUMNS.items():
            assert {c["name"] for c in inspector.get_columns(table)} == columns
        assert conn.execute(sa.text('select count(*) from "CUSTOMER"')).scalar_one() == 22
        conn.execute(
            sa.text(
                'insert into "CUS_ACTIVITY" ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", '
                '"ACTIVITY_CODE", "ACTIVITY_DATE", "EXTERNAL_ID", "ADDDATE", "ADDBY") '
                "values ('1', 0, 'X', '2026-01-01', 'E1', '2026-01-01', 'T')"
            )
        )
        conn.commit()
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(
                sa.text(
                    'insert into "CUS_ACTIVITY" ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", '
                    '"ACTIVITY_CODE", "ACTIVITY_DATE", "EXTERNAL_ID", "ADDDATE", "ADDBY") '
                    "values ('1', 0, 'X', '2026-01-01', 'E1', '2026-01-01', 'T')"
                )
            )
    engine.dispose()
    assert create_sandbox_personify(url, customers.head(3), reset=True) == 3


def test_sandbox_on_sqlite(tmp_path: Path) -> None:
    check_sandbox(f"sqlite:///{tmp_path / 'sub' / 'personify.db'}")


def test_sandbox_on_postgresql(postgres_server: PostgresServer) -> None:
    check_sandbox(postgres_server.create_database("sandbox"))


def test_sql_server_ddl_is_schema_qualified() -> None:
    statements = ddl_statements("mssql")
    assert [s.split("(")[0].split()[-1] for s in statements if s.startswith("CREATE TABLE")] == [
        "dbo.CUSTOMER",
        "dbo.CUS_OPT_IN",
        "dbo.CUS_ACTIVITY",
    ]
    assert all("datetime2" in s for s in statements if "CUS_OPT_IN (" in s)


def test_demo_data_exercises_every_rule(tmp_path: Path) -> None:
    config = parse_config(__import__("yaml").safe_load(DEMO_CONFIG_YAML))
    days = demo_days(date(2026, 11, 23))
    assert days == [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
    files = write_demo_tracking_files(tmp_path, days, demo_customers())
    rows: list[dict[str, str]] = []
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
            rows.extend(csv.DictReader(handle))
    frame = pd.DataFrame(rows)
    assert any(path.name.endswith(".csv.gz") for path in files)
    canonical = set(config.source_ranks) | set(SOURCE_ALIASES)
    assert canonical <= set(frame["source"])
    assert (frame["force_optin"] == "true").any()
    subscribes = frame["event_type"].eq("subscribe")
    assert (frame.loc[subscribes, "timestamp_subscribed"] == "").any()
    assert (frame.loc[subscribes, "timestamp_subscribed"] != "").any()
    ids = frame["custom_member_id"]
    assert (ids == "").any() and ids.str.contains("[A-Z]").any() and ids.str.contains(r"\|").any()
    assert "900000001" in set(ids)
    scopes = set(zip(frame["scope_type"], frame["scope_id"], strict=True))
    assert set(config.area_map()) <= scopes and ("group", "9999") in scopes
    assert frame.duplicated().any()


def test_sandbox_command_refuses_sql_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONIFY_DB_URL", "mssql+pyodbc://sa:secret@prod/PERSONIFY")
    with pytest.raises(SystemExit) as refused:
        main(["sandbox"])
    assert "refusing" in str(refused.value) and "secret" not in str(refused.value)


def test_demo_command_end_to_end(tmp_path: Path) -> None:
    """`subsync demo` as a new user runs it: no variables set, in an empty folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUBSYNC_", "PERSONIFY_", "DAGSTER_"))
    }
    subsync = Path(sys.executable).with_name("subsync")
    process = subprocess.run(
        [str(subsync), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert process.stdout.count(": success") == 3
    assert "CUS_OPT_IN: " in process.stdout and "report.html" in process.stdout
    reports = sorted((tmp_path / "data" / "reports").glob("*/report.html"))
    assert len(reports) == 3
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'personify_sandbox.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text('select count(*) from "CUS_OPT_IN"')).scalar_one() > 20
        assert conn.execute(sa.text('select count(*) from "CUS_ACTIVITY"')).scalar_one() > 20
    engine.dispose()
