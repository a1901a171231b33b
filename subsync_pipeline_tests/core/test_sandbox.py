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
import yaml

from subsync_pipeline.cli import main
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.sandbox import (
    DDL_FILES,
    DEMO_CONFIG_YAML,
    DEMO_HEADERS,
    DEMO_TIMEZONE,
    create_sandbox_personify,
    ddl_statements,
    demo_customers,
    demo_days,
    statement_table,
    write_demo_tracking_files,
)
from subsync_pipeline.core.tracking_log import ALL_COLUMNS
from subsync_pipeline.core.validation import SOURCE_ALIASES
from subsync_pipeline_tests.pg_server import PostgresServer

STANDARD = {"ADDOPER", "ADDDATE", "MODOPER", "MODDATE", "CONCURRENCY_ID"}
# SPEC §5's documented shape; APP_CODE and APP_SUBCODE as Personify keeps its codes.
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
        "OPTION_TYPE_CODE",
        "OPTION_SHORT_NAME",
        "OPTION_SHORT_SUBNAME",
        "OPT_IN_FLAG",
        "OPT_IN_DATE",
        "OPT_OUT_DATE",
        "OPT_OUT_REASON_CODE",
        *STANDARD,
    },
    "CUS_ACTIVITY": {
        "CUS_ACTIVITY_ID",
        "MASTER_CUSTOMER_ID",
        "SUB_CUSTOMER_ID",
        "SUBSYSTEM",
        "ACTIVITY_CODE",
        "ACTIVITY_SUBCODE",
        "ACTIVITY_DATE",
        "ACTIVITY_TEXT",
        *STANDARD,
    },
    "APP_CODE": {"SUBSYSTEM", "TYPE", "CODE", "DESCR", "ACTIVE_FLAG", *STANDARD},
    "APP_SUBCODE": {"SUBSYSTEM", "TYPE", "CODE", "SUBCODE", "DESCR", "ACTIVE_FLAG", *STANDARD},
}
TABLES = list(SPEC_COLUMNS)


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
        codes = conn.execute(
            sa.text('select "TYPE", "CODE", "SUBCODE" from "APP_SUBCODE" order by "CODE"')
        ).all()
        assert [tuple(row) for row in codes] == [
            ("OPT_IN_INTEREST_AREA", "ADVOCACY", "ADVOCACY"),
            ("OPT_IN_INTEREST_AREA", "EVENTS", "EVENTS"),
            ("OPT_IN_INTEREST_AREA", "NEWSLETTER", "INSIDER"),
        ]
        activity = conn.execute(
            sa.text('select "CODE" from "APP_CODE" where "TYPE" = \'ACTIVITY\' order by "CODE"')
        ).scalars()
        assert list(activity) == ["RM_SUBSCRIBE", "RM_UNSUBSCRIBE"]
        insert = sa.text(
            'insert into "CUS_ACTIVITY" ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", "SUBSYSTEM", '
            '"ACTIVITY_CODE", "ACTIVITY_DATE", "ADDOPER", "ADDDATE", "CONCURRENCY_ID") '
            "values ('1', 0, 'CUS', 'X', '2026-01-01', 'T', '2026-01-01', 0)"
        )
        # The id is the database's: two inserts of the same values are two rows.
        conn.execute(insert)
        conn.execute(insert)
        ids = conn.execute(sa.text('select "CUS_ACTIVITY_ID" from "CUS_ACTIVITY"')).scalars()
        assert len(set(ids)) == 2
        conn.commit()
        opt_in = (
            'insert into "CUS_OPT_IN" ("MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", '
            '"OPTION_TYPE_CODE", "OPTION_SHORT_NAME", "OPTION_SHORT_SUBNAME", "OPT_IN_FLAG", '
            '"ADDOPER", "ADDDATE", "CONCURRENCY_ID") '
            "values ('1', 0, 'INTEREST_AREA', 'NEWSLETTER', 'INSIDER', 'Y', 'T', '2026-01-01', 0)"
        )
        conn.execute(sa.text(opt_in))
        conn.commit()
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text(opt_in))
    engine.dispose()
    assert create_sandbox_personify(url, customers.head(3), reset=True) == 3


