"""Links to the files under SUBSYNC_REPORTS_DIR, as Dagster metadata shows them.

A `file://` link only opens on the machine that wrote the file, and a browser will not follow
one from the Dagster UI; with `reports_base_url` set, the link is the file's place under the web
server that publishes the reports folder to stewards (deploy/nginx, docs/access.md).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote


def report_link(path: Path, reports_dir: Path, base_url: str | None) -> str:
    """`path` (a file under `reports_dir`) as a `file://` link, or under `base_url` when set."""
    if base_url is None:
        return path.resolve().as_uri()
    relative = path.resolve().relative_to(reports_dir.resolve())
    return f"{base_url.rstrip('/')}/{quote(relative.as_posix())}"
