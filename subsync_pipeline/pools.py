"""Dagster concurrency pools of the steps that write subsync's two databases.

Every run takes its turn at these pools however it was launched (the daily job, the sensor, a
backfill, "Materialize all" in the UI): a step of another run waits until the step in flight
releases the pool. The instance's `concurrency.pools.default_limit: 1` (dagster.yaml) makes each
pool one step at a time; the writers' own database locks still guard anything outside Dagster.
"""

# CUS_OPT_IN and CUS_ACTIVITY: one writer at a time, so runs queue in Dagster rather than wait on
# Personify's write lock holding a connection each.
PERSONIFY_POOL = "subsync_personify"
# The steps that write the state database (manifest, ledger, decisions, reports' history).
STATE_POOL = "subsync_state"
