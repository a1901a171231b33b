"""The performance bench (issue 6): one command, real PostgreSQL, figures appended to RESULTS.md.

    .venv/bin/python bench/run.py                      # 1,000,000 events over 200,000 members
    .venv/bin/python bench/run.py --events 100000 --history 30000000
    .venv/bin/python bench/run.py --days 30 --events-per-day 100000    # the first load

It starts a throwaway PostgreSQL 15 server (as the tests do), generates one day's tracking file,
creates a sandbox Personify with the members and, with --history, loads H earlier events straight
into the state database's ledger; then it runs the whole daily job for that day in a child process
(so its peak RSS is the job's alone) against PostgreSQL for both Personify and state, and times
`psql \\copy` of the same file into a plain table on the same server. With --history it first runs
the same day on an empty ledger (fresh databases, same server), and reports the history's cost as
the ratio of the two. Time and peak RSS per asset, events/s and the pipeline/COPY ratio are printed
and appended to bench/RESULTS.md with the commit.

The peer in the same run (issue 23; without --history, and unless --no-dlt): dlt loads the same
file into the same server, a merge on event_id into a fresh database, once with its defaults
(pandas chunks) and once by its fastest path (Arrow batches, COPY); see bench/dlt_peer.py. Each
whole `pipeline.run` is timed, the rows that landed are counted, and "subsync / dlt WAY" (the
day's time over dlt's) is printed and goes into the RESULTS.md row. dlt is a bench-only
dependency: `.venv/bin/pip install -e '.[bench]'`.

A loaded history is kept (30M events take 15 minutes to load): the server's cluster lives in
--history-cache, under a key made of what the load depends on (H, M, the day, LOADER_VERSION and
the DDL of the tables it fills), and each run works on a copy of the loaded database
(`CREATE DATABASE ... TEMPLATE`), so every run starts from the same state. Tables added to the
state schema since are created empty by `create_state_engine`, as on an upgraded deployment.

The first load (issue 23), `--days D --events-per-day N [--members M] [--per-day-sample K]`
(bench/first_load.py): D daily files ending at --day and a sandbox Personify with the members,
then the backfill as an operator runs it, one command in a child process:
`dagster asset materialize -m subsync_pipeline.definitions --select '*' --partition-range
FIRST...LAST`, with DAGSTER_HOME a temporary directory (telemetry off) and subsync's variables
set as for the daily job, from an empty state database and empty CUS_OPT_IN/CUS_ACTIVITY. It
prints the total, the seconds a day, events/s and the command's peak RSS (`ru_maxrss` from
`os.wait4`). Then, from fresh databases on the same server, one `--partition DAY` command per day
in order, each its own process (as the backfill daemon's one run per day would launch them): the
total and the largest peak RSS, and the ranged/per-day speed-up. `--per-day-sample K` runs only
the first K days one run per day and estimates the total as the first run (which scans the whole
landing folder) plus the mean of the others for each other day (low: later days grow with the
ledger), marked EXTRAPOLATED in the printout and in RESULTS.md. Both modes must leave as many
CUS_OPT_IN and CUS_ACTIVITY rows (not compared when sampled). One row per mode goes to the
"First loads" table under "## Runs".
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlt_peer import WAYS, described, load_with_dlt  # noqa: E402
from results import add_rows, commit_label  # noqa: E402
from synthetic import (  # noqa: E402
    CONFIG,
    DAY,
    SCOPES,
    SOURCE_MIX,
    customers,
    member_ids,
    tracking_frame,
)

RUNS_HEADER = (
    "| commit | date | events | members | history | COPY s | pipeline s | ratio | events/s "
    "| peak RSS MB | seconds per asset |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
)
# Part of the history cache's key: bump it when load_history stores something different.
LOADER_VERSION = 2
HISTORY_CACHE = Path("/tmp/subsync-bench-history")
HISTORY_TEMPLATE = "history_template"
# The state tables load_history fills; their DDL is part of the cache key.
HISTORY_TABLES = ("event_ledger", "event_versions", "decisions", "key_states")


def load_history(state_url: str, history: int, members: int, day: str) -> float:
    """Put `history` earlier events in the state database as if earlier runs had stored them.

    The events are COPYed into the ledger and event_versions in chunks; then every member is
    resolved over its history with the pipeline's own functions, which stores the decisions and
    the checkpoints a daily run would have left. Secondary indexes are dropped while a table is
    filled and built once after it (sorting 30M keys once instead of 30M random inserts); what
    is left is the same database a daily run would have grown.
    """
    import sqlalchemy as sa

    from subsync_pipeline.core import state, sync
    from subsync_pipeline.core.config import parse_config
    from subsync_pipeline.core.sql import copy_frame

    engine = state.create_state_engine(state_url)
    config = parse_config(CONFIG)
    started = time.perf_counter()

    def without_indexes(*tables: sa.Table) -> None:
        with engine.begin() as conn:
            for table in tables:
                for index in table.indexes:
                    index.drop(conn)

    def with_indexes(*tables: sa.Table) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL maintenance_work_mem = '1GB'"))
            for table in tables:
                for index in table.indexes:
                    index.create(conn)

    without_indexes(state.event_ledger, state.event_versions, state.decisions)
    chunk = 1_000_000
    first = date.fromisoformat(day)
    for start in range(0, history, chunk):
        size = min(chunk, history - start)
        rng = np.random.default_rng(start)
        days_back = rng.integers(1, 365, size)
        ids = member_ids(members)[rng.integers(0, members, size)]
        scope = rng.integers(0, len(SCOPES), size)
        occurred = pd.Timestamp(first) - pd.to_timedelta(days_back, unit="D")
        occurred = occurred + pd.to_timedelta(rng.integers(0, 86_400, size), unit="s")
        frame = pd.DataFrame(
            {
                "event_id": pd.Series(np.arange(start, start + size)).map("H{:010d}".format),
                "day": occurred.strftime("%Y-%m-%d"),
                "file_id": 0,
                "line_number": np.arange(size) + 2,
                "master_customer_id": ids,
                "sub_customer_id": 0,
                "event_type": np.where(rng.random(size) < 0.6, "subscribe", "unsubscribe"),
                "scope_type": np.array([s[0] for s in SCOPES])[scope],
                "scope_id": np.array([s[1] for s in SCOPES])[scope],
                "scope_name": "Campaign list",
                "source": rng.choice(list(SOURCE_MIX), size, p=list(SOURCE_MIX.values())),
                "force_optin": False,
                "occurred_at": occurred,
                "timestamp_subscribed": pd.NaT,
            }
        )
        with engine.begin() as conn:
            copy_frame(conn, state.event_ledger, frame)
            versions = frame[["event_id", "day", "file_id", "line_number"]].assign(fingerprint=0)
            copy_frame(conn, state.event_versions, versions)
        print(f"  history: {start + size:,} / {history:,} events", flush=True)
    with_indexes(state.event_ledger, state.event_versions)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    print(
        f"  history stored in {time.perf_counter() - started:.0f} s; resolving it ...", flush=True
    )
    everyone = pd.DataFrame({"master_customer_id": member_ids(members), "sub_customer_id": 0})
    batch = max(1, members * 2_000_000 // max(history, 1))
    for at in range(0, members, batch):
        with engine.begin() as conn:
            resolution = sync.resolve_members(conn, config, everyone.iloc[at : at + batch])
            resolution.store(conn, "bench-history", pd.Timestamp.now().to_pydatetime())
        print(f"  checkpoints: {min(at + batch, members):,} / {members:,} members", flush=True)
    with_indexes(state.decisions)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def history_key(history: int, members: int, day: str) -> str:
    """What a loaded history depends on, as a short hash (the cache folder's name)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    from subsync_pipeline.core import state, sync
    from subsync_pipeline.core.config import parse_config

    dialect = postgresql.dialect()
    ddl = []
    for name in HISTORY_TABLES:
        table = state.metadata.tables[name]
        ddl.append(str(CreateTable(table).compile(dialect=dialect)))
        ddl += sorted(str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes)
    # The checkpoints are only good under the settings they were decided with.
    decided_under = sync.decision_fingerprint(parse_config(CONFIG))
    identity = json.dumps([history, members, day, LOADER_VERSION, ddl, decided_under])
    return f"h{history}-m{members}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _admin(server: Any, *statements: str) -> None:
    """Run `statements` in order on one connection, each in its own transaction."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        for statement in statements:
            conn.execute(statement)


def _drop_run_databases(server: Any) -> None:
    """Every database but the loaded history and PostgreSQL's own (a kept cluster's last run)."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' "
            "AND datname <> %s",
            [HISTORY_TEMPLATE],
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP DATABASE "{name}"')


