"""Stage 4: the one-way write into Personify360, one transaction per table."""

from collections.abc import Callable, Iterator
from dataclasses import asdict

import dagster as dg
from sqlalchemy.exc import DBAPIError, OperationalError

from subsync_pipeline.assets import catalog
from subsync_pipeline.checks import (
    ACTIVITY_RECONCILED,
    ONE_ROW_PER_EVENT,
    OPT_IN_RECONCILED,
    activity_checks,
    opt_in_checks,
    zero,
)
from subsync_pipeline.core import sync
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.personify.connection import masked
from subsync_pipeline.core.personify.writers import WriteCounts
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.pools import PERSONIFY_POOL
from subsync_pipeline.resources import (
    PersonifyDatabaseResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)

WRITE_RETRIES = 3
RETRY_SECONDS = 5


def _write(
    context: dg.AssetExecutionContext,
    enabled_key: str,
    config: SubsyncConfig,
    write: Callable[[], WriteCounts],
    url: str,
) -> Iterator[dg.Output[WriteCounts] | dg.AssetCheckResult]:
    """Run one table's write unless config.personify.<enabled_key> switches it off."""
    asset = context.asset_key.to_user_string()
    if not getattr(config.personify, enabled_key):
        context.log.info(f"config.personify.{enabled_key} is false: the table is left as it is")
        yield dg.Output(WriteCounts(), metadata={"skipped": True})
        for spec in context.assets_def.check_specs:
            yield dg.AssetCheckResult(
                check_name=spec.name, asset_key=asset, passed=True, metadata={"skipped": True}
            )
        return
    try:
        counts = write()
    except DBAPIError as error:
        if not (error.connection_invalidated or isinstance(error, OperationalError)):
            raise
        # A dropped connection or a server restart: the transaction rolled back, so trying the
        # whole write again is safe.
        context.log.warning(f"transient Personify error, retrying: {type(error.orig).__name__}")
        raise dg.RetryRequested(max_retries=WRITE_RETRIES, seconds_to_wait=RETRY_SECONDS) from error
    yield dg.Output(
        counts,
        metadata={
            **{f"rows_{name}": dg.MetadataValue.int(n) for name, n in asdict(counts).items()},
            "personify": dg.MetadataValue.text(masked(url)),
        },
    )
    if asset == "personify_cus_opt_in":
        yield zero(OPT_IN_RECONCILED, asset, counts.mismatched, "rows_mismatched")
    else:
        yield zero(ACTIVITY_RECONCILED, asset, counts.mismatched, "rows_mismatched")
        yield zero(ONE_ROW_PER_EVENT, asset, counts.duplicate_rows, "duplicates")


@dg.asset(
    partitions_def=daily_partitions_def,
    pool=PERSONIFY_POOL,
    backfill_policy=daily_backfill_policy,
    deps=["contact_subscription_status"],
    check_specs=opt_in_checks,
    group_name="personify",
    kinds={"sql", "sqlserver"},
    owners=catalog.PIPELINE_OWNERS,
    tags=catalog.PERSONIFY,
    metadata=catalog.columns(catalog.CUS_OPT_IN_SCHEMA),
    description=(
        "Personify's CUS_OPT_IN (PERSONIFY_DB_URL): one row per contact and mapped interest area, "
        "upserted to its resolved status in one transaction for every contact queued for it, "
        "then compared with what was staged, inside it (check opt_in_reconciled). Left alone "
        "when config.personify.write_opt_in is false."
    ),
)
def personify_cus_opt_in(
    context: dg.AssetExecutionContext,
    subsync_config: SubsyncConfigResource,
    personify_db: PersonifyDatabaseResource,
    state_db: StateDatabaseResource,
) -> Iterator[dg.Output[WriteCounts] | dg.AssetCheckResult]:
    config = subsync_config.load()
    yield from _write(
        context,
        "write_opt_in",
        config,
        lambda: sync.write_opt_in(personify_db.engine, state_db.engine, config),
        personify_db.url,
    )


@dg.asset(
    partitions_def=daily_partitions_def,
    pool=PERSONIFY_POOL,
    backfill_policy=daily_backfill_policy,
    deps=["contact_subscription_status"],
    check_specs=activity_checks,
    group_name="personify",
    kinds={"sql", "sqlserver"},
    owners=catalog.PIPELINE_OWNERS,
    tags=catalog.PERSONIFY,
    metadata=catalog.columns(catalog.CUS_ACTIVITY_SCHEMA),
    description=(
        "Personify's CUS_ACTIVITY (PERSONIFY_DB_URL): one row per status change; subsync records "
        "the id of each row it inserted against the Real Magnet event_id in its state database, "
        "and reconciles its rows of every contact queued for it in one transaction (a first "
        "load's in batches of contacts inside it). Left alone when "
        "config.personify.write_activity is false."
    ),
)
def personify_cus_activity(
    context: dg.AssetExecutionContext,
    subsync_config: SubsyncConfigResource,
    personify_db: PersonifyDatabaseResource,
    state_db: StateDatabaseResource,
) -> Iterator[dg.Output[WriteCounts] | dg.AssetCheckResult]:
    config = subsync_config.load()
    yield from _write(
        context,
        "write_activity",
        config,
        lambda: sync.write_activity(
            personify_db.engine, state_db.engine, config, context.run.run_id, context.log.info
        ),
        personify_db.url,
    )
