"""Stage 3: each contact's status per interest area, by the precedence hierarchy (SPEC §4)."""

import dagster as dg

from subsync_pipeline.assets import catalog
from subsync_pipeline.core import sync
from subsync_pipeline.core.quality import decision_counts, newer_requests
from subsync_pipeline.core.resolution import FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE
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
        "Each contact's status per interest area, for the contacts the day touches, by the "
        "source-precedence rules (core/resolution.py): resumed from the contact's checkpoint in "
        "SUBSYNC_DB_URL's key_states table, or replayed over its whole event history when an "
        "earlier event changed (a late or re-exported file) or the config did. Every event's "
        "decision is kept in the decisions table as the audit trail."
    ),
)
def contact_subscription_status(
    context: dg.AssetExecutionContext,
    validated_tracking_records: sync.ValidatedDays,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
) -> dg.Output[sync.ResolvedDays]:
    config = subsync_config.load()
    resolved = sync.resolve_days(
        state_db.engine, config, validated_tracking_records, context.run.run_id
    )
    of_days = resolved.day_decisions
    counts = decision_counts(of_days, resolved.days)
    return dg.Output(
        resolved,
        metadata={
            "events_resolved": dg.MetadataValue.int(len(resolved.decided)),
            "contacts_replayed": dg.MetadataValue.int(resolved.replayed_members),
            "slices_caught_up": dg.MetadataValue.int(resolved.slices_caught_up),
            "keys": dg.MetadataValue.int(len(resolved.statuses)),
            **{f"decision_{name}": dg.MetadataValue.int(n) for name, n in counts.items()},
            "status_changes": dg.MetadataValue.int(int(of_days["status_change"].sum())),
            "first_subscribe": dg.MetadataValue.int(
                int(of_days["first_time"].eq(FIRST_SUBSCRIBE).sum())
            ),
            "first_unsubscribe": dg.MetadataValue.int(
                int(of_days["first_time"].eq(FIRST_UNSUBSCRIBE).sum())
            ),
            "keys_with_newer_request": dg.MetadataValue.int(len(newer_requests(resolved.statuses))),
        },
    )
