"""The first load (issue 23): D days backfilled as one ranged run, and as one run per day.

`bench/run.py --days D --events-per-day N [--members M] [--per-day-sample K]` (see run.py's
docstring) lands here. The D daily tracking files end at --day; one sandbox Personify holds the
members. Each mode starts from fresh databases on the same server (an empty state database,
empty CUS_OPT_IN and CUS_ACTIVITY) and a fresh DAGSTER_HOME, and runs the Dagster CLI as an
operator would, each command in a child process of its own:

- ranged: `dagster asset materialize -m subsync_pipeline.definitions --select '*'
  --partition-range FIRST...LAST`, one command for all D days;
- per day: `... --partition DAY` for each day in order, as the backfill daemon's one run per day
  would launch them; with K, only the first K days, and the total extrapolated linearly.

A command's peak RSS is `ru_maxrss` from `os.wait4` on it: on Linux the largest peak of the
child and of every descendant it waited for; a maximum, not a sum, and a descendant it never
waited for is not in it. (Checked: a 10 MB child running a 400 MB grandchild reports 410 MB; a
child holding 300 MB while a 400 MB grandchild runs reports 410 MB, not 710; a 400 MB grandchild
it never waits for leaves 11 MB.) The CLI runs the job in its own process (in_process_executor),
so the figure is the job's. PostgreSQL's processes are the bench's, not the command's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from results import add_rows, commit_label
from synthetic import CONFIG, customers, tracking_frame

from subsync_pipeline.core.sandbox import create_sandbox_personify
from subsync_pipeline_tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PERSONIFY_TABLES = ("CUS_OPT_IN", "CUS_ACTIVITY")
DAGSTER_YAML = "telemetry:\n  enabled: false\n"
MATERIALIZE = ["asset", "materialize", "-m", "subsync_pipeline.definitions", "--select", "*"]
HEADING = "### First loads (`bench/run.py --days`)"
INTRO = (
    "D days of N events backfilled from empty databases by the Dagster CLI: as one ranged run\n"
    "(`--partition-range`) and as one run per day (`--partition DAY`, one process each). Peak\n"
    "RSS is `ru_maxrss` of the command (for one run per day, the largest of the runs)."
)
HEADER = (
    "| commit | date | days | events/day | members | mode | runs | total s | s/day | events/s "
    "| peak RSS MB | CUS_OPT_IN / CUS_ACTIVITY rows | notes |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def backfill_days(last: str, days: int) -> list[str]:
    """`days` consecutive days (YYYY-MM-DD) ending at `last`."""
    end = date.fromisoformat(last)
    return [(end - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def personify_rows(url: str) -> dict[str, int]:
    """Row counts of the Personify tables subsync writes."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        counts = {}
        for table in PERSONIFY_TABLES:
            # The names are the constants above, not input.
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
            counts[table] = row[0] if row else 0
    return counts


def materialize(partition: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    """One `dagster asset materialize` command in a child process: its seconds and peak RSS (MB).

    Its output goes to `log`; a failure ends the bench with the end of that log.
    """
    dagster = Path(sys.executable).with_name("dagster")
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            [str(dagster), *MATERIALIZE, *partition],
            env=env,
            stdout=out,
            stderr=out,
            cwd=log.parent,
        )
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-5000:])
        raise SystemExit(f"dagster asset materialize {' '.join(partition)} failed")
    return seconds, usage.ru_maxrss // 1024


def run_mode(
    name: str,
    partitions: list[list[str]],
    server: Any,
    work: Path,
    members: int,
) -> dict[str, Any]:
    """Run `partitions` (one CLI command each, in order) from fresh databases and a fresh
    DAGSTER_HOME; the time, the peak RSS and the Personify rows they left."""
    home = work / f"dagster-{name}"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    personify_url = server.create_database(f"personify_{name}")
    create_sandbox_personify(personify_url, customers=customers(members), reset=True)
    before = personify_rows(personify_url)
    if any(before.values()):
        raise SystemExit(f"the sandbox Personify is not empty: {before}")
    env = {
        **os.environ,
        # The work tree's subsync, not the one the virtualenv's editable install points at.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DAGSTER_HOME": str(home),
        "SUBSYNC_CONFIG": str(work / "subsync.yaml"),
        "SUBSYNC_LANDING_DIR": str(work / "landing"),
        "SUBSYNC_DB_URL": server.create_database(f"state_{name}"),
        "PERSONIFY_DB_URL": personify_url,
        "SUBSYNC_REPORTS_DIR": str(work / f"reports-{name}"),
    }
    seconds: list[float] = []
    peaks: list[int] = []
    for number, partition in enumerate(partitions, start=1):
        print(f"  dagster asset materialize ... {' '.join(partition)}", flush=True)
        took, peak = materialize(partition, env, home / f"run-{number}.log")
        seconds.append(took)
        peaks.append(peak)
    return {
        "runs": len(partitions),
        "seconds": round(sum(seconds), 2),
        "run_seconds": [round(took, 2) for took in seconds],
        "peak_rss_mb": max(peaks),
        "personify_rows": personify_rows(personify_url),
    }


