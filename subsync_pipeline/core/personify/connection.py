"""Opening the Personify database from PERSONIFY_DB_URL, with errors that never show a password."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError


class PersonifyConnectionError(RuntimeError):
    """Personify cannot be reached or the URL cannot be used; the message hides any password."""


def masked(url: str) -> str:
    """The URL as it may appear in logs and metadata: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_personify_engine(url: str) -> Engine:
    """An engine on Personify; a missing SQLite file is an error, never silently created."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise PersonifyConnectionError(
            "PERSONIFY_DB_URL is not a SQLAlchemy database URL "
            "(expected e.g. mssql+pyodbc://user@host/db?driver=ODBC+Driver+18+for+SQL+Server)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            raise PersonifyConnectionError(
                f"Personify SQLite database {database or '<none>'} does not exist; "
                "create a sandbox with `subsync sandbox` or set PERSONIFY_DB_URL"
            )
    options: dict[str, object] = {"pool_pre_ping": True}
    if parsed.get_driver_name() == "pyodbc":
        options["fast_executemany"] = True
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 60}
    try:
        return sa.create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise PersonifyConnectionError(
            f"cannot use Personify URL {masked(url)}: {type(exc).__name__}: {exc}"
        ) from None
