"""Files too large to read in memory (issue 7): a gzip file that unpacks to 2 GB and a plain file
over the limit are refused as file_too_large, naming the file, its size and the fix, by a process
whose address space is capped at 256 MB above what it has imported; the small file beside them
still reads. Without the limit the same process runs out of memory: the cap is real.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.manifest import fallback_day
from subsync_pipeline_tests.harness import DEFAULT_CONFIG, deploy, event

DAY = "2026-11-20"
CAP_MB = 256
GIGABYTE = 1 << 30
# Imports first, then the cap, measured from the address space the process already holds.
SCRIPT = """
import json, resource, sys
from pathlib import Path
from subsync_pipeline.core import sync
from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.state import create_state_engine

root, state, cap_mb, days = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
engine = create_state_engine(f"sqlite:///{root / state}")
config = load_config(root / "subsync.yaml")
size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + cap_mb * 1024 * 1024, resource.RLIM_INFINITY))
raw = sync.ingest(engine, root / "landing", config, days)
print(json.dumps(raw.files[["path", "status", "error", "rows_read"]].to_dict("records")))
"""


def gzip_of_two_gigabytes(path: Path) -> None:
    """2 GB of one tracking row repeated, as gzip members of a megabyte each: 8 MB on disk."""
    header = ",".join(event("E", "000100", "subscribe", "api", "").keys()) + "\n"
    row = ",".join(event("B1", "000100", "subscribe", "api", "2026-11-20T09:00:00").values())
    rows = ((row + "\n") * ((1 << 20) // (len(row) + 1))).encode()
    member = gzip.compress(rows)
    with path.open("wb") as handle:
        handle.write(gzip.compress(header.encode()))
        for _ in range(2 * GIGABYTE // len(rows)):
            handle.write(member)


def recorded_day() -> str:
    """The day files without a readable row are reported under: the day they were recorded."""
    return fallback_day(parse_config(DEFAULT_CONFIG), datetime.now(UTC))


def ingest_capped(root: Path, state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), state, str(CAP_MB), DAY, recorded_day()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_huge_files_are_refused_within_a_memory_cap(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.set_config(max_file_mb=32)
    deployment.land("ok.csv", [event("OK1", "000100", "subscribe", "api", "2026-11-20T09:00:00")])
    with (deployment.landing / "sparse.csv").open("wb") as handle:
        handle.truncate(40 << 20)  # sparse: 40 MB by size, nothing on disk
    gzip_of_two_gigabytes(deployment.landing / "bomb.csv.gz")
    assert (deployment.landing / "bomb.csv.gz").stat().st_size < 16 << 20

    done = ingest_capped(deployment.root, "guarded.db")
    assert done.returncode == 0, done.stderr[-3000:]
    files = {Path(f["path"]).name: f for f in json.loads(done.stdout.splitlines()[-1])}
    assert files["ok.csv"]["status"] == "ok" and files["ok.csv"]["rows_read"] == 1
    assert files["sparse.csv"]["status"] == "file_too_large"
    assert "sparse.csv is 40 MB, over max_file_mb = 32 MB" in files["sparse.csv"]["error"]
    assert files["bomb.csv.gz"]["status"] == "file_too_large"
    assert "bomb.csv.gz unpacks to more than 32 MB" in files["bomb.csv.gz"]["error"]
    assert "split the export" in files["bomb.csv.gz"]["error"]

    # The same process with a limit above the cap: reading the 2 GB runs out of memory.
    deployment.set_config(max_file_mb=4096)
    unguarded = ingest_capped(deployment.root, "unguarded.db")
    assert unguarded.returncode != 0 and "MemoryError" in unguarded.stderr
