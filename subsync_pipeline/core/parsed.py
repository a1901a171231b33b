"""Parsed tracking files, kept on local disk for the rest of the process.

Parsing a file (reading the CSV, dating and fingerprinting its rows) takes about 8 s a million
rows. The scan that records a file parses it anyway, and the raw and validation steps read the
same rows again, a ranged run once per chunk of days; holding them in memory between steps would
make a backfill's memory that of its whole range. An Arrow file per parsed file gives the rows
back in a twentieth of the time without holding them. Entries are keyed by the content hash the
manifest records, so a changed file is never served from an old parse.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

_folder: list[Path] = []


def _path(content_hash: str) -> Path:
    if not _folder:
        _folder.append(Path(tempfile.mkdtemp(prefix="subsync-parsed-")))
        atexit.register(shutil.rmtree, _folder[0], True)
    return _folder[0] / f"{content_hash}.arrow"


def keep(content_hash: str, rows: pd.DataFrame) -> None:
    """Keep a file's parsed rows (zstd: a quarter of the CSV's size on disk, as fast as raw)."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    feather.write_feather(table, _path(content_hash), compression="zstd")


def load(content_hash: str) -> pd.DataFrame | None:
    """A file's parsed rows if this process kept them."""
    path = _path(content_hash)
    return feather.read_table(path).to_pandas() if path.exists() else None
