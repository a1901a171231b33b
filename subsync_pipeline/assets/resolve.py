"""Stage 3: each contact's status per interest area, by the precedence hierarchy (SPEC §4)."""

import dagster as dg

from subsync_pipeline.assets import catalog
from subsync_pipeline.core import sync
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import StateDatabaseResource, SubsyncConfigResource


@dg.asset(
    partitions_def=daily_partitions_def,
    pool=STATE_POOL,
    backfill_policy=daily_backfill_policy,
    group_name="resolve",
    kinds={"pandas"},
    owners=catalog.PIPELINE_OWNERS,
    tags=catalog.SUBSYNC,
    metadata=catalog.columns(catalog.STATUS_SCHEMA),
    description=(
        "Each contact's status per interest area, by the source-precedence rules "
        "(core/resolution.py), for every contact queued for resolution (the day's, and any a "
        "run that died left): resumed from the contact's checkpoint in SUBSYNC_DB_URL's "
        "key_states table, or replayed over its whole event history when an earlier event "
        "changed (a late or re-exported file) or a setting that decides (source_ranks, "
        "interest_areas, tracking) did. Every event's decision is kept in the decisions table "
        "as the audit trail."
    ),
)
def contact_subscription_status(
    context: dg.AssetExecutionContext,
    validated_tracking_records: sync.Validated,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
) -> dg.Output[sync.Resolved]:
    validated = validated_tracking_records
    resolved = sync.resolve_queued(
        state_db.engine,
        subsync_config.load(),
        validated.days,
        context.run.run_id,
        validated.figures.validated,
        context.log.info,
    )
    return dg.Output(
        resolved,
        metadata={
            "events_resolved": dg.MetadataValue.int(resolved.events_resolved),
            "contacts_resolved": dg.MetadataValue.int(resolved.contacts_resolved),
            "contacts_replayed": dg.MetadataValue.int(resolved.contacts_replayed),
            "keys": dg.MetadataValue.int(resolved.keys_changed),
            "batches": dg.MetadataValue.int(resolved.batches),
            **{
                f"decision_{name}": dg.MetadataValue.int(n)
                for name, n in resolved.decisions.items()
            },
            "status_changes": dg.MetadataValue.int(resolved.status_changes),
            "first_subscribe": dg.MetadataValue.int(resolved.first_subscribe),
            "first_unsubscribe": dg.MetadataValue.int(resolved.first_unsubscribe),
            "keys_with_newer_request": dg.MetadataValue.int(resolved.blocked),
        },
    )