def history_state(server: Any, url: str, marker: Path, args: argparse.Namespace) -> float:
    """Make the (new, empty) state database at `url` a copy of the kept history, loading that
    first if need be; returns how long loading the history took (when it was loaded)."""
    if not marker.exists():
        _admin(server, f"DROP DATABASE IF EXISTS {HISTORY_TEMPLATE}")
        _admin(server, f"CREATE DATABASE {HISTORY_TEMPLATE}")
        seconds = load_history(server.url(HISTORY_TEMPLATE), args.history, args.members, args.day)
        marker.write_text(json.dumps({"history_load_s": round(seconds, 1)}))
    loaded: float = json.loads(marker.read_text())["history_load_s"]
    # Brought up to this commit's schema once, not inside every measured run.
    from subsync_pipeline.core.state import create_state_engine

    create_state_engine(server.url(HISTORY_TEMPLATE)).dispose()
    name = url.rsplit("/", 1)[1]
    _admin(server, f'DROP DATABASE "{name}"')
    # FILE_COPY copies the template's files as they are; PostgreSQL 15's default (WAL_LOG)
    # writes every block of a database of several GB through the WAL.
    started = time.perf_counter()
    _admin(server, f'CREATE DATABASE "{name}" TEMPLATE {HISTORY_TEMPLATE} STRATEGY FILE_COPY')
    print(f"  history copied from the cache in {time.perf_counter() - started:.0f} s", flush=True)
    return loaded


