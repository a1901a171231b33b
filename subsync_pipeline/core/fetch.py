"""Fetching Real Magnet's tracking logs into the landing folder, and whether that keeps up.

A remote file's version is its name, size and modification time as listed. Each version is
fetched once into the landing folder, under the remote name or, for a file that changed on the
server, a new one, and recorded in `fetched_files`; the upload sensor then takes it as it takes
a file dropped by hand. Nothing on the server is ever deleted or renamed. Real Magnet archives a
file 30 days after delivery: one not fetched by then is lost, hence `FetchHealth`.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core.ftps import FTPSClient, RemoteFile, RetrieveRefused
from subsync_pipeline.core.state import fetched_files
from subsync_pipeline.core.tracking_log import TRACKING_SUFFIXES, is_tracking_file

ARCHIVE_AFTER = timedelta(days=30)
ARCHIVE_WARNING = timedelta(days=5)
# Held while fetching, so the sensor and a manual fetch_tracking_logs run never fetch the same
# file at once. Hidden: the upload sensor ignores it.
LOCK_NAME = ".subsync-fetch.lock"
_NAMES_SHOWN = 5


@dataclass
class FetchOutcome:
    listed: int = 0
    fetched: list[tuple[RemoteFile, str]] = field(default_factory=list)
    # Listed and still not fetched when this fetch ended (out of time, or refused).
    waiting: list[RemoteFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    busy: bool = False

    def summary(self) -> str:
        """One line for a sensor tick or a run's log: how far behind the landing folder is."""
        if self.busy:
            return "another fetch from Real Magnet is running (sensor or fetch_tracking_logs)"
        if self.fetched:
            names = _names([local for _, local in self.fetched])
            head = f"fetched {len(self.fetched)} file(s): {names}"
        else:
            head = f"nothing new on Real Magnet's server ({self.listed} tracking file(s) listed)"
        parts = [head, f"{len(self.waiting)} file(s) waiting on the server"]
        if self.refused:
            refused = "; ".join(self.refused.values())
            parts.append(f"{len(self.refused)} refused by the server: {refused}")
        return "; ".join(parts)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"


def fetchable(listing: list[RemoteFile]) -> list[RemoteFile]:
    """The tracking logs of a listing; a name that is not a plain file name is never written."""
    return [
        remote
        for remote in listing
        if Path(remote.name).name == remote.name
        and "\\" not in remote.name
        and is_tracking_file(Path(remote.name))
    ]


def unfetched(conn: Connection, listing: list[RemoteFile]) -> list[RemoteFile]:
    """The listed tracking logs whose version has not been fetched, oldest first."""
    candidates = fetchable(listing)
    names = [remote.name for remote in candidates]
    table = fetched_files
    query = sa.select(table.c.remote_name, table.c.remote_size, table.c.remote_modified).where(
        table.c.remote_name.in_(names)
    )
    seen = set(conn.execute(query).tuples()) if names else set()
    waiting = [r for r in candidates if (r.name, r.size, r.modified) not in seen]
    return sorted(waiting, key=lambda r: (r.modified or datetime.max, r.name))


def local_name(conn: Connection, landing: Path, remote: RemoteFile) -> str:
    """The remote name if nothing has had it; else the name with the version's time (and a
    counter) before its suffix, so a changed file is a new file to the manifest."""
    suffix = next(
        s
        for s in sorted(TRACKING_SUFFIXES, key=len, reverse=True)
        if remote.name.lower().endswith(s)
    )
    stem, ext = remote.name[: -len(suffix)], remote.name[-len(suffix) :]
    stamp = f"{remote.modified:%Y%m%dT%H%M%S}" if remote.modified else f"{remote.size}b"
    candidates = [remote.name, f"{stem}.{stamp}{ext}"]
    count = 2
    while True:
        for name in candidates:
            recorded = conn.execute(
                sa.select(fetched_files.c.fetch_id).where(fetched_files.c.local_name == name)
            ).first()
            if recorded is None and not (landing / name).exists():
                return name
        candidates = [f"{stem}.{stamp}-{count}{ext}"]
        count += 1


@contextmanager
def _exclusive(landing: Path) -> Iterator[bool]:
    with (landing / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(
    client: FTPSClient, engine: Engine, landing: Path, deadline: float | None = None
) -> FetchOutcome:
    """Fetch every listed version not fetched yet, oldest first, each recorded once it is in the
    landing folder; none is started after `deadline` (time.monotonic()). A file the server
    refuses is skipped; any other failure stops the fetch (what was fetched stays recorded)."""
    with _exclusive(landing) as mine:
        if not mine:
            return FetchOutcome(busy=True)
        listing = client.listing()
        with engine.connect() as conn:
            todo = unfetched(conn, listing)
        outcome = FetchOutcome(listed=len(fetchable(listing)))
        for index, remote in enumerate(todo):
            if deadline is not None and time.monotonic() > deadline:
                outcome.waiting.extend(todo[index:])
                break
            with engine.connect() as conn:
                name = local_name(conn, landing, remote)
            try:
                digest = client.download(remote, landing / name)
            except RetrieveRefused as refused:
                outcome.refused[remote.name] = str(refused)
                outcome.waiting.append(remote)
                continue
            with engine.begin() as conn:
                conn.execute(
                    fetched_files.insert().values(
                        remote_name=remote.name,
                        remote_size=remote.size,
                        remote_modified=remote.modified,
                        local_name=name,
                        content_hash=digest,
                        fetched_at=_utcnow(),
                    )
                )
            outcome.fetched.append((remote, name))
        return outcome


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class FetchHealth:
    """Whether fetching keeps up: the newest fetched file's age, and the files not fetched that
    Real Magnet archives within `ARCHIVE_WARNING`."""

    newest: datetime | None
    now: datetime
    max_age: timedelta
    near_archive: list[RemoteFile]

    @property
    def age(self) -> timedelta | None:
        return None if self.newest is None else self.now - self.newest

    @property
    def stale(self) -> bool:
        return self.age is None or self.age > self.max_age

    def archived_at(self, remote: RemoteFile) -> datetime:
        assert remote.modified is not None
        return remote.modified + ARCHIVE_AFTER


def health(
    conn: Connection, waiting: list[RemoteFile], max_age: timedelta, now: datetime | None = None
) -> FetchHealth:
    """`waiting`: the listed files not fetched. The newest fetched file is the one modified
    last on the server (when it was fetched, for a server that does not tell)."""
    now = now or _utcnow()
    modified, fetched = conn.execute(
        sa.select(
            sa.func.max(fetched_files.c.remote_modified), sa.func.max(fetched_files.c.fetched_at)
        )
    ).one()
    horizon = now - (ARCHIVE_AFTER - ARCHIVE_WARNING)
    near = [r for r in waiting if r.modified is not None and r.modified <= horizon]
    return FetchHealth(newest=modified or fetched, now=now, max_age=max_age, near_archive=near)
