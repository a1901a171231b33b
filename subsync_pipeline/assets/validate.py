"""Stage 2: every row validated (Pandera + a bulk CUSTOMER lookup) or rejected with reasons."""

from collections.abc import Iterator

import dagster as dg

from subsync_pipeline.assets import catalog
from subsync_pipeline.checks import (
    MEMBER_MATCH_RATE,
    REJECT_RATE,
    threshold,
    validation_checks,
)
from subsync_pipeline.core import sync
from subsync_pipeline.core.ingest import RawFiles
from subsync_pipeline.core.quality import ValidationFigures
from subsync_pipeline.partitions import daily_backfill_policy, daily_partitions_def
from subsync_pipeline.pools import STATE_POOL
from subsync_pipeline.resources import (
    PersonifyDatabaseResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)


@dg.multi_asset(
    partitions_def=daily_partitions_def,
    pool=STATE_POOL,
    backfill_policy=daily_backfill_policy,
    check_specs=validation_checks,
    outs={
        "validated_tracking_records": dg.AssetOut(
            group_name="validate",
            kinds={"pandera", "pandas"},
            owners=catalog.PIPELINE_OWNERS,
            tags=catalog.REAL_MAGNET,
            metadata=catalog.columns(catalog.VALIDATED_SCHEMA),
            description=(
                "The day's events that passed every check, including a Custom Member ID that "
                "exists in Personify's CUSTOMER, normalised and added to the event ledger "
                "(SUBSYNC_DB_URL). A low member match rate warns (check member_match_rate)."
            ),
        ),
        "rejected_tracking_records": dg.AssetOut(
            group_name="validate",
            kinds={"pandas"},
            owners=catalog.STEWARD_OWNERS,
            tags={**catalog.REAL_MAGNET, **catalog.HOLDS_EMAILS},
            metadata=catalog.columns(catalog.REJECTED_SCHEMA),
            description=(
                "The day's rows (and whole files) that failed, with file, line, reason codes and "
                "every original value, kept in SUBSYNC_DB_URL's rejected_records. They never touch "
                "Personify; stewards fix them in Real Magnet and the day is re-run."
            ),
        ),
    },
)
def validated_and_rejected_tracking_records(
    context: dg.AssetExecutionContext,
    raw_tracking_log: RawFiles,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    personify_db: PersonifyDatabaseResource,
) -> Iterator[dg.Output[sync.Validated] | dg.Output[ValidationFigures] | dg.AssetCheckResult]:
    config = subsync_config.load()
    validated = sync.validate_days(
        state_db.engine,
        personify_db.engine,
        config,
        list(raw_tracking_log.days),
        context.run.run_id,
        context.log.info,
    )
    figures = validated.figures
    by_reason = figures.rejects_by_reason
    context.log.info(
        f"{figures.validated} validated, {figures.rejected} rejected "
        f"({', '.join(f'{k}: {v}' for k, v in by_reason.items()) or 'none'}); "
        f"{validated.contacts_queued} contacts queued for resolution"
    )
    yield dg.Output(
        validated,
        output_name="validated_tracking_records",
        metadata={
            "validated": dg.MetadataValue.int(figures.validated),
            "member_match_rate": dg.MetadataValue.float(figures.member_match_rate),
            "contacts_touched": dg.MetadataValue.int(validated.contacts_queued),
            "chunks": dg.MetadataValue.int(validated.chunks),
        },
    )
    yield dg.Output(
        figures,
        output_name="rejected_tracking_records",
        metadata={
            "rejected": dg.MetadataValue.int(figures.rejected),
            **{f"rejected_{code}": dg.MetadataValue.int(n) for code, n in by_reason.items()},
        },
    )
    quality = config.quality
    yield threshold(
        MEMBER_MATCH_RATE,
        "validated_tracking_records",
        figures.member_match_rate,
        quality.min_member_match_rate,
        at_least=True,
    )
    yield threshold(
        REJECT_RATE,
        "rejected_tracking_records",
        figures.reject_rate,
        quality.max_reject_rate,
        at_least=False,
    )
