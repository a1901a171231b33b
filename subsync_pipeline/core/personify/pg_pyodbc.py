"""`postgresql+pyodbc://`: PostgreSQL through unixODBC and psqlODBC (driver `PostgreSQL Unicode`).

SQLAlchemy ships no pyodbc dialect for PostgreSQL. This one exists so the pyodbc path subsync
takes to SQL Server in production (ODBC connection strings, `fast_executemany` parameter arrays,
ODBC transactions and type conversions) runs for real on machines where no SQL Server can; it is
registered as an entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.connectors.pyodbc import PyODBCConnector
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import ConnectArgsType

DEFAULT_DRIVER = "PostgreSQL Unicode"


def _braced(value: str) -> str:
    """An ODBC connection-string value that may hold ; = { or }."""
    return "{" + value.replace("}", "}}") + "}"


class PGDialect_pyodbc(PyODBCConnector, PGDialect):
    supports_statement_cache = True
    default_paramstyle = "qmark"

    def __init__(self, fast_executemany: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_executemany = fast_executemany
        if fast_executemany:
            # Let executemany reach pyodbc's parameter arrays instead of a multi-row VALUES.
            self.use_insertmanyvalues_wo_returning = False

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        """psqlODBC wants SERVER and PORT apart, not SQL Server's `host,port`."""
        query = dict(url.query)
        driver = str(query.pop("driver", DEFAULT_DRIVER))
        parts = {
            "DRIVER": _braced(driver),
            "SERVER": url.host or "localhost",
            "PORT": str(url.port or 5432),
            "DATABASE": url.database or "",
            "UID": url.username or "",
            # Server-side prepare cannot type an untyped parameter such as json_build_object(?,
            # ...) in SQLAlchemy's reflection queries; client-side binding types them as text.
            "UseServerSidePrepare": "0",
        }
        if url.password is not None:
            parts["PWD"] = _braced(url.password)
        parts.update({key: str(value) for key, value in query.items()})
        return (";".join(f"{key}={value}" for key, value in parts.items()),), {}

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        if self.fast_executemany:
            cursor.fast_executemany = True
        super().do_executemany(cursor, statement, parameters, context=context)

    def _get_server_version_info(self, connection: Any) -> Any:
        # PyODBCConnector's version comes from ODBC's SQL_DBMS_VER; PostgreSQL's own is richer.
        return PGDialect._get_server_version_info(self, connection)