def time_resolution(events: int, members: int) -> float:
    """Resolution alone (SPEC §4 rules, vectorised): resolve + current_status on `events`."""
    from subsync_pipeline.core.config import DEFAULT_SOURCE_RANKS
    from subsync_pipeline.core.resolution import current_status, resolve

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "master_customer_id": member_ids(members)[rng.integers(0, members, events)],
            "sub_customer_id": 0,
            "area": rng.choice(["NEWSLETTER", "EVENTS", "ADVOCACY"], events),
            "event_id": [f"E{n:09d}" for n in range(events)],
            "event_type": rng.choice(["subscribe", "unsubscribe"], events),
            "source": rng.choice(list(SOURCE_MIX), events, p=list(SOURCE_MIX.values())),
            "force_optin": rng.random(events) < 0.01,
            "occurred_at": pd.Timestamp(DAY)
            + pd.to_timedelta(rng.integers(0, 86_400, events), "s"),
            "timestamp_subscribed": pd.NaT,
        }
    )
    started = time.perf_counter()
    current_status(resolve(frame, DEFAULT_SOURCE_RANKS))
    return time.perf_counter() - started


# What a day stores, by database: the floor measurement copies the day's rows of each.
STORED_TABLES: dict[str, tuple[str, ...]] = {
    "state": (
        "event_versions",
        "event_ledger",
        "decisions",
        "key_states",
        "rejected_records",
        "activity_records",
    ),
    "personify": ("CUS_OPT_IN", "CUS_ACTIVITY"),
}


