"""The tests' PostgreSQL server is real and gives each test its own database."""

from __future__ import annotations

import sqlalchemy as sa

from subsync_pipeline_tests.pg_server import PostgresServer


def test_server_is_postgresql_15_and_databases_are_separate(
    postgres_server: PostgresServer,
) -> None:
    first = sa.create_engine(postgres_server.create_database("one"))
    second = sa.create_engine(postgres_server.create_database("two"))
    with first.begin() as conn:
        assert "PostgreSQL 15" in conn.execute(sa.text("select version()")).scalar_one()
        conn.execute(sa.text("create table marker (x int)"))
    with second.connect() as conn:
        assert not sa.inspect(conn).has_table("marker")
    first.dispose()
    second.dispose()
