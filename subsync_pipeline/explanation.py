"""The explain job: `subsync explain` from the UI, read-only, for a steward with a member id."""

import dagster as dg
from pydantic import Field

from subsync_pipeline.core.explain import UnknownMemberError, explain
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.resources import (
    PersonifyDatabaseResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)

EXPLANATION = "explanation"


class ExplainConfig(dg.Config):
    """Which member to explain. Emails stay masked: run metadata is kept and shown to anyone who
    can open the run."""

    member: str = Field(description="MASTER or MASTER|SUB")
    area: str | None = Field(default=None, description="one interest area's code, or TYPE:ID")


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Every event of the member, the rule that decided it, the status, what Personify "
    "holds now and the member's rejected rows, as Markdown metadata; writes nothing.",
)
def explain_member(
    context: dg.OpExecutionContext,
    config: ExplainConfig,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    personify_db: PersonifyDatabaseResource,
) -> dg.Output[None]:
    settings = subsync_config.load()
    tables = personify_tables(settings.personify)
    try:
        with state_db.engine.connect() as state_conn, personify_db.engine.connect() as personify:
            found = explain(state_conn, personify, settings, tables, config.member, config.area)
    except UnknownMemberError as error:
        raise dg.Failure(description=str(error)) from None
    for difference in found.differences:
        context.log.warning(difference)
    return dg.Output(
        None,
        metadata={
            EXPLANATION: dg.MetadataValue.md(found.markdown()),
            "differences": dg.MetadataValue.int(len(found.differences)),
            "events": dg.MetadataValue.int(sum(len(area.events) for area in found.areas)),
        },
    )


@dg.job(
    description="Explain a member (`subsync explain`): why their status is what it is. "
    "Read-only; give the member in the launchpad's run config, the answer is the step's metadata."
)
def explain_member_job() -> None:
    explain_member()
