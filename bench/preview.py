"""How long `subsync preview --since` takes for a first backfill (issue 20): D days of N events.

    .venv/bin/python bench/preview.py                  # 30 days of 100,000 events, 200,000 members

It starts a throwaway PostgreSQL 15 server, writes one tracking file per day (the bench's
synthetic day, `synthetic.tracking_frame`), creates a sandbox Personify with the members, and runs
`subsync preview --since FIRST_DAY` in a child process against PostgreSQL for both Personify and
state, from an empty state database: the question an association asks before its first backfill.
It prints the wall time, the time per day and the child's peak RSS; nothing is appended to
RESULTS.md (the figure goes there by hand, with the commit).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import CONFIG, customers, tracking_frame  # noqa: E402

from subsync_pipeline.core.sandbox import create_sandbox_personify  # noqa: E402
from subsync_pipeline_tests.pg_server import PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-day", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="subsync-preview-bench-", dir="/tmp"))
    os.chmod(work, 0o755)
    landing = work / "landing"
    landing.mkdir()
    (work / "subsync.yaml").write_text(yaml.safe_dump(CONFIG))
    first = date.today() - timedelta(days=args.days)
    days = [(first + timedelta(days=n)).isoformat() for n in range(args.days)]
    server = PostgresServer()
    server.start()
    try:
        print(f"generating {args.days} days of {args.events_per_day:,} events ...", flush=True)
        for n, day in enumerate(days):
            frame = tracking_frame(args.events_per_day, args.members, day, n, f"D{n:03d}E")
            frame.to_csv(landing / f"rm_tracking_{day}.csv", index=False)
        personify_url = server.create_database("personify")
        create_sandbox_personify(personify_url, customers=customers(args.members), reset=True)
        env = {
            **os.environ,
            "SUBSYNC_CONFIG": str(work / "subsync.yaml"),
            "SUBSYNC_LANDING_DIR": str(landing),
            "SUBSYNC_DB_URL": server.create_database("state"),
            "PERSONIFY_DB_URL": personify_url,
            "SUBSYNC_REPORTS_DIR": str(work / "reports"),
        }
        print(f"subsync preview --since {days[0]} ...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "subsync_pipeline.cli", "preview", "--since", days[0]],
            env=env,
            check=True,
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"preview of {args.days} days x {args.events_per_day:,} events: {seconds:.1f} s "
        f"({seconds / args.days:.2f} s a day), peak RSS of the largest child {peak:,.0f} MB"
    )


if __name__ == "__main__":
    main()
