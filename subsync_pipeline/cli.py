"""`subsync`: set up a sandbox and run the demo, for a first look without any real system; check
a real Personify before the first sync (`subsync doctor`); say why a member's status is what it
is (`subsync explain`); try the notification channels (`subsync notify-test`)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from subsync_pipeline.core.channels import ChannelError, parse_targets, send
from subsync_pipeline.core.config import ConfigError, SubsyncConfig, load_config
from subsync_pipeline.core.doctor import checklist_json, checklist_text, doctor, exit_code
from subsync_pipeline.core.environment import DATA_DIR, DEFAULTS, config_path, setting
from subsync_pipeline.core.explain import UnknownMemberError, explain
from subsync_pipeline.core.personify.connection import (
    PersonifyConnectionError,
    create_personify_engine,
    masked,
)
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.preview import preview
from subsync_pipeline.core.report import write_preview
from subsync_pipeline.core.sandbox import (
    MIN_DEMO_CUSTOMERS,
    SandboxOutdatedError,
    create_sandbox_personify,
    demo_customers,
    demo_days,
    write_demo_config,
    write_demo_tracking_files,
)
from subsync_pipeline.core.state import create_state_engine

ALLOW_MSSQL_FLAG = "--i-know-this-is-not-production"
EXIT_REFUSED = 2
# Step-by-step DEBUG events belong in the UI; the terminal gets the assets' own INFO lines.
_CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def sandbox(reset: bool, customers: int) -> list[date]:
    """Create the sandbox Personify, the demo config and demo tracking files; return the days."""
    url = setting("PERSONIFY_DB_URL")
    members = demo_customers(customers)
    added = create_sandbox_personify(url, members, reset=reset)
    print(f"Personify sandbox: {masked(url)} ({added} demo customers added)")

    explicit_config = os.environ.get("SUBSYNC_CONFIG")
    if explicit_config:
        print(f"Config:            {explicit_config} (SUBSYNC_CONFIG, left as it is)")
    else:
        config_file = Path(DEFAULTS["SUBSYNC_CONFIG"])
        if reset or not config_file.exists():
            write_demo_config(config_file)
            print(f"Config:            {config_file} (demo config written)")
        else:
            print(f"Config:            {config_file} (kept; --reset rewrites it)")

    days = demo_days(date.today())
    landing = Path(setting("SUBSYNC_LANDING_DIR"))
    files = write_demo_tracking_files(landing, days, members)
    print(f"Tracking files:    {len(files)} in {landing} (days {days[0]} to {days[-1]})")
    return days


def demo(reset: bool, customers: int) -> int:
    """Sandbox, then the daily job for each demo day on a local Dagster instance."""
    days = sandbox(reset, customers)
    if not os.environ.get("DAGSTER_HOME"):
        home = (DATA_DIR / "dagster_home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        instance_yaml = home / "dagster.yaml"
        if not instance_yaml.exists():
            instance_yaml.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        os.environ["DAGSTER_HOME"] = str(home)
    home = Path(os.environ["DAGSTER_HOME"])

    # Imported only now: the definitions read SUBSYNC_CONFIG and DAGSTER_HOME when they load.
    import dagster as dg

    # The project's deliberate use of beta Dagster APIs is not news to someone trying the demo.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from subsync_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_sync_job")
    failed = []
    print()
    with dg.DagsterInstance.get() as instance:
        for day in days:
            key = day.isoformat()
            result = job.execute_in_process(
                run_config=_CONSOLE_INFO, partition_key=key, instance=instance, raise_on_error=False
            )
            if result.success:
                print(f"daily_sync_job {key}: success (run {result.run_id})")
                continue
            failed.append(key)
            print(f"daily_sync_job {key}: FAILED (run {result.run_id})")
            for failure in result.get_step_failure_events():
                error = failure.step_failure_data.error
                message = error.message.strip() if error else "no error recorded"
                print(f"  step {failure.step_key}: {message}")

    reports = Path(setting("SUBSYNC_REPORTS_DIR")).resolve()
    personify = setting("PERSONIFY_DB_URL")
    print()
    print(f"Personify (result):   {masked(personify)}  {_row_counts(personify)}")
    print(f"Data-quality reports: {reports}/<day>/report.html (all days: {reports}/index.html)")
    print(f"Rejected rows:        {reports}/<day>/rejected_rows.csv (file, line, reasons, values)")
    print(f"subsync state DB:     {masked(setting('SUBSYNC_DB_URL'))} (rejects, decisions, ledger)")
    print(f"Dagster UI:           DAGSTER_HOME={home} .venv/bin/dagster dev   (or: make ui)")
    if failed:
        print(f"\n{len(failed)} of {len(days)} days failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_doctor(as_json: bool) -> int:
    """Print the preflight checklist of PERSONIFY_DB_URL and the landing folder; 1 if a write
    would fail."""
    try:
        config = load_config(config_path())
    except ConfigError as error:
        print(f"subsync doctor: {error}", file=sys.stderr)
        return 1
    findings = doctor(config, setting("PERSONIFY_DB_URL"), Path(setting("SUBSYNC_LANDING_DIR")))
    print(checklist_json(findings) if as_json else checklist_text(findings))
    return exit_code(findings)


def run_notify_test() -> int:
    """Send a test message to every URL of SUBSYNC_NOTIFY_URLS and say which worked; 1 unless
    all did."""
    try:
        config = load_config(config_path())
        targets = parse_targets(setting("SUBSYNC_NOTIFY_URLS"))
    except (ConfigError, ChannelError) as error:
        print(f"subsync notify-test: {error}", file=sys.stderr)
        return 1
    if not targets:
        print("subsync notify-test: SUBSYNC_NOTIFY_URLS is not set: no notices are sent")
        return 1
    channels = config.notify.channels
    for name in sorted(set(channels) - {target.channel for target in targets}):
        print(f"[warn] channel {name} (notify.channels) has no URL in SUBSYNC_NOTIFY_URLS")
    failed = 0
    for target in targets:
        channel = channels.get(target.channel)
        if channel is None:
            gets = "nothing: it is not in notify.channels"
        else:
            digest = (
                "off"
                if channel.digest == "off"
                else (f"{channel.digest}, {' and '.join(channel.digest_parts)}")
            )
            gets = f"failure notices: {'yes' if channel.failures else 'no'}; digest: {digest}"
        outcome = send(
            target,
            "subsync: test notice",
            f"A test from `subsync notify-test` on {socket.gethostname()}.\n"
            f"Channel {target.channel} gets {gets}.",
        )
        failed += not outcome.ok
        status = "[ok]  " if outcome.ok else "[FAIL]"
        reason = "" if outcome.ok else f"\n       {outcome.error}"
        print(f"{status} {target.channel}: {target.shown} ({gets}){reason}")
    return 1 if failed else 0


def _config_and_personify(command: str) -> tuple[SubsyncConfig, sa.Engine] | None:
    """The config and a connected Personify engine; None (the error printed) if either fails."""
    try:
        return load_config(config_path()), create_personify_engine(setting("PERSONIFY_DB_URL"))
    except (ConfigError, PersonifyConnectionError) as error:
        print(f"subsync {command}: {error}", file=sys.stderr)
        return None


def run_explain(member: str, area: str | None, as_json: bool, show_emails: bool) -> int:
    """Print why MEMBER's status is what it is, from the state database and Personify."""
    opened = _config_and_personify("explain")
    if opened is None:
        return 1
    config, personify = opened
    state_engine = create_state_engine(setting("SUBSYNC_DB_URL"))
    tables = personify_tables(config.personify)
    try:
        with state_engine.connect() as state_conn, personify.connect() as personify_conn:
            explanation = explain(
                state_conn, personify_conn, config, tables, member, area, show_emails
            )
    except UnknownMemberError as error:
        print(f"subsync explain: {error}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        state_engine.dispose()
        personify.dispose()
    print(explanation.as_json() if as_json else explanation.text())
    return 0


def run_preview(days: list[str], since: date | None) -> int:
    """Print what a sync of `days` (or every day from `since` to today) would change in
    Personify, and write the rows to SUBSYNC_REPORTS_DIR/<days>/preview.csv; change nothing."""
    if since is not None:
        days = [d.date().isoformat() for d in pd.date_range(since, date.today(), freq="D")]
    if not days:
        print(
            "subsync preview: give one or more days (YYYY-MM-DD) or --since DATE", file=sys.stderr
        )
        return EXIT_REFUSED
    opened = _config_and_personify("preview")
    if opened is None:
        return 1
    config, personify = opened
    started = time.perf_counter()
    try:
        found = preview(
            setting("SUBSYNC_DB_URL"),
            personify,
            Path(setting("SUBSYNC_LANDING_DIR")),
            config,
            sorted(days),
            f"preview-{uuid.uuid4().hex[:8]}",
        )
    finally:
        personify.dispose()
    files = write_preview(Path(setting("SUBSYNC_REPORTS_DIR")), found)
    seconds = time.perf_counter() - started
    print(
        f"Preview of {len(found.days)} day(s), {found.rows_read} rows read, "
        f"in {seconds:.1f} s; nothing was written."
    )
    for table, counts in found.counts().items():
        print(
            f"  {table}: {counts['insert']} to insert, {counts['update']} to update, "
            f"{counts['delete']} to delete"
        )
    print(f"Every change (row, column, old, new): {files.changes_csv.resolve()}")
    print(f"The preview page:                     {files.html.resolve()}")
    return 0


def _row_counts(url: str) -> str:
    tables = personify_tables(load_config(config_path()).personify)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                table.fullname: conn.execute(
                    sa.select(sa.func.count()).select_from(table)
                ).scalar_one()
                for table in (tables.opt_in.table, tables.activity.table)
            }
    finally:
        engine.dispose()
    return ", ".join(f"{name}: {n} rows" for name, n in counts.items())


