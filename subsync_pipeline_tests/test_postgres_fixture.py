"""The PostgreSQL fixtures: a real PostgreSQL 15 server, and a database of its own per test."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from subsync_pipeline_tests.pg_server import PostgresServer

# URLs handed out to earlier parametrisations of the test below, in this session.
_handed_out: list[str] = []


def test_server_answers_as_postgresql_15(postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(postgres_server.url("postgres"))
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL 15."), version


# Both runs share one test name, so the fixture gets the same stem twice and must still differ.
@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_a_distinct_empty_database(postgres_url: str, run: str) -> None:
    assert postgres_url not in _handed_out
    _handed_out.append(postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            # The marker makes a reused database visible to whichever run comes second.
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("create table marker (run text)"))
            conn.execute(sa.text("insert into marker values (:run)"), {"run": run})
    finally:
        engine.dispose()
