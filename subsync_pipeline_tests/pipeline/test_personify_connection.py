"""The ways a first connection to Personify fails, each with its own message and no password in
it: a driver SQLAlchemy does not know, an ODBC driver that is not installed, a refused login, a
host that does not answer; and through Dagster, a run that stops before writing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from subsync_pipeline.core.personify.connection import (
    PersonifyConnectionError,
    create_personify_engine,
)
from subsync_pipeline_tests.harness import deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer, free_port

SECRET = "S3cret-pw-1234"
ROLE = "subsync_login"


def failure(url: str) -> str:
    with pytest.raises(PersonifyConnectionError) as caught:
        create_personify_engine(url)
    message = str(caught.value)
    assert SECRET not in message, message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    return message


@pytest.fixture(scope="module")
def login_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    postgres_server.add_password_role(ROLE, SECRET)
    yield postgres_server


def test_unknown_driver_in_the_url() -> None:
    message = failure(f"mssql+nosuchdriver://subsync:{SECRET}@sqlhost/PERSONIFY")
    assert "'mssql+nosuchdriver'" in message and "mssql+pyodbc" in message


def test_unknown_database_in_the_url() -> None:
    message = failure(f"nosuchdb://subsync:{SECRET}@sqlhost/PERSONIFY")
    assert "'nosuchdb'" in message and "mssql+pyodbc" in message


def test_odbc_driver_not_installed() -> None:
    url = (
        f"mssql+pyodbc://subsync:{SECRET}@127.0.0.1:1433/PERSONIFY"
        "?driver=ODBC+Driver+99+for+SQL+Server"
    )
    message = failure(url)
    assert "ODBC driver 'ODBC Driver 99 for SQL Server'" in message
    assert "not installed" in message and "PostgreSQL Unicode" in message
    assert "Microsoft ODBC Driver 18" in message


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "pyodbc"])
def test_refused_credentials(login_server: PostgresServer, driver: str) -> None:
    url = f"postgresql+{driver}://{ROLE}:wrong-{SECRET}@127.0.0.1:{login_server.port}/postgres"
    message = failure(url)
    assert f"refused the login of user '{ROLE}'" in message
    assert f"wrong-{SECRET}" not in message and "***" in message
    # The right password gets in: the failure above is the password's, not the set-up's.
    create_personify_engine(url.replace(f"wrong-{SECRET}", SECRET)).dispose()


@pytest.mark.parametrize("driver", ["psycopg", "pyodbc"])
def test_unreachable_host(driver: str) -> None:
    port = free_port()
    message = failure(f"postgresql+{driver}://{ROLE}:{SECRET}@127.0.0.1:{port}/personify")
    assert f"cannot reach Personify at 127.0.0.1:{port}" in message
    assert "refused" in message.lower()


def test_a_run_stops_before_writing_when_personify_is_unreachable(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
    deployment.land("d.csv", [event("A1", "000100", "subscribe", "api", "2026-11-19T09:00:00")])
    port = free_port()
    deployment.personify_url = f"postgresql+psycopg://{ROLE}:{SECRET}@127.0.0.1:{port}/p"
    result = deployment.materialize("2026-11-19", raise_on_error=False)
    assert not result.success
    # The error, its cause chain included, as the run's events carry it to the UI.
    logged = " ".join(repr(e) for e in result.all_events)
    assert f"cannot reach Personify at 127.0.0.1:{port}" in logged
    assert SECRET not in logged
    assert not result.asset_materializations_for_node("personify_cus_opt_in")
