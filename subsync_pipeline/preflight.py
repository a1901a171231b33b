"""The preflight job: `subsync doctor` from the UI, read-only, before the first daily sync."""

import dagster as dg

from subsync_pipeline.core.doctor import (
    CONNECTION,
    FAIL,
    OK,
    Finding,
    check_landing,
    check_personify,
    checklist_markdown,
    exit_code,
    summary,
)
from subsync_pipeline.core.personify.connection import masked
from subsync_pipeline.resources import (
    LandingFolderResource,
    PersonifyDatabaseResource,
    SubsyncConfigResource,
)

CHECKLIST = "checklist"


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Checks Personify (tables, columns, NOT NULL, grants, codes, member ids) and the "
    "landing folder's Real Magnet scopes; writes nothing. Fails when a sync's write would fail.",
)
def personify_preflight(
    context: dg.OpExecutionContext,
    subsync_config: SubsyncConfigResource,
    personify_db: PersonifyDatabaseResource,
    landing: LandingFolderResource,
) -> dg.Output[None]:
    config = subsync_config.load()
    # The resource has connected already: a refused connection fails the run before this line.
    findings: list[Finding] = [
        Finding(OK, CONNECTION, f"connected to Personify at {masked(personify_db.url)}"),
        *check_personify(config, personify_db.engine),
        *check_landing(config, landing.folder),
    ]
    for finding in findings:
        if finding.status == FAIL:
            context.log.error(finding.line())
    metadata = {CHECKLIST: dg.MetadataValue.md(checklist_markdown(findings))}
    if exit_code(findings):
        raise dg.Failure(description=summary(findings), metadata=metadata)
    return dg.Output(None, metadata=metadata)


@dg.job(
    description="Preflight (`subsync doctor`): is Personify ready for subsync to write? "
    "Read-only; the checklist is the step's metadata."
)
def personify_preflight_job() -> None:
    personify_preflight()
