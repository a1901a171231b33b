"""`subsync`: set up a sandbox and run the demo, for a first look without any real system."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.environment import DATA_DIR, DEFAULTS, config_path, setting
from subsync_pipeline.core.personify.connection import masked
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.sandbox import (
    create_sandbox_personify,
    demo_customers,
    demo_days,
    write_demo_config,
    write_demo_tracking_files,
)


def sandbox(reset: bool, customers: int, allow_mssql: bool) -> list[date]:
    """Create the sandbox Personify, the demo config and demo tracking files; return the days."""
    url = setting("PERSONIFY_DB_URL")
    if make_url(url).get_backend_name() == "mssql" and not allow_mssql:
        raise SystemExit(
            f"refusing to create sandbox tables at {masked(url)}: it is a SQL Server URL, which "
            "may be production Personify. Pass --i-know-this-is-not-production to go ahead."
        )
    members = demo_customers(customers)
    added = create_sandbox_personify(url, members, reset=reset)
    print(f"Personify sandbox: {masked(url)} ({added} demo customers added)")

    if not os.environ.get("SUBSYNC_CONFIG"):
        config_file = Path(DEFAULTS["SUBSYNC_CONFIG"])
        if reset or not config_file.exists():
            write_demo_config(config_file)
        print(f"Config:            {config_file}")

    days = demo_days(date.today())
    landing = Path(setting("SUBSYNC_LANDING_DIR"))
    files = write_demo_tracking_files(landing, days, members)
    print(f"Tracking files:    {len(files)} in {landing}")
    return days


def demo(reset: bool, customers: int) -> int:
    """Sandbox, then the daily job for each demo day on a local Dagster instance."""
    days = sandbox(reset, customers, allow_mssql=False)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((DATA_DIR / "dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")

    import dagster as dg

    from subsync_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_sync_job")
    failed = []
    with dg.DagsterInstance.get() as instance:
        for day in days:
            key = day.isoformat()
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )
            print(f"daily_sync_job {key}: {'success' if result.success else 'FAILED'}")
            if not result.success:
                failed.append(key)

    reports = Path(setting("SUBSYNC_REPORTS_DIR")).resolve()
    personify = setting("PERSONIFY_DB_URL")
    print()
    print(f"Personify (result):   {masked(personify)}  {_row_counts(personify)}")
    print(f"Data-quality reports: {reports}/<day>/report.html (rejected rows: rejected_rows.csv)")
    print(f"subsync state:        {masked(setting('SUBSYNC_DB_URL'))}")
    print(f"Dagster UI:           DAGSTER_HOME={home} .venv/bin/dagster dev   (or: make ui)")
    return 1 if failed else 0


def _row_counts(url: str) -> str:
    tables = personify_tables(load_config(config_path()).personify.tables)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {
            table.fullname: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            for table in (tables.opt_in, tables.activity)
        }
    engine.dispose()
    return ", ".join(f"{name}: {n} rows" for name, n in counts.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="subsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("sandbox", "create a sandbox Personify, demo config and demo tracking files"),
        ("demo", "sandbox, then run daily_sync_job for each demo day"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--reset", action="store_true", help="drop and recreate the sandbox")
        command.add_argument("--customers", type=int, default=200, help="demo customers to add")
        if name == "sandbox":
            command.add_argument(
                "--i-know-this-is-not-production",
                dest="allow_mssql",
                action="store_true",
                help="allow a sandbox on a SQL Server URL",
            )
    args = parser.parse_args(argv)
    if args.command == "sandbox":
        sandbox(args.reset, args.customers, args.allow_mssql)
        return 0
    return demo(args.reset, args.customers)


if __name__ == "__main__":
    sys.exit(main())
