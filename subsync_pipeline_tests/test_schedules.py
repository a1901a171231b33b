"""daily_sync_schedule asks for yesterday's local day, DST change days included."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest

from subsync_pipeline.schedules import daily_sync_schedule


@pytest.mark.parametrize(
    ("tick", "partition"),
    [
        ("2026-11-21T02:00:00-05:00", "2026-11-20"),
        # Spring forward: 02:00 does not exist on 8 March, Dagster fires at 03:00 EDT.
        ("2026-03-08T03:00:00-04:00", "2026-03-07"),
        ("2026-03-09T02:00:00-04:00", "2026-03-08"),
        # Fall back: 1 November has 25 hours; 2 November's tick still asks for 1 November.
        ("2026-11-01T02:00:00-05:00", "2026-10-31"),
        ("2026-11-02T02:00:00-05:00", "2026-11-01"),
        # The same instant given in UTC: 07:00Z is 02:00 in New York in winter.
        ("2026-11-21T07:00:00+00:00", "2026-11-20"),
        ("2027-01-01T02:00:00-05:00", "2026-12-31"),
    ],
)
def test_schedule_asks_for_yesterday(tick: str, partition: str) -> None:
    context = dg.build_schedule_context(scheduled_execution_time=datetime.fromisoformat(tick))
    request = daily_sync_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == partition


def test_schedule_runs_at_two_local() -> None:
    assert daily_sync_schedule.cron_schedule == "0 2 * * *"
    assert daily_sync_schedule.execution_timezone == "America/New_York"
