"""Test-session set-up: a fixed config for the partitions, and a real PostgreSQL server.

The partitions definition is read from SUBSYNC_CONFIG when subsync_pipeline loads, so it is set
here, before any test module imports the package, to keep a developer's ./data out of the tests.

The PostgreSQL tests run against a real, throwaway server rather than mocks or SQLite standing in:
what they guard (upserts, advisory locks, transaction atomicity, quoted upper-case identifiers,
driver behaviour) only shows up on the real engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

os.environ["SUBSYNC_CONFIG"] = str(Path(__file__).with_name("subsync_test.yaml"))

from subsync_pipeline_tests.browser import CHROMIUM, CHROMIUM_ARGS
from subsync_pipeline_tests.pg_server import (
    PostgresServer,
    PostgresStartupError,
    PostgresUnavailable,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: under `pytest -n auto` a two-minute test handed out last would leave
    the other workers idle while it finishes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _server(icu_locale: str | None = None) -> Iterator[PostgresServer]:
    """Missing binaries skip on a laptop but fail under CI, so a CI image without PostgreSQL
    cannot quietly pass by skipping every database test."""
    try:
        server = PostgresServer(icu_locale=icu_locale)
    except PostgresUnavailable as missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and PostgreSQL is required: {missing}", pytrace=False)
        pytest.skip(str(missing))
    try:
        server.start()
    except PostgresStartupError as error:
        pytest.fail(f"the test PostgreSQL server did not start:\n{error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server per session: initdb takes seconds, a fresh database per test milliseconds."""
    yield from _server()


@pytest.fixture(scope="session")
def icu_postgres_server() -> Iterator[PostgresServer]:
    """A server whose default collation is ICU en-US: case-insensitive at the first level, and
    '_' before '-' before '.', unlike the code points pandas compares."""
    yield from _server("en-US")


@dataclass(frozen=True)
class PasswordRole:
    """A login role that must give its password: for the tests that hunt for it in the output."""

    server: PostgresServer
    name: str
    password: str

    def database(self, name: str) -> str:
        """A new database the role owns, and its URL with the role and the password in it."""
        bare = self.server.create_database(name, owner=self.name)
        return bare.replace("://", f"://{self.name}:{self.password}@", 1)


@pytest.fixture(scope="session")
def password_role(postgres_server: PostgresServer) -> PasswordRole:
    role = PasswordRole(postgres_server, "subsync_secret", "Zq7-ultra-Secret-4411")
    postgres_server.add_password_role(role.name, role.password)
    return role


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A new, empty database per test, named after the test so a leftover one can be traced."""
    return postgres_server.create_database(request.node.originalname)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium; missing, it skips on a laptop and fails under CI."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the browser tests need chromium: {message}", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
