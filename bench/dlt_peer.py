"""The peer in the same run (issue 23): dlt loading the same tracking file into the same server.

subsync's time for a day means more beside what a general loader takes to land the same file in
the same PostgreSQL with the same key (a merge on event_id) than beside a bare COPY. Two ways:

- defaults: dlt as it comes: a resource yielding pandas chunks, the loader file format left to
  dlt. (dlt 1.31 prefers insert_values for PostgreSQL, but has no native writer of it for
  DataFrames and Arrow, so it writes their rows as CSV and COPYs them: only its own state table
  goes as insert_values. The format it used for the events is reported, not assumed.)
- fastest: dlt's quickest path to PostgreSQL: a resource yielding Arrow record batches from
  `pyarrow.csv.open_csv`, `loader_file_format="csv"` (COPY).

Both read every column as text, as the file holds it and as the COPY baseline loads it (a reader
that guesses types per chunk can guess differently for two chunks). Each way runs in a child
process of its own (`python bench/dlt_peer.py WAY FILE URL DIR`), into a fresh database, with
dlt's working directory under the bench's work dir; the time is the whole `pipeline.run`
(extract, normalize, load), and the parent counts the rows that landed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlt.common.destination import TLoaderFileFormat

# What each way does, for the printout and RESULTS.md.
WAYS = {
    "defaults": "pandas chunks, file format left to dlt",
    "fastest": "Arrow batches, csv COPY",
}
# The loader file format each way asks for; None leaves it to dlt.
ASKED_FORMAT: dict[str, TLoaderFileFormat | None] = {"defaults": None, "fastest": "csv"}
DATASET = "rm_tracking"
TABLE = "events"
# pandas needs a chunk size to stream; 100,000 rows of the bench's file are about 14 MB.
PANDAS_CHUNK_ROWS = 100_000
# pyarrow's default block (1 MB, ~7,000 rows) would make dlt handle ~140 batches per 1M events.
ARROW_BLOCK_BYTES = 32 << 20


def dlt_url(url: str) -> str:
    """The SQLAlchemy URL of a bench database as dlt's PostgreSQL credentials take it.

    dlt insists on a password; the bench's server trusts local connections, so it never asks
    for this one.
    """
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql", password="unused")
    return plain.render_as_string(hide_password=False)


def described(way: str, file_format: str) -> str:
    """The way, and the file format dlt chose where the way left it to dlt."""
    return WAYS[way] + ("" if ASKED_FORMAT[way] else f": {file_format}")


def load_with_dlt(way: str, tracking: Path, url: str, work: Path, events: int) -> dict[str, Any]:
    """Load `tracking` into the (fresh) database at `url` the dlt way `way`, in a child process;
    its figures, once the rows that landed are counted and match `events`."""
    import psycopg

    home = work / "dlt" / way
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        # No .dlt/config.toml of whatever directory the bench runs from; dlt's data dir and a
        # non-root user's global dir (~/.dlt) in the work dir too.
        "DLT_PROJECT_DIR": str(home),
        "DLT_DATA_DIR": str(home),
        "HOME": str(home),
    }
    child = subprocess.run(
        [sys.executable, __file__, way, str(tracking), dlt_url(url), str(home)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if child.returncode != 0:
        sys.stderr.write(child.stderr[-5000:])
        raise SystemExit(f"dlt ({way}) failed ({child.returncode})")
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    with psycopg.connect(dlt_url(url)) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{DATASET}"."{TABLE}"').fetchone()  # noqa: S608
    figures["rows"] = row[0] if row else 0
    if figures["rows"] != events:
        raise SystemExit(f"dlt ({way}) landed {figures['rows']:,} rows of {events:,}")
    asked = ASKED_FORMAT[way]
    if asked and figures["file_format"] != asked:
        raise SystemExit(f"dlt ({way}) loaded {figures['file_format']}, not {asked}")
    return figures


def _pandas_chunks(tracking: Path) -> Iterator[Any]:
    import pandas as pd

    yield from pd.read_csv(tracking, chunksize=PANDAS_CHUNK_ROWS, dtype=str, keep_default_na=False)


def _arrow_batches(tracking: Path) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with tracking.open() as handle:
        names = handle.readline().strip().split(",")
    yield from pacsv.open_csv(
        tracking,
        read_options=pacsv.ReadOptions(block_size=ARROW_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )


def run_way(way: str, tracking: Path, url: str, home: Path) -> dict[str, Any]:
    """Child process: one dlt pipeline run, timed whole; the file format its events went in,
    and its peak RSS."""
    import dlt

    rows = _pandas_chunks(tracking) if way == "defaults" else _arrow_batches(tracking)
    resource = dlt.resource(rows, name=TABLE, write_disposition="merge", primary_key="event_id")
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{way}",
        pipelines_dir=str(home / "pipelines"),
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name=DATASET,
    )
    asked = ASKED_FORMAT[way]
    started = time.perf_counter()
    info = pipeline.run(resource, loader_file_format=asked) if asked else pipeline.run(resource)
    seconds = time.perf_counter() - started
    # The events' load jobs; "sql" is the merge that follows them.
    [file_format] = {
        job.job_file_info.file_format
        for package in info.load_packages
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name == TABLE and job.job_file_info.file_format != "sql"
    }
    status = Path("/proc/self/status").read_text().splitlines()
    [peak_kb] = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
    return {
        "seconds": round(seconds, 2),
        "file_format": file_format,
        "peak_rss_mb": peak_kb // 1024,
    }


if __name__ == "__main__":
    way, tracking, url, home = sys.argv[1:]
    print(json.dumps(run_way(way, Path(tracking), url, Path(home))))