def storage_floor(server: Any, psql: list[str], work: Path, urls: dict[str, str]) -> dict[str, Any]:
    """PostgreSQL's own time to store what the job stored, timed as the COPY baseline is.

    Every row the job left in the tables it writes is exported, then loaded with `psql \\copy`
    into empty tables of the same DDL (their keys and indexes included), and again into tables of
    the same columns with no index at all. No implementation can store those rows on this server
    faster than the first figure; none can store that much data faster than the second. Each
    table is its own psql, as the baseline is (psql's start-up, ~20 ms, is in both).
    """
    from subsync_pipeline.core.sandbox import create_sandbox_personify
    from subsync_pipeline.core.state import create_state_engine

    def run(dbname: str, command: str) -> float:
        started = time.perf_counter()
        subprocess.run([*psql, "-d", dbname, "-c", command], check=True)
        return time.perf_counter() - started

    floor_url = server.create_database("floor")
    floor_db = floor_url.rsplit("/", 1)[1]
    create_state_engine(floor_url).dispose()
    create_sandbox_personify(
        floor_url,
        customers=pd.DataFrame(
            columns=[
                "MASTER_CUSTOMER_ID",
                "SUB_CUSTOMER_ID",
                "CUSTOMER_STATUS_CODE",
                "PRIMARY_EMAIL_ADDRESS",
            ]
        ),
    )
    rows: dict[str, int] = {}
    indexed: dict[str, float] = {}
    plain: dict[str, float] = {}
    for database, tables in STORED_TABLES.items():
        source_db = urls[database].rsplit("/", 1)[1]
        for table in tables:
            dump = work / f"floor-{table}.csv"
            # The names are the constants above, not input.
            export = f"\\copy (SELECT * FROM \"{table}\") TO '{dump}' WITH (FORMAT csv)"  # noqa: S608
            run(source_db, export)
            os.chmod(dump, 0o644)
            with dump.open("rb") as handle:
                rows[table] = sum(
                    block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")
                )
            indexed[table] = run(floor_db, f"\\copy \"{table}\" FROM '{dump}' WITH (FORMAT csv)")
            run(floor_db, f'CREATE TABLE "plain_{table}" (LIKE "{table}")')
            plain[table] = run(
                floor_db, f"\\copy \"plain_{table}\" FROM '{dump}' WITH (FORMAT csv)"
            )
            dump.unlink()
    return {
        "rows": rows,
        "indexed_s": {table: round(seconds, 2) for table, seconds in indexed.items()},
        "plain_s": {table: round(seconds, 2) for table, seconds in plain.items()},
        "floor_s": round(sum(indexed.values()), 2),
        "floor_plain_s": round(sum(plain.values()), 2),
    }


def _diagnostics(args: argparse.Namespace) -> dict[str, str]:
    """The server settings that make it log what `--slow-statements` / `--explain-slow` ask for,
    for new sessions only (a reload, no restart): the run's own connections open after."""
    settings = {}
    if args.slow_statements is not None:
        settings["log_min_duration_statement"] = str(args.slow_statements)
    if args.explain_slow is not None:
        settings |= {
            "session_preload_libraries": "'auto_explain'",
            "auto_explain.log_min_duration": str(args.explain_slow),
            "auto_explain.log_analyze": "on",
            "auto_explain.log_buffers": "on",
            "track_io_timing": "on",
        }
    return settings


def print_plans(log: Path, start: int) -> None:
    """The plans auto_explain logged from byte `start` of the server's log, as logged."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    plans = re.findall(r"LOG:  duration: [0-9.]+ ms  plan:.*?(?=\n\S|\Z)", text, re.S)
    print(f"plans logged: {len(plans)}")
    for plan in plans:
        print(plan[:4000])


def print_slow_statements(log: Path, start: int) -> None:
    """The statements the server logged (log_min_duration_statement) from byte `start` of its
    log, slowest first, each cut to 300 characters."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    entries = re.findall(
        r"duration: ([0-9.]+) ms\s+(?:statement|execute [^:]*):(.*?)(?=\n\S|\Z)", text, re.S
    )
    total = sum(float(duration) for duration, _ in entries) / 1000
    print(f"statements over the threshold: {len(entries)}, {total:.1f} s")
    for duration, statement in sorted(entries, key=lambda e: -float(e[0]))[:25]:
        print(f"{float(duration) / 1000:7.2f} s  {' '.join(statement.split())[:300]}")


def daily_sync_job() -> Any:
    """The job as deployed (its resources from the environment), for `dg.reconstructable`."""
    from subsync_pipeline.definitions import defs

    return defs.resolve_job_def("daily_sync_job")


