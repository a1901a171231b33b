"""Masking of personal data in anything an operator reads: logs, Dagster metadata, reports.

Only the rejects CSV beside each report keeps emails whole, because stewards need them to find
the contact in Real Magnet; everything else goes through `mask_email`.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
# user:password@ in any URL (database, SMTP, webhook), and password-like key=value pairs
# (ODBC's PWD=...;, a query string's pass=... or token=...).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
_KEY_PASSWORD = re.compile(
    r"(\b(?:pwd|password|passwd|pass|secret|token|sig|api[_-]?key)\s*[=:]\s*)[^\s;&,'\"]+",
    re.IGNORECASE,
)


def mask_email(text: str) -> str:
    """j***@example.org for every email address in `text`."""
    return _EMAIL.sub(lambda match: f"{match.group(1)}***@{match.group(2)}", text)


def mask_secrets(text: str) -> str:
    """`text` with passwords in URLs and password-like settings as *** and emails masked: for
    text that leaves subsync (a notice by email, Teams or Slack), where a driver's error may
    quote a connection string."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return mask_email(_KEY_PASSWORD.sub(r"\1***", text))
