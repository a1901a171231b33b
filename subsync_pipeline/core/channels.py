"""Notification channels: the URLs of SUBSYNC_NOTIFY_URLS by channel name, and sending to them
through Apprise (email over SMTP with STARTTLS, Teams workflows, Slack, webhooks and the rest
Apprise knows), so subsync has no SMTP or HTTP code of its own.

SUBSYNC_NOTIFY_URLS holds entries separated by whitespace, each `name=URL`, `name1,name2=URL`
or a bare `URL` (channel `default`). The URLs carry passwords and tokens: they are never shown
whole, only as Apprise's privacy form with emails masked.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote

import apprise

from subsync_pipeline.core.redact import mask_secrets

DEFAULT_CHANNEL = "default"
_ENTRY = re.compile(r"^(?:(?P<names>[a-z0-9_-]+(?:,[a-z0-9_-]+)*)=)?(?P<url>[a-z0-9+]+://\S+)$")
# Enough of an Apprise failure log to say why, not a driver's whole story.
_ERROR_CHARS = 300


class ChannelError(ValueError):
    """An entry of SUBSYNC_NOTIFY_URLS that is not `name=URL` or `URL`; the message masks it."""


@dataclass(frozen=True)
class Target:
    """One URL of one channel."""

    channel: str
    url: str

    @property
    def digest(self) -> str:
        """Names the URL in the state database without holding it."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def shown(self) -> str:
        """The URL as it may be printed: Apprise's privacy form (passwords and tokens as ****),
        up to its query, with emails masked."""
        plugin = apprise.Apprise.instantiate(self.url, suppress_exceptions=True)
        text = plugin.url(privacy=True) if plugin else self.url.split("://", 1)[0] + "://…"
        return mask_secrets(unquote(text.split("?", 1)[0]))


def parse_targets(text: str) -> list[Target]:
    """Every (channel, URL) that SUBSYNC_NOTIFY_URLS names, in order."""
    targets: list[Target] = []
    for number, entry in enumerate(text.split(), start=1):
        match = _ENTRY.match(entry)
        if match is None:
            raise ChannelError(
                f"SUBSYNC_NOTIFY_URLS entry {number} ({mask_secrets(entry)[:60]}) is not "
                "name=URL or URL (names: lower-case letters, digits, _ and -)"
            )
        names = (match["names"] or DEFAULT_CHANNEL).split(",")
        targets.extend(Target(channel=name, url=match["url"]) for name in names)
    return targets


@dataclass(frozen=True)
class Outcome:
    target: Target
    ok: bool
    error: str = ""


def send(target: Target, subject: str, body: str) -> Outcome:
    """Send one message to one URL; a refused connection or a rejected login is an outcome
    with its reason (masked), never an exception."""
    sender = apprise.Apprise()
    if not sender.add(target.url):
        return Outcome(target, False, "Apprise does not recognise this URL")
    with apprise.LogCapture(level=logging.WARNING) as log:
        ok = sender.notify(title=subject, body=body, body_format=apprise.NotifyFormat.TEXT)
    if ok:
        return Outcome(target, True)
    lines = [line for line in log.getvalue().splitlines() if line.strip()]
    reason = lines[-1].split(" - ", 2)[-1] if lines else "Apprise reported a failure"
    return Outcome(target, False, mask_secrets(reason)[:_ERROR_CHARS])
