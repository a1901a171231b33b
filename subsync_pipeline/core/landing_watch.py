"""Watching the landing folder for complete new or changed files, with a cursor that stays small.

A file is complete once its size and mtime are the same on two consecutive polls (copies and
upload clients write in place; the FTPS fetch renames a finished file in). Files whose ctime is
at or below the watermark were handled before; ctime moves on every write, rename or copy, so
nothing new hides below it. Only files still being written are remembered by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from subsync_pipeline.core.manifest import list_landed_files


@dataclass(frozen=True)
class WatchCursor:
    watermark_ns: int = 0
    pending: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"watermark_ns": self.watermark_ns, "pending": self.pending})

    @classmethod
    def from_json(cls, text: str | None) -> WatchCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(watermark_ns=int(data.get("watermark_ns", 0)), pending=data.get("pending", {}))


def poll(folder: Path, cursor: WatchCursor, limit: int = 200) -> tuple[list[Path], WatchCursor]:
    """The files that became complete since the last poll (at most `limit`), and the new cursor."""
    ready: list[Path] = []
    pending: dict[str, list[int]] = {}
    watermark = cursor.watermark_ns
    for path in list_landed_files(folder):
        stat = path.stat()
        key = str(path)
        if stat.st_ctime_ns <= cursor.watermark_ns and key not in cursor.pending:
            continue
        signature = [stat.st_size, stat.st_mtime_ns]
        if cursor.pending.get(key) == signature and len(ready) < limit:
            ready.append(path)
        else:
            pending[key] = signature
        watermark = max(watermark, stat.st_ctime_ns)
    return ready, WatchCursor(watermark_ns=watermark, pending=pending)
