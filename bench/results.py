"""RESULTS.md: which commit a row measured, and rows put into the table they belong to.

RESULTS.md holds more than one table, so a row is inserted after the last row of its own table
rather than appended to the file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


def commit_label() -> str:
    """The short commit, with "+dirty" when the work tree differs from it."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # The results file itself is not a change to what was measured.
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench/RESULTS.md",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def add_rows(heading: str, header: str, rows: list[str], intro: str = "") -> None:
    """Put `rows` (table lines, newline-terminated) after the last row of the first table under
    the `heading` line; a missing heading is added at the end of the file with `intro` and the
    table's `header` (its column line and separator line)."""
    lines = RESULTS.read_text(encoding="utf-8").splitlines(keepends=True)
    if f"{heading}\n" not in lines:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += ["\n", f"{heading}\n", "\n", *([f"{intro}\n", "\n"] if intro else []), header]
    at = lines.index(f"{heading}\n") + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines[at:at] = rows
    RESULTS.write_text("".join(lines), encoding="utf-8")
