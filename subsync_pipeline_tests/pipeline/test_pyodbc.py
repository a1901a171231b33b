"""The pyodbc path, for real: Personify reached as `postgresql+pyodbc` through unixODBC and the
PostgreSQL ODBC driver (`PostgreSQL Unicode`) on the tests' PostgreSQL server. Staging goes
through pyodbc's fast_executemany parameter arrays and every write is one ODBC transaction, as
on SQL Server in production; the result must equal the other dialects'.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer
from subsync_pipeline_tests.pipeline.test_convergence import (
    DAYS,
    land_all,
    personify_rows,
    random_orders,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def odbc_deployment(root: Path, server: PostgresServer, name: str) -> Deployment:
    """A sandbox created over psycopg, then used by subsync through pyodbc only."""
    url = server.create_database(name)
    deployment = deploy(root, personify_url=url)
    deployment.personify_url = (
        make_url(url)
        .set(drivername="postgresql+pyodbc", query={"driver": "PostgreSQL Unicode"})
        .render_as_string(hide_password=False)
    )
    return deployment


@pytest.fixture
def executemanys() -> Iterator[list[dict[str, Any]]]:
    """Every executemany any engine runs during the test, with what its cursor was set to."""
    seen: list[dict[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        if many:
            seen.append(
                {
                    "driver": conn.dialect.driver,
                    "statement": statement,
                    "rows": len(params),
                    "fast": getattr(cursor, "fast_executemany", None),
                }
            )

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", record)


def test_days_through_pyodbc_converge_with_sqlite(
    tmp_path: Path, postgres_server: PostgresServer, executemanys: list[dict[str, Any]]
) -> None:
    reference = deploy(tmp_path / "sqlite")
    land_all(reference)
    for day in DAYS:
        reference.materialize(day)
    expected_opt_in, expected_activity = personify_rows(reference)

    deployment = odbc_deployment(tmp_path / "odbc", postgres_server, "odbc_convergence")
    land_all(deployment)
    for day in random_orders(seed=3, count=1)[0]:
        deployment.materialize(day)
    opt_in, activity = personify_rows(deployment)
    pd.testing.assert_frame_equal(opt_in, expected_opt_in)
    pd.testing.assert_frame_equal(activity, expected_activity)

    staged = [e for e in executemanys if e["driver"] == "pyodbc"]
    assert staged, "no executemany went through pyodbc"
    assert all(e["fast"] is True for e in staged)
    statements = " ".join(e["statement"] for e in staged)
    assert "subsync_opt_in_" in statements and "subsync_activity_" in statements
    assert sum(e["rows"] for e in staged) > 50

    # A re-run is a no-op to the last column, audit dates and generated ids included.
    before = deployment.table("opt_in"), deployment.table("activity")
    deployment.materialize(DAYS[2])
    pd.testing.assert_frame_equal(deployment.table("opt_in"), before[0])
    pd.testing.assert_frame_equal(deployment.table("activity"), before[1])


def test_a_failed_odbc_write_rolls_back_whole(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The late day deletes A1's row and inserts Z0's; the insert fails after the delete ran."""
    deployment = odbc_deployment(tmp_path, postgres_server, "odbc_atomicity")
    deployment.land(
        "late.csv",
        [event("A1", "000100", "subscribe", "form", "2026-11-20T09:00:00")],
    )
    deployment.materialize("2026-11-20")
    before = deployment.table("activity")
    assert deployment.activity()["event_id"].tolist() == ["A1"]

    deployment.land("early.csv", [event("Z0", "000100", "subscribe", "api", "2026-11-18T09:00")])
    admin = sa.create_engine(deployment.personify_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
        )
        conn.exec_driver_sql(
            'CREATE TRIGGER boom BEFORE INSERT ON "CUS_ACTIVITY" FOR EACH ROW '
            "WHEN (NEW.\"ACTIVITY_DATE\" < '2026-11-19') EXECUTE FUNCTION boom()"
        )
    result = deployment.materialize("2026-11-18", raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert any("injected failure" in str(e.event_specific_data) for e in failures)
    pd.testing.assert_frame_equal(deployment.table("activity"), before)

    with admin.begin() as conn:
        conn.exec_driver_sql('DROP TRIGGER boom ON "CUS_ACTIVITY"')
    admin.dispose()
    deployment.materialize("2026-11-18")
    assert deployment.activity()["event_id"].tolist() == ["Z0"]