def test_sandbox_on_sqlite(tmp_path: Path) -> None:
    check_sandbox(f"sqlite:///{tmp_path / 'sub' / 'personify.db'}")


def test_sandbox_on_postgresql(postgres_server: PostgresServer) -> None:
    check_sandbox(postgres_server.create_database("sandbox"))


def test_sandbox_recreates_a_missing_table_and_keeps_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'personify.db'}"
    create_sandbox_personify(url, demo_customers(10))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql('DROP TABLE "CUS_OPT_IN"')
    assert create_sandbox_personify(url, demo_customers(10)) == 0
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("CUS_OPT_IN")
        assert conn.execute(sa.text('select count(*) from "CUSTOMER"')).scalar_one() == 11
    engine.dispose()


@pytest.mark.parametrize("dialect", sorted(DDL_FILES))
def test_ddl_files_hold_the_tables_and_the_index(dialect: str) -> None:
    statements = ddl_statements(dialect)
    assert [statement_table(s) for s in statements if s.startswith("CREATE TABLE")] == TABLES
    assert not any(s.endswith(";") for s in statements)
    assert any(
        s.startswith("CREATE INDEX") and "MASTER_CUSTOMER_ID" in s and "CUS_ACTIVITY" in s
        for s in statements
    )
    text = "\n".join(statements)
    for table, columns in SPEC_COLUMNS.items():
        body = next(s for s in statements if statement_table(s) == table)
        missing = [c for c in columns if c not in body]
        assert not missing, f"{dialect} {table} lacks {missing}"
    if dialect == "postgresql":
        assert '"CUS_OPT_IN"' in text and "timestamp" in text and "time zone" not in text
        assert "GENERATED BY DEFAULT AS IDENTITY" in text


def test_sql_server_ddl_is_schema_qualified() -> None:
    statements = ddl_statements("mssql")
    assert [s.split("(")[0].split()[-1] for s in statements if s.startswith("CREATE TABLE")] == [
        f"dbo.{table}" for table in TABLES
    ]
    indexes = [s for s in statements if " INDEX " in s]
    assert indexes and all(" ON dbo.CUS_ACTIVITY " in s for s in indexes)
    tables = [s for s in statements if s.startswith("CREATE TABLE")]
    assert all("nvarchar" in s for s in tables)
    assert all("datetime2" in s and " datetime " not in s for s in tables[1:])
    assert "IDENTITY" in next(s for s in statements if "CUS_ACTIVITY (" in s)


def test_demo_customers_are_deterministic_with_some_sub_customers() -> None:
    customers = demo_customers()
    assert customers.equals(demo_customers())
    assert customers["MASTER_CUSTOMER_ID"].iloc[0] == "000100001"
    assert customers["PRIMARY_EMAIL_ADDRESS"].iloc[0] == "member100001@example.org"
    assert set(customers["SUB_CUSTOMER_ID"]) == {0, 1}
    assert customers["SUB_CUSTOMER_ID"].eq(0).mean() > 0.8
    assert not customers.duplicated(["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"]).any()
    assert set(customers["CUSTOMER_STATUS_CODE"]) == {"ACTIVE"}


def read_tracking_files(files: list[Path]) -> pd.DataFrame:
    frames = []
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as handle:  # type: ignore[operator]
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames or ()) == DEMO_HEADERS
            frame = pd.DataFrame(list(reader))
        frames.append(frame.assign(file=path.name))
    return pd.concat(frames, ignore_index=True)


def local_day(occurred_at: str) -> str:
    stamp = pd.Timestamp(occurred_at)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(DEMO_TIMEZONE, ambiguous=True)
    return str(stamp.tz_convert(DEMO_TIMEZONE).date())


