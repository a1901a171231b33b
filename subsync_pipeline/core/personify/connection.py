"""Opening the Personify database from PERSONIFY_DB_URL, with errors that say what to fix and
never show a password.

The usual ways a first connection fails (a driver name SQLAlchemy does not know, an ODBC driver
not installed, a refused login, a host that does not answer) each get their own message built
from the URL, so an operator sees the fix rather than a driver's stack trace.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

DRIVER_HELP = "see docs/personify-production.md, 'Connecting to SQL Server'"


class PersonifyConnectionError(RuntimeError):
    """Personify cannot be reached or the URL cannot be used; the message hides any password."""


def masked(url: str | URL) -> str:
    """The URL as it may appear in logs and metadata: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _installed_odbc_drivers() -> list[str]:
    try:
        import pyodbc
    except ImportError:
        return []
    return sorted(pyodbc.drivers())


def _sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a DBAPI error: pyodbc puts it first in args, psycopg in .sqlstate."""
    first = error.args[0] if error.args else None
    pyodbc = first if isinstance(first, str) and len(first) == 5 else ""
    return str(getattr(error, "sqlstate", None) or pyodbc)


def scrubbed(text: str, url: URL) -> str:
    """A driver's message as it may be shown: the URL's password replaced, on one line."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return " ".join(text.split())


def explain(url: URL, error: BaseException) -> str:
    """What went wrong connecting to `url`, and the fix, with no password in it."""
    original = getattr(error, "orig", None) or error
    state = _sqlstate(original)
    text = str(original).lower()
    where = f"{url.host or 'localhost'}{f':{url.port}' if url.port else ''}"
    user = url.username or "(no user)"
    if state == "IM002" or "can't open lib" in text or "data source name not found" in text:
        wanted = url.query.get("driver", "(none given: add ?driver=...)")
        installed = ", ".join(_installed_odbc_drivers()) or "none"
        return (
            f"the ODBC driver {wanted!r} named in PERSONIFY_DB_URL is not installed on this "
            f"machine (installed ODBC drivers: {installed}). Install Microsoft ODBC Driver 18 "
            f"for SQL Server ({DRIVER_HELP}) or correct driver= in the URL"
        )
    if (
        state in ("28000", "28P01")
        or "login failed" in text
        or "password authentication failed" in text
    ):
        return (
            f"Personify at {where} refused the login of user {user!r} "
            f"({masked(url)}): check the user in PERSONIFY_DB_URL and the password the "
            "environment gives it"
        )
    if (
        state in ("08001", "08S01", "08006", "HYT00")
        or "connection refused" in text
        or "could not translate host name" in text
        or "timeout expired" in text
        or "could not connect" in text
    ):
        return (
            f"cannot reach Personify at {where} ({masked(url)}): check the host and port, that "
            f"the server is running and that the firewall lets this machine in. Driver said: "
            f"{scrubbed(str(original), url)[:300]}"
        )
    return (
        f"cannot connect to Personify ({masked(url)}): {type(original).__name__}: "
        f"{scrubbed(str(original), url)[:300]}"
    )


def create_personify_engine(url: str) -> Engine:
    """An engine on Personify, connected once to prove it works; a missing SQLite file is an
    error, never silently created."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise PersonifyConnectionError(
            "PERSONIFY_DB_URL is not a SQLAlchemy database URL "
            "(expected e.g. mssql+pyodbc://user@host/db?driver=ODBC+Driver+18+for+SQL+Server)"
        ) from None
    options: dict[str, object] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            raise PersonifyConnectionError(
                f"Personify SQLite database {database or '<none>'} does not exist; "
                "create a sandbox with `subsync sandbox` or set PERSONIFY_DB_URL"
            )
        options["connect_args"] = {"timeout": 60}
    try:
        # Naming the driver loads the dialect: an unknown database fails here.
        if parsed.get_driver_name() == "pyodbc":
            options["fast_executemany"] = True
        engine = sa.create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise PersonifyConnectionError(
            f"PERSONIFY_DB_URL ({masked(parsed)}) asks for {parsed.drivername!r}, which cannot "
            f"be loaded ({type(exc).__name__}); production uses mssql+pyodbc ({DRIVER_HELP})"
        ) from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise PersonifyConnectionError(explain(parsed, exc)) from None
    return engine
