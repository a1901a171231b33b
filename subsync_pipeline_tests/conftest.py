"""Test-session set-up: a fixed config for the partitions, and a real PostgreSQL server.

The partitions definition is read from SUBSYNC_CONFIG when subsync_pipeline loads, so it is set
here, before any test module imports the package, to keep a developer's ./data out of the tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["SUBSYNC_CONFIG"] = str(Path(__file__).with_name("subsync_test.yaml"))

from subsync_pipeline_tests.pg_server import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except PostgresUnavailable as missing:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {missing}")
        pytest.skip(str(missing))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    return postgres_server.create_database(request.node.name[:40].strip("_") or "test")