def test_demo_config_is_valid_and_used_by_the_demo_files() -> None:
    config = parse_config(yaml.safe_load(DEMO_CONFIG_YAML), "DEMO_CONFIG_YAML")
    assert config.timezone == DEMO_TIMEZONE
    assert str(config.start_date) == "2026-01-01"
    assert config.area_map() == {
        ("group", "1201"): "NEWSLETTER/INSIDER",
        ("group", "1202"): "ADVOCACY",
        ("message_category", "77"): "EVENTS",
    }
    assert set(DEMO_HEADERS) == set(ALL_COLUMNS)


def test_demo_data_exercises_every_rule(tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(DEMO_CONFIG_YAML))
    # 2026-11-01 is the day clocks go back in New York: a 25-hour day.
    days = demo_days(date(2026, 11, 3))
    assert days == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    customers = demo_customers()
    files = write_demo_tracking_files(tmp_path, days, customers)
    assert [p.name for p in files] == [
        "rm_tracking_2026-10-31.csv",
        "rm_tracking_2026-11-01.csv",
        "rm_tracking_2026-11-02.csv",
        "rm_tracking_late_2026-11-02.csv.gz",
    ]
    frame = read_tracking_files(files)
    frame["day"] = frame["occurred_at"].map(local_day)

    per_day = frame[~frame["file"].str.endswith(".gz")]
    assert per_day.groupby("file").size().between(60, 150).all()
    for path in files[:-1]:
        assert set(per_day.loc[per_day["file"] == path.name, "day"]) == {path.name[12:22]}
    late = frame[frame["file"].str.endswith(".gz")]
    assert set(late["day"]) == {"2026-11-01", "2026-11-02"}

    canonical = set(config.source_ranks) | set(SOURCE_ALIASES)
    for _, day_rows in per_day.groupby("file"):
        assert canonical <= set(day_rows["source"])
    assert "carrier_pigeon" in set(frame["source"])
    assert (frame["force_optin"] == "true").any()
    subscribes = frame["event_type"].eq("subscribe")
    assert (frame.loc[subscribes, "timestamp_subscribed"] == "").any()
    assert (frame.loc[subscribes, "timestamp_subscribed"] != "").any()
    assert frame["occurred_at"].str.endswith("Z").any()
    assert frame["occurred_at"].str.contains(r"[+-]\d\d:\d\d$").any()
    assert frame["occurred_at"].str.fullmatch(r"[\d-]+T[\d:]+").any()

    ids = frame["custom_member_id"]
    known = set(zip(customers["MASTER_CUSTOMER_ID"], customers["SUB_CUSTOMER_ID"], strict=True))
    pairs = ids[ids.str.fullmatch(r"\d+\|\d+")].str.split("|")
    pair_keys = {(master, int(sub)) for master, sub in pairs}
    assert pair_keys & known, "a valid MASTER|SUB id"
    assert pair_keys - known, "a MASTER|SUB id whose sub customer does not exist"
    assert "900000001" in set(ids) and ("900000001", 0) not in known
    assert (ids == "").any() and ids.str.contains("[A-Z]").any()
    assert ids.str.fullmatch(r"\d+\|x").any()

    scopes = set(zip(frame["scope_type"], frame["scope_id"], strict=True))
    assert set(config.area_map()) <= scopes and ("group", "9999") in scopes
    assert frame.drop(columns="day").duplicated().any()
    distinct = frame.drop(columns=["day", "file"]).drop_duplicates()
    assert not distinct["event_id"].duplicated().any()
    assert distinct["event_id"].str.fullmatch(r"RM-\d{8}-\d{4}(-L)?").all()

    valid = frame[ids.str.fullmatch(r"\d+")]
    days_per_key = valid.groupby(["custom_member_id", "scope_type", "scope_id"])["day"].nunique()
    assert (days_per_key >= 3).sum() >= 5, "keys with events on several days"

    again = write_demo_tracking_files(tmp_path / "again", days, customers)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in files]