def run_job(args: argparse.Namespace) -> None:
    """Child process: the daily job, in-process, timing each step from Dagster's own events.

    It runs as a deployment runs it (`execute_job`, resources from the environment), not through
    `materialize`, which keeps every step's output in memory for its result and so would report
    the sum of the outputs as the job's peak RSS.
    """
    work = Path(args.work)
    os.environ.update(
        {
            "SUBSYNC_CONFIG": str(work / "subsync.yaml"),
            "SUBSYNC_LANDING_DIR": str(work / "landing"),
            "SUBSYNC_DB_URL": args.state_url,
            "PERSONIFY_DB_URL": args.personify_url,
            "SUBSYNC_REPORTS_DIR": str(work / "reports"),
        }
    )
    # Imported only now, and before the clock starts: the definitions read SUBSYNC_CONFIG when
    # they load.
    import dagster as dg

    daily_sync_job()

    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(0.05):
            samples.append((time.time(), _rss_kb("VmRSS")))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(
            dg.reconstructable(daily_sync_job),
            instance,
            tags={"dagster/partition": args.day},
            raise_on_error=True,
        ) as result,
    ):
        total = time.perf_counter() - started
        # Each step's own peak: the highest RSS sampled between its start and its success.
        logged = [
            (entry.step_key, entry.timestamp, entry.dagster_event)
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is not None
        ]
        began = {step: at for step, at, event in logged if event.is_step_start}
        ended = {step: at for step, at, event in logged if event.is_step_success}
        steps = {
            event.step_key: round(event.step_success_data.duration_ms / 1000, 2)
            for event in result.all_events
            if event.is_step_success
        }
        [resolved] = result.asset_materializations_for_node("contact_subscription_status")
    done.set()
    sampler.join()
    step_rss = {
        step: round(
            max((kb for at, kb in samples if began[step] <= at <= ended[step]), default=0) / 1024
        )
        for step in steps
    }
    resolution = {
        name: resolved.metadata[name].value
        for name in ("events_resolved", "contacts_replayed", "keys")
    }
    # The job's own high-water mark: RUSAGE_CHILDREN would also count the database servers'
    # processes and whatever else the parent waited for.
    print(
        json.dumps(
            {
                "total_s": round(total, 2),
                "steps": steps,
                "step_rss_mb": step_rss,
                "resolution": resolution,
                "peak_rss_mb": round(_rss_kb("VmHWM") / 1024, 1),
            }
        )
    )