def _refusal(allow_mssql: bool) -> str | None:
    """Why the sandbox must not be created at PERSONIFY_DB_URL, or None when it may.

    The sandbox drops and creates Personify tables, so a SQL Server URL, which may well be the
    production Personify, needs the operator to say explicitly that it is not.
    """
    url = setting("PERSONIFY_DB_URL")
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return f"PERSONIFY_DB_URL is not a SQLAlchemy database URL: {masked(url)}"
    if backend == "mssql" and not allow_mssql:
        return (
            f"refusing to create sandbox tables at {masked(url)}: it is a SQL Server URL, which "
            f"may be production Personify. Pass {ALLOW_MSSQL_FLAG} to go ahead."
        )
    return None


def _customer_count(text: str) -> int:
    number = int(text)
    if number < MIN_DEMO_CUSTOMERS:
        raise argparse.ArgumentTypeError(f"at least {MIN_DEMO_CUSTOMERS}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="subsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("sandbox", "create a sandbox Personify, demo config and demo tracking files"),
        ("demo", "sandbox, then run daily_sync_job for each demo day"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--reset", action="store_true", help="drop and recreate the sandbox tables and config"
        )
        command.add_argument(
            "--customers", type=_customer_count, default=200, help="demo customers (default 200)"
        )
        command.add_argument(
            ALLOW_MSSQL_FLAG,
            dest="allow_mssql",
            action="store_true",
            help="allow a sandbox at a SQL Server PERSONIFY_DB_URL",
        )
    text = "check Personify and the landing folder, read-only, before the first sync"
    command = commands.add_parser("doctor", help=text, description=text)
    command.add_argument("--json", action="store_true", help="the findings as JSON")
    text = "why a member's status is what it is: every event, its rule, Personify now"
    command = commands.add_parser("explain", help=text, description=text)
    command.add_argument("member", help="MASTER or MASTER|SUB")
    command.add_argument("--area", help="one interest area (its code, or an unmapped TYPE:ID)")
    command.add_argument("--json", action="store_true", help="the explanation as JSON")
    command.add_argument(
        "--show-emails", action="store_true", help="show rejected rows' emails unmasked"
    )
    text = "what a sync of these days would change in Personify, without changing anything"
    command = commands.add_parser("preview", help=text, description=text)
    command.add_argument("days", nargs="*", help="days to preview (YYYY-MM-DD)")
    command.add_argument(
        "--since", type=date.fromisoformat, help="every day from this one to today (a backfill)"
    )
    text = "send a test message to every channel of SUBSYNC_NOTIFY_URLS; say which worked"
    commands.add_parser("notify-test", help=text, description=text)
    args = parser.parse_args(argv)
    if args.command == "notify-test":
        return run_notify_test()
    if args.command == "preview":
        return run_preview(args.days, args.since)
    if args.command == "doctor":
        return run_doctor(args.json)
    if args.command == "explain":
        return run_explain(args.member, args.area, args.json, args.show_emails)
    refusal = _refusal(args.allow_mssql)
    if refusal:
        print(f"subsync {args.command}: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if args.command == "sandbox":
            sandbox(args.reset, args.customers)
            return 0
        return demo(args.reset, args.customers)
    except SandboxOutdatedError as outdated:
        print(f"subsync {args.command}: {outdated}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
