"""The daily partitions: one per local day of config.timezone from config.start_date."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.environment import config_path

# Partitions and the schedule are part of the code location's definition, read when it loads.
deployed_config = load_config(config_path())

# end_offset=1: today's partition exists, so a file landing today can be processed today.
daily_partitions_def = dg.DailyPartitionsDefinition(
    start_date=deployed_config.start_date.isoformat(),
    timezone=deployed_config.timezone,
    end_offset=1,
)


def partition_days(context: dg.AssetExecutionContext) -> list[str]:
    """The days (YYYY-MM-DD) of the run's partition window; several under a ranged backfill."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days)]


# A backfill runs its whole range in one run, which reads and validates the days in chunks of
# config.chunk_events rows and resolves and writes once (bench/RESULTS.md item 21: a first load
# of many days costs a fraction of one run per day). single_run, not multi_run(n): Dagster's CLI
# runs a range without the daemon (`dagster asset materialize --partition-range A...B`) only
# under it. Every step commits chunk by chunk, so a failed run's retry resumes from the queues.
daily_backfill_policy = dg.BackfillPolicy.single_run()
