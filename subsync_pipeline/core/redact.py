"""Masking of personal data in anything an operator reads: logs, Dagster metadata, reports.

Only the rejects CSV beside each report keeps emails whole, because stewards need them to find
the contact in Real Magnet; everything else goes through `mask_email`.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")


def mask_email(text: str) -> str:
    """j***@example.org for every email address in `text`."""
    return _EMAIL.sub(lambda match: f"{match.group(1)}***@{match.group(2)}", text)