def first_load(args: argparse.Namespace) -> None:
    """The first-load bench: both modes, the comparison, and (unless --no-results) two rows."""
    days = backfill_days(args.day, args.days)
    sample = args.per_day_sample or args.days
    if not 1 <= sample <= args.days:
        raise SystemExit(f"--per-day-sample must be between 1 and --days ({args.days})")
    events = args.days * args.events_per_day
    work = Path(tempfile.mkdtemp(prefix="subsync-first-load-", dir="/tmp"))
    os.chmod(work, 0o755)
    (work / "landing").mkdir()
    (work / "subsync.yaml").write_text(yaml.safe_dump(CONFIG))
    server = PostgresServer()
    server.start()
    try:
        print(
            f"generating {args.days} days ({days[0]} to {days[-1]}) of "
            f"{args.events_per_day:,} events over {args.members:,} members ...",
            flush=True,
        )
        for n, day in enumerate(days):
            # Seed and event-id prefix per day: every event id is unique across the days.
            frame = tracking_frame(args.events_per_day, args.members, day, n, f"D{n:03d}E")
            frame.to_csv(work / "landing" / f"rm_tracking_{day}.csv", index=False)
        print(f"ranged: one command for {args.days} days ...", flush=True)
        ranged = run_mode(
            "ranged", [["--partition-range", f"{days[0]}...{days[-1]}"]], server, work, args.members
        )
        print(f"per day: one command per day, {sample} of {args.days} days ...", flush=True)
        per_day = run_mode(
            "per_day", [["--partition", day] for day in days[:sample]], server, work, args.members
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    sampled = sample < args.days
    # The first run scans the whole landing folder (every file is new to it); the runs after
    # it cost about the same each day (a little more as the ledger grows, which this leaves
    # out: the estimate is low). So: the first, plus the mean of the others for each other day.
    runs = per_day["run_seconds"]
    later = runs[1:] or runs
    per_day_total = round(runs[0] + sum(later) / len(later) * (args.days - 1), 2)
    speedup = round(per_day_total / ranged["seconds"], 2)
    ranged_rows, per_day_rows = ranged["personify_rows"], per_day["personify_rows"]
    counts = " / ".join(f"{ranged_rows[t]:,}" for t in PERSONIFY_TABLES)
    per_day_counts = " / ".join(f"{per_day_rows[t]:,}" for t in PERSONIFY_TABLES)
    extrapolated = (
        f"EXTRAPOLATED: only the first {sample} of {args.days} days ran one run per day "
        f"({per_day['seconds']} s); the total is the first run plus the mean of the others for "
        f"each of the other {args.days - 1} days"
    )
    print()
    print(
        f"first load of {args.days} days x {args.events_per_day:,} events = {events:,} events, "
        f"{args.members:,} members, {days[0]}...{days[-1]}"
    )
    print(
        f"ranged (1 command):  {ranged['seconds']} s, {ranged['seconds'] / args.days:.2f} s a "
        f"day, {events / ranged['seconds']:,.0f} events/s, peak RSS {ranged['peak_rss_mb']:,} MB"
    )
    if sampled:
        print(f"*** {extrapolated} ***")
    print(
        f"per day ({per_day['runs']} command{'s' if per_day['runs'] > 1 else ''}): "
        f"{per_day_total} s"
        f"{' (EXTRAPOLATED)' if sampled else ''}, {per_day_total / args.days:.2f} s a day, "
        f"{events / per_day_total:,.0f} events/s, max peak RSS {per_day['peak_rss_mb']:,} MB"
    )
    print(f"per-day runs: {per_day['run_seconds']} s")
    print(f"ranged / per-day speed-up: {speedup}x{' (EXTRAPOLATED)' if sampled else ''}")
    print(f"Personify CUS_OPT_IN / CUS_ACTIVITY rows: ranged {counts}, per day {per_day_counts}")
    if sampled:
        print(f"*** row counts not compared: only {sample} of {args.days} days ran per day ***")
    elif ranged_rows != per_day_rows:
        raise SystemExit(f"Personify rows differ: ranged {ranged_rows}, per day {per_day_rows}")
    if args.no_results:
        return
    commit, today = commit_label(), date.today().isoformat()

    def row(mode: str, figures: dict[str, Any], total: float, rows: str, notes: str) -> str:
        return (
            f"| {commit} | {today} | {args.days} | {args.events_per_day:,} | {args.members:,} | "
            f"{mode} | {figures['runs']} | {total} | {total / args.days:.2f} | "
            f"{events / total:,.0f} | {figures['peak_rss_mb']:,} | {rows} | {notes} |\n"
        )

    add_rows(
        HEADING,
        HEADER,
        [
            row(
                "ranged (1 run)",
                ranged,
                ranged["seconds"],
                counts,
                f"**{speedup}x one run per day**{' (extrapolated)' if sampled else ''}",
            ),
            row(
                "one run per day",
                per_day,
                per_day_total,
                per_day_counts,
                f"**{extrapolated}**" if sampled else "row counts equal to the ranged run's",
            ),
        ],
        INTRO,
    )