def _rss_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS now, VmHWM its high-water mark)."""
    status = Path("/proc/self/status").read_text().splitlines()
    [kb] = [int(line.split()[1]) for line in status if line.startswith(f"{field}:")]
    return kb


def run_child(
    args: argparse.Namespace, work: Path, state_url: str, personify_url: str, profile: str | None
) -> dict[str, Any]:
    """The daily job in a child process (so its peak RSS is the job's alone); its figures."""
    # The session (FILE.pyisession, not committed) can be rendered again with other options,
    # e.g. `pyinstrument --load FILE.pyisession --show '*/dagster/*'`.
    session = f"{profile}.pyisession"
    profiler = (
        [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", session]
        if profile
        else [sys.executable]
    )
    child = subprocess.run(
        [
            *profiler,
            __file__,
            "--child",
            "--work",
            str(work),
            "--day",
            args.day,
            "--state-url",
            state_url,
            "--personify-url",
            personify_url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        sys.stderr.write(child.stderr[-5000:])
        raise SystemExit(f"the daily job failed ({child.returncode})")
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    if profile:
        render = [sys.executable, "-m", "pyinstrument", "--load", session, "-r", "text"]
        subprocess.run([*render, "-o", profile], check=True)
    return figures


def run_peer(server: Any, tracking: Path, work: Path, events: int) -> dict[str, dict[str, Any]]:
    """The day's file loaded by dlt each way (bench/dlt_peer.py), each into a fresh database."""
    peer = {}
    for way, how in WAYS.items():
        print(f"loading the file with dlt, {way} ({how}) ...", flush=True)
        url = server.create_database(f"dlt_{way}")
        peer[way] = load_with_dlt(way, tracking, url, work, events)
    return peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=0, help="e.g. 30000000")
    parser.add_argument("--day", default=DAY)
    parser.add_argument(
        "--history-cache",
        type=Path,
        default=HISTORY_CACHE,
        help=f"where loaded histories are kept between runs (default {HISTORY_CACHE})",
    )
    parser.add_argument("--no-results", action="store_true", help="do not append RESULTS.md")
    parser.add_argument(
        "--no-dlt", action="store_true", help="do not load the file with dlt for comparison"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="write a pyinstrument profile of the job to FILE"
    )
    parser.add_argument(
        "--slow-statements",
        type=int,
        metavar="MS",
        help="print the measured run's SQL statements that took MS ms or more (server log)",
    )
    parser.add_argument(
        "--explain-slow",
        type=int,
        metavar="MS",
        help="print the plans (auto_explain, with buffers and I/O timing) of the measured run's "
        "statements that took MS ms or more",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the operating system's page cache before the measured run (root only)",
    )
    parser.add_argument(
        "--days",
        type=int,
        metavar="D",
        help="the first-load bench: D days ending at --day, as one ranged run and one run per day",
    )
    parser.add_argument(
        "--events-per-day", type=int, default=100_000, metavar="N", help="with --days"
    )
    parser.add_argument(
        "--per-day-sample",
        type=int,
        metavar="K",
        help="with --days: run only the first K days one run per day, and extrapolate",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--state-url", help=argparse.SUPPRESS)
    parser.add_argument("--personify-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--resolution-only", action="store_true", help="time resolve + current_status alone"
    )
    args = parser.parse_args()
    single_day_only = {
        "--history": args.history,
        "--profile": args.profile,
        "--slow-statements": args.slow_statements is not None,
        "--explain-slow": args.explain_slow is not None,
        "--cold": args.cold,
        "--resolution-only": args.resolution_only,
    }
    if args.days is not None:
        if args.days < 1:
            parser.error("--days must be 1 or more")
        if given := [name for name, value in single_day_only.items() if value]:
            parser.error(f"{', '.join(given)}: not with --days (the first-load bench)")
        from first_load import first_load

        first_load(args)
        return
    if args.per_day_sample is not None:
        parser.error("--per-day-sample: only with --days")
    if args.resolution_only:
        seconds = time_resolution(args.events, args.members)
        print(f"resolution of {args.events:,} events: {seconds:.2f} s")
        return
    if args.child:
        run_job(args)
        return

    if not (args.history or args.no_dlt or importlib.util.find_spec("dlt")):
        raise SystemExit("dlt is not installed: .venv/bin/pip install -e '.[bench]', or --no-dlt")

    import yaml

    from subsync_pipeline.core.sandbox import create_sandbox_personify
    from subsync_pipeline_tests.pg_server import PostgresServer

    work = Path(tempfile.mkdtemp(prefix="subsync-bench-", dir="/tmp"))
    os.chmod(work, 0o755)
    (work / "landing").mkdir()
    (work / "subsync.yaml").write_text(yaml.safe_dump(CONFIG))
    cache = args.history_cache / history_key(args.history, args.members, args.day)
    server = PostgresServer(cache / "cluster") if args.history else PostgresServer()
    server.start()
    try:
        if args.history:
            _drop_run_databases(server)
        print(f"generating {args.events:,} events over {args.members:,} members ...", flush=True)
        tracking = work / "landing" / f"rm_tracking_{args.day}.csv"
        tracking_frame(args.events, args.members, args.day, 7, "E").to_csv(tracking, index=False)
        os.chmod(tracking, 0o644)
        mb = tracking.stat().st_size / 1e6

        members = customers(args.members)

        def databases() -> tuple[str, str]:
            personify_url = server.create_database("personify")
            create_sandbox_personify(personify_url, customers=members, reset=True)
            return server.create_database("state"), personify_url

        empty_ledger = None
        if args.history:
            # The same day on an empty ledger, same server and file: what the history costs.
            print("running daily_sync_job on an empty ledger ...", flush=True)
            empty_ledger = run_child(args, work, *databases(), profile=None)
        state_url, personify_url = databases()
        history_s = 0.0
        if args.history:
            history_s = history_state(server, state_url, cache / "loaded.json", args)

        copy_db = server.create_database("copy")
        columns = ", ".join(f"{c} text" for c in pd.read_csv(tracking, nrows=0).columns)
        psql = ["psql", "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        dbname = copy_db.rsplit("/", 1)[1]
        subprocess.run([*psql, "-d", dbname, "-c", f"CREATE TABLE plain ({columns})"], check=True)
        started = time.perf_counter()
        subprocess.run(
            [
                *psql,
                "-d",
                dbname,
                "-c",
                f"\\copy plain FROM '{tracking}' WITH (FORMAT csv, HEADER)",
            ],
            check=True,
        )
        copy_s = time.perf_counter() - started

        print("running daily_sync_job in a child process ...", flush=True)
        diagnostics = _diagnostics(args)
        # ALTER SYSTEM takes auto_explain's settings only from a session that has loaded it.
        loads = ["LOAD 'auto_explain'"] if args.explain_slow is not None else []
        _admin(
            server,
            *loads,
            *(f"ALTER SYSTEM SET {name} = {value}" for name, value in diagnostics.items()),
            "SELECT pg_reload_conf()",
        )
        logged_from = server.log.stat().st_size
        if args.cold:
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        job = run_child(args, work, state_url, personify_url, profile=args.profile)
        rss = job["peak_rss_mb"]
        _admin(
            server,
            *loads,
            *(f"ALTER SYSTEM RESET {name}" for name in diagnostics),
            "SELECT pg_reload_conf()",
        )
        if args.slow_statements is not None:
            print_slow_statements(server.log, logged_from)
        if args.explain_slow is not None:
            print_plans(server.log, logged_from)
        # With a history the tables hold far more than the day stored: no floor then.
        floor = (
            None
            if args.history
            else storage_floor(server, psql, work, {"state": state_url, "personify": personify_url})
        )
        # With a history subsync's day runs over far more than dlt's empty table holds.
        peer = {} if args.history or args.no_dlt else run_peer(server, tracking, work, args.events)
    finally:
        try:
            if args.history:
                _drop_run_databases(server)
        finally:
            server.stop()
            # The day's file and reports (a million events are 140 MB): nothing reads them after.
            shutil.rmtree(work, ignore_errors=True)

    total = job["total_s"]
    figures = {
        "commit": commit_label(),
        "date": date.today().isoformat(),
        "events": args.events,
        "members": args.members,
        "history": args.history,
        "file_mb": round(mb, 1),
        "copy_s": round(copy_s, 2),
        "pipeline_s": total,
        "ratio": round(total / copy_s, 1),
        "events_per_s": int(args.events / total),
        "peak_rss_mb": rss,
        "history_load_s": round(history_s, 1),
        **(
            {
                "empty_ledger_s": empty_ledger["total_s"],
                "empty_ledger_steps": empty_ledger["steps"],
                "history_ratio": round(total / empty_ledger["total_s"], 2),
            }
            if empty_ledger
            else {}
        ),
        **(
            {
                "storage_floor": floor,
                "floor_ratio": round(floor["floor_s"] / copy_s, 1),
                "floor_plain_ratio": round(floor["floor_plain_s"] / copy_s, 1),
            }
            if floor
            else {}
        ),
        **(
            {
                "dlt": peer,
                "subsync_over_dlt": {
                    way: round(total / loaded["seconds"], 1) for way, loaded in peer.items()
                },
            }
            if peer
            else {}
        ),
        "steps": job["steps"],
        "step_rss_mb": job["step_rss_mb"],
        "resolution": job["resolution"],
    }
    print(json.dumps(figures, indent=2))
    for way, ratio in figures.get("subsync_over_dlt", {}).items():
        how = described(way, peer[way]["file_format"])
        print(f"subsync / dlt {way} = {ratio} ({total} s / {peer[way]['seconds']} s; {how})")
    if not args.no_results:
        steps = ", ".join(f"{k} {v}s ({job['step_rss_mb'][k]} MB)" for k, v in job["steps"].items())
        if empty_ledger:
            empty_steps = ", ".join(f"{k} {v}s" for k, v in empty_ledger["steps"].items())
            steps += (
                f"; **{figures['history_ratio']}x the same day on an empty ledger "
                f"({empty_ledger['total_s']} s: {empty_steps})**"
            )
        if floor:
            steps += (
                f"; storage floor {floor['floor_s']} s = {figures['floor_ratio']}x COPY "
                f"({floor['floor_plain_s']} s = {figures['floor_plain_ratio']}x without indexes)"
            )
        if peer:
            peers = "; ".join(
                f"{way} ({described(way, peer[way]['file_format'])}) {peer[way]['seconds']} s, "
                f"subsync / dlt {way} = "
                f"{figures['subsync_over_dlt'][way]}"
                for way in peer
            )
            steps += f"; **dlt, merge on event_id into an empty table: {peers}**"
        line = (
            f"| {figures['commit']} | {figures['date']} | {args.events:,} | {args.members:,} | "
            f"{args.history:,} | {figures['copy_s']} | {total} | {figures['ratio']} | "
            f"{figures['events_per_s']:,} | {rss} | {steps} |\n"
        )
        add_rows("## Runs", RUNS_HEADER, [line])


if __name__ == "__main__":
    main()
