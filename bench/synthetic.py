"""The bench's synthetic data: the config, a day's tracking file and the members it names.

One module so every bench (run.py's single day and first load, preview.py) measures the same
kind of day.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DAY = "2026-11-20"
CONFIG: dict[str, Any] = {
    "timezone": "UTC",
    "start_date": "2025-01-01",
    "interest_areas": [
        {"scope_type": "group", "scope_id": "1201", "opt_in_code": "NEWSLETTER"},
        {"scope_type": "message_category", "scope_id": "77", "opt_in_code": "EVENTS"},
        {"scope_type": "group_category", "scope_id": "9", "opt_in_code": "ADVOCACY"},
    ],
}
# A campaign day: mostly unsubscribes and re-subscribes from Real Magnet itself and the
# preference centre, some imports, a little of everything else.
SOURCE_MIX = {
    "in_app": 0.40,
    "preference_centre": 0.20,
    "api": 0.12,
    "csv_upload": 0.10,
    "importer": 0.08,
    "form": 0.06,
    "third_party": 0.04,
}
SCOPES = [("group", "1201"), ("message_category", "77"), ("group_category", "9")]


def member_ids(members: int) -> np.ndarray:
    return np.char.zfill(np.arange(100_000, 100_000 + members).astype(str), 9)


def tracking_frame(events: int, members: int, day: str, seed: int, prefix: str) -> pd.DataFrame:
    """`events` rows of one day; ~1% unknown members, ~0.3% malformed ids, 1% forced."""
    rng = np.random.default_rng(seed)
    ids = member_ids(members)
    member = ids[rng.integers(0, members, events)]
    roll = rng.random(events)
    member = np.where(roll < 0.01, "999" + member.astype(object), member)
    member = np.where((roll >= 0.01) & (roll < 0.013), "ID-" + member.astype(object), member)
    scope = rng.integers(0, len(SCOPES), events)
    seconds = np.sort(rng.integers(0, 86_400, events))
    occurred = pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s")
    subscribe = rng.random(events) < 0.45
    frame = pd.DataFrame(
        {
            "event_id": [f"{prefix}{n:09d}" for n in range(events)],
            "email": pd.Series(member).astype(str).str.lower() + "@members.example.org",
            "custom_member_id": member,
            "event_type": np.where(subscribe, "subscribe", "unsubscribe"),
            "scope_type": np.array([s[0] for s in SCOPES])[scope],
            "scope_id": np.array([s[1] for s in SCOPES])[scope],
            "source": rng.choice(list(SOURCE_MIX), events, p=list(SOURCE_MIX.values())),
            "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scope_name": "Campaign list",
            "force_optin": np.where(rng.random(events) < 0.01, "true", "false"),
            "timestamp_subscribed": np.where(subscribe, "2024-03-01T00:00:00Z", ""),
        }
    )
    return frame


def customers(members: int) -> pd.DataFrame:
    """The sandbox Personify's customers: every member, active, without an email address."""
    return pd.DataFrame(
        {
            "MASTER_CUSTOMER_ID": member_ids(members),
            "SUB_CUSTOMER_ID": 0,
            "CUSTOMER_STATUS_CODE": "ACTIVE",
            "PRIMARY_EMAIL_ADDRESS": None,
        }
    )