def test_sandbox_command_makes_everything_in_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("SUBSYNC_CONFIG", "SUBSYNC_LANDING_DIR", "PERSONIFY_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["sandbox", "--customers", "30"]) == 0
    out = capsys.readouterr().out
    assert "33 demo customers added" in out and "data/subsync.yaml" in out

    config_file = tmp_path / "data" / "subsync.yaml"
    assert config_file.read_text() == DEMO_CONFIG_YAML
    landing = sorted(p.name for p in (tmp_path / "data" / "landing").iterdir())
    days = demo_days(date.today())
    assert landing == sorted(
        [f"rm_tracking_{day}.csv" for day in days] + [f"rm_tracking_late_{days[-1]}.csv.gz"]
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'personify_sandbox.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text('select count(*) from "CUSTOMER"')).scalar_one() == 33

    config_file.write_text("timezone: UTC\n")  # an operator's edit survives a re-run...
    assert main(["sandbox", "--customers", "30"]) == 0
    assert "0 demo customers added" in capsys.readouterr().out
    assert config_file.read_text() == "timezone: UTC\n"
    assert main(["sandbox", "--reset", "--customers", "10"]) == 0  # ...but not a reset
    assert config_file.read_text() == DEMO_CONFIG_YAML
    with engine.connect() as conn:
        assert conn.execute(sa.text('select count(*) from "CUSTOMER"')).scalar_one() == 11
    engine.dispose()


def test_sandbox_command_uses_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    own_config = tmp_path / "mine.yaml"
    monkeypatch.setenv("SUBSYNC_CONFIG", str(own_config))
    monkeypatch.setenv("SUBSYNC_LANDING_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("PERSONIFY_DB_URL", f"sqlite:///{tmp_path / 'db' / 'p.db'}")
    assert main(["sandbox"]) == 0
    assert "220 demo customers added" in capsys.readouterr().out
    assert not own_config.exists() and not (tmp_path / "data").exists()
    assert len(list((tmp_path / "drop").glob("rm_tracking_*"))) == 4
    assert (tmp_path / "db" / "p.db").is_file()


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_sandbox_command_refuses_sql_server(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERSONIFY_DB_URL", "mssql+pyodbc://sa:secret@prod/PERSONIFY")
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "--i-know-this-is-not-production" in err
    assert "secret" not in err


def test_a_sandbox_of_the_old_shape_is_named_not_written_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'personify.db'}"
    create_sandbox_personify(url, demo_customers(10))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        # The invented shape of earlier versions: one OPT_IN_CODE instead of the option columns.
        conn.exec_driver_sql('DROP TABLE "CUS_OPT_IN"')
        conn.exec_driver_sql(
            'CREATE TABLE "CUS_OPT_IN" ("MASTER_CUSTOMER_ID" VARCHAR(24), '
            '"SUB_CUSTOMER_ID" INTEGER, "OPT_IN_CODE" VARCHAR(24), "OPT_IN_FLAG" CHAR(1))'
        )
    engine.dispose()
    monkeypatch.setenv("PERSONIFY_DB_URL", url)
    monkeypatch.setenv("SUBSYNC_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SUBSYNC_CONFIG", str(tmp_path / "subsync.yaml"))
    assert main(["sandbox"]) == 2
    err = capsys.readouterr().err
    assert "CUS_OPT_IN lacks OPTION_TYPE_CODE" in err and "subsync sandbox --reset" in err
    assert main(["sandbox", "--reset"]) == 0


def test_too_few_customers_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["sandbox", "--customers", "3"])
    assert usage.value.code == 2 and "at least 10" in capsys.readouterr().err


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
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'subsync_state.db'}")
    with engine.connect() as conn:
        decisions = {row[0] for row in conn.execute(sa.text("select decision from decisions"))}
        reasons = ";".join(
            row[0] for row in conn.execute(sa.text("select reasons from rejected_records"))
        )
    engine.dispose()
    assert decisions == {"applied", "no_change", "blocked_by_precedence", "blocked_by_forced"}
    for reason in ("missing_member_id", "invalid_member_id", "unknown_member", "invalid_source"):
        assert reason in reasons
