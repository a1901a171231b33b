"""The environment variables of SPEC §6 and their local defaults under ./data/, in one place."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path("data")

DEFAULTS: dict[str, str] = {
    "SUBSYNC_CONFIG": str(DATA_DIR / "subsync.yaml"),
    "SUBSYNC_LANDING_DIR": str(DATA_DIR / "landing"),
    "PERSONIFY_DB_URL": f"sqlite:///{DATA_DIR / 'personify_sandbox.db'}",
    "SUBSYNC_DB_URL": f"sqlite:///{DATA_DIR / 'subsync_state.db'}",
    "SUBSYNC_REPORTS_DIR": str(DATA_DIR / "reports"),
    # Notification URLs (docs/notifications.md); none: no notices.
    "SUBSYNC_NOTIFY_URLS": "",
}


def setting(name: str) -> str:
    """The value of one of subsync's environment variables, or its local default."""
    return os.environ.get(name) or DEFAULTS[name]


def config_path() -> Path | None:
    """SUBSYNC_CONFIG, else ./data/subsync.yaml if present, else None (built-in defaults)."""
    path = Path(setting("SUBSYNC_CONFIG"))
    return path if os.environ.get("SUBSYNC_CONFIG") or path.exists() else None
