"""The notices outbox in subsync's state database: a notice is queued once per channel (its key
and the channel are the row's key), then sent by whoever drains the outbox, URL by URL. A URL
that refuses is tried again on the next drain; one that took it is not sent it again.

The queue and the delivery record survive a daemon restart, so a notice is neither lost nor
sent twice (short of a crash between a server accepting it and the row being updated).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subsync_pipeline.core import state
from subsync_pipeline.core.channels import Target, send
from subsync_pipeline.core.notify import Notice

PENDING = "pending"
SENT = "sent"
# Decided not to send (a clean day's digest): kept so the decision is taken once.
SKIPPED = "skipped"
GAVE_UP = "gave_up"
# A notice nobody could be sent for a day is stale: yesterday's digest is not news tomorrow.
RETRY_FOR = timedelta(hours=24)


def _naive(moment: datetime) -> datetime:
    """UTC without tzinfo, as the state database's DateTime columns hold it."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def queued(conn: Connection, key: str, channel: str) -> bool:
    table = state.notices
    found = conn.execute(
        sa.select(table.c.notice_key).where(table.c.notice_key == key, table.c.channel == channel)
    ).first()
    return found is not None


def queue(
    conn: Connection,
    notice: Notice,
    channels: Iterable[str],
    now: datetime,
    status: str = PENDING,
) -> list[str]:
    """Queue `notice` for each channel that has not had it queued; the channels newly queued."""
    table = state.notices
    added = [channel for channel in channels if not queued(conn, notice.key, channel)]
    if added:
        conn.execute(
            table.insert(),
            [
                {
                    "notice_key": notice.key,
                    "channel": channel,
                    "subject": notice.subject,
                    "body": notice.body,
                    "status": status,
                    "delivered": "",
                    "attempts": 0,
                    "queued_at": _naive(now),
                    "updated_at": _naive(now),
                }
                for channel in added
            ],
        )
    return added


@dataclass(frozen=True)
class Delivery:
    """What one drain did with one queued notice for one channel."""

    key: str
    channel: str
    status: str
    errors: tuple[str, ...]


def deliver(engine: Engine, targets: list[Target], now: datetime) -> list[Delivery]:
    """Send every pending notice to the URLs of its channel not yet sent to. A URL that failed
    is not tried again in the same drain, so a dead server costs one timeout, not one per notice;
    a URL in two channels is sent one notice once."""
    table = state.notices
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table).where(table.c.status == PENDING).order_by(table.c.queued_at)
        ).all()
    down: dict[str, str] = {}
    sent: set[tuple[str, str, str]] = set()
    deliveries = []
    for row in rows:
        delivered = set(row.delivered.split())
        errors = []
        channel_targets = [target for target in targets if target.channel == row.channel]
        if not channel_targets:
            errors.append(f"no URL for channel {row.channel!r} in SUBSYNC_NOTIFY_URLS")
        for target in channel_targets:
            once = (row.notice_key, row.body, target.digest)
            if target.digest in delivered or once in sent:
                delivered.add(target.digest)
                continue
            if target.digest in down:
                errors.append(f"{target.shown}: {down[target.digest]}")
                continue
            outcome = send(target, row.subject, row.body)
            if outcome.ok:
                delivered.add(target.digest)
                sent.add(once)
            else:
                down[target.digest] = outcome.error
                errors.append(f"{target.shown}: {outcome.error}")
        status = SENT
        if errors:
            status = GAVE_UP if _naive(now) - row.queued_at > RETRY_FOR else PENDING
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.notice_key == row.notice_key, table.c.channel == row.channel)
                .values(
                    status=status,
                    delivered=" ".join(sorted(delivered)),
                    attempts=row.attempts + 1,
                    last_error="; ".join(errors) or None,
                    updated_at=_naive(now),
                )
            )
        deliveries.append(Delivery(row.notice_key, row.channel, status, tuple(errors)))
    return deliveries
