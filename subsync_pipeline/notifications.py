"""Notices to the people who must act, through the channels of SUBSYNC_NOTIFY_URLS.

`run_failure_notice_sensor` queues one notice per failed run (its run-status cursor moves past
each failure once, even across daemon restarts; the outbox key `failure:<run id>` makes a second
queueing a no-op whatever happens to the cursor). `notification_sensor` queues a notice for a
run STARTED far beyond its usual time and, after `notify.digest_time`, yesterday's digest; then
it sends whatever is queued, and tries a channel that was down again on its next tick.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Connection

from subsync_pipeline.core import outbox
from subsync_pipeline.core.config import NotifyChannel, SubsyncConfig
from subsync_pipeline.core.notify import (
    DayFigures,
    FailedCheck,
    Notice,
    RunFailure,
    RunOutcome,
    digest_day,
    digest_notice,
    digest_wanted,
    failure_notice,
    is_overdue,
    overdue_notice,
    usual_seconds,
)
from subsync_pipeline.core.report import figures_of
from subsync_pipeline.core.report_links import report_link
from subsync_pipeline.core.tracking_log import is_tracking_file
from subsync_pipeline.resources import (
    LandingFolderResource,
    NotifyResource,
    ReportsFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)

PARTITION_TAG = "dagster/partition"
# A job's usual run time is the median of this many of its latest successful runs.
USUAL_RUNS = 20
# Write steps report their counts as rows_<count> metadata (assets/personify.py).
WRITTEN_TABLES = {"personify_cus_opt_in": "CUS_OPT_IN", "personify_cus_activity": "CUS_ACTIVITY"}


def _run_failure(context: dg.RunFailureSensorContext) -> RunFailure:
    """The failed step and its own error: the first error in the chain that is not Dagster's
    wrapper around it; the run's failure message when no step failed (a run worker that died)."""
    run = context.dagster_run
    steps = context.get_step_failure_events()
    if not steps:
        return RunFailure(
            run.run_id,
            run.job_name,
            run.tags.get(PARTITION_TAG),
            None,
            "RunFailure",
            context.failure_event.message or "",
        )
    step = steps[0]
    error = step.step_failure_data.error
    while error is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        if error.cause is None:
            break
        error = error.cause
    cls_name = (error.cls_name if error else None) or "Error"
    text = error.message if error else ""
    # SerializableErrorInfo's message starts with the qualified class name.
    text = text.split(": ", 1)[1] if text.split(": ", 1)[0].endswith(cls_name) else text
    return RunFailure(
        run.run_id, run.job_name, run.tags.get(PARTITION_TAG), step.step_key, cls_name, text
    )


@dg.run_failure_sensor(
    name="run_failure_notice_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Queues one notice per failed run (day, failed step, masked error, what to do, link) "
        "for the channels with notify.channels.<name>.failures; notification_sensor sends it."
    ),
)
def run_failure_notice_sensor(
    context: dg.RunFailureSensorContext,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    notify: NotifyResource,
) -> None:
    config = subsync_config.load()
    channels = _channels(config, notify, lambda channel: channel.failures)
    if not channels:
        return
    notice = failure_notice(_run_failure(context), config.ui_base_url)
    with state_db.engine.begin() as conn:
        added = outbox.queue(conn, notice, channels, datetime.now(UTC))
    context.log.info(f"{notice.key} queued for {added or 'no new'} channel(s)")


def _channels(
    config: SubsyncConfig,
    notify: NotifyResource,
    wants: Callable[[NotifyChannel], bool],
) -> list[str]:
    """The configured channels that have a URL in SUBSYNC_NOTIFY_URLS and want this notice."""
    named = {target.channel for target in notify.targets()}
    return [
        name for name, channel in config.notify.channels.items() if name in named and wants(channel)
    ]


def _overdue_notices(
    instance: dg.DagsterInstance, config: SubsyncConfig, now: datetime
) -> list[Notice]:
    notices = []
    running = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    for record in running:
        if record.start_time is None:
            continue
        run = record.dagster_run
        done = instance.get_run_records(
            filters=dg.RunsFilter(job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS]),
            limit=USUAL_RUNS,
        )
        usual = usual_seconds(
            [r.end_time - r.start_time for r in done if r.start_time and r.end_time]
        )
        seconds = now.timestamp() - record.start_time
        rules = config.notify
        if is_overdue(seconds, usual, rules.overdue_factor, rules.overdue_minimum_minutes):
            notices.append(
                overdue_notice(
                    run.run_id,
                    run.job_name,
                    run.tags.get(PARTITION_TAG),
                    seconds,
                    usual,
                    config.ui_base_url,
                )
            )
    return notices


def _latest_run_results(
    instance: dg.DagsterInstance, run_id: str
) -> tuple[list[FailedCheck], dict[str, dict[str, int]]]:
    """The checks of a run that did not pass, and the rows its Personify steps wrote."""
    checks, written = [], {}
    events = instance.all_logs(
        run_id,
        of_type={
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
        },
    )
    for entry in events:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:  # type: ignore[union-attr]
                checks.append(
                    FailedCheck(
                        evaluation.asset_key.to_user_string(),  # type: ignore[union-attr]
                        evaluation.check_name,  # type: ignore[union-attr]
                        evaluation.severity.value,  # type: ignore[union-attr]
                    )
                )
            continue
        materialization = entry.asset_materialization
        table = (
            WRITTEN_TABLES.get(materialization.asset_key.to_user_string())
            if materialization
            else None
        )
        if materialization is not None and table is not None:
            written[table] = {
                name.removeprefix("rows_"): int(value.value)  # type: ignore[arg-type]
                for name, value in materialization.metadata.items()
                if name.startswith("rows_")
            }
    return checks, written


def _newest_file_age(folder: Path, now: datetime) -> timedelta | None:
    if not folder.is_dir():
        return None
    times = [path.stat().st_mtime for path in folder.iterdir() if is_tracking_file(path)]
    return now - datetime.fromtimestamp(max(times), UTC) if times else None


def _link(config: SubsyncConfig, reports: Path, day: str, name: str) -> str:
    """Where a reader finds a report file: over HTTP when the reports are served, else its path
    (which only readers with access to the server can open)."""
    path = reports / day / name
    if config.reports_base_url is None and not path.exists():
        return ""
    return report_link(path, reports, config.reports_base_url)


def day_figures(
    instance: dg.DagsterInstance,
    conn: Connection,
    config: SubsyncConfig,
    day: str,
    landing: Path,
    reports: Path,
    now: datetime,
) -> DayFigures:
    """Everything the digest says of `day`, from the state database, the Dagster instance,
    the landing folder and the report folder."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: day}))
    runs = [RunOutcome(r.dagster_run.run_id, r.dagster_run.status.value) for r in records]
    checks, written = _latest_run_results(instance, runs[0].run_id) if runs else ([], {})
    return DayFigures(
        day=day,
        figures=figures_of(conn, day),
        runs=runs,
        failed_checks=checks,
        written=written,
        newest_file_age=_newest_file_age(landing, now),
        stale_after=timedelta(hours=config.notify.stale_after_hours),
        report_link=_link(config, reports, day, "report.html"),
        rejects_link=_link(config, reports, day, "rejected_rows.csv"),
    )


def _queue_digest(
    context: dg.SensorEvaluationContext,
    conn: Connection,
    config: SubsyncConfig,
    channels: list[str],
    landing: Path,
    reports: Path,
    now: datetime,
) -> None:
    """After notify.digest_time, queue yesterday's digest for each channel, once: sent when it
    needs attention (or digest: always), else recorded as skipped."""
    local = now.astimezone(config.tz)
    if local.time() < config.notify.digest_time:
        return
    day = digest_day(local)
    due = [name for name in channels if not outbox.queued(conn, f"digest:{day}", name)]
    if not due:
        return
    figures = day_figures(context.instance, conn, config, day, landing, reports, now)
    for name in due:
        channel = config.notify.channels[name]
        wanted = digest_wanted(channel, figures)
        notice = digest_notice(figures, channel.digest_parts, config.ui_base_url)
        outbox.queue(conn, notice, [name], now, outbox.PENDING if wanted else outbox.SKIPPED)
        context.log.info(f"digest of {day} for {name}: {'queued' if wanted else 'nothing to say'}")


@dg.sensor(
    name="notification_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Queues a notice for a run STARTED far beyond its usual time and, after "
        "notify.digest_time, yesterday's digest; sends every queued notice through "
        "SUBSYNC_NOTIFY_URLS, and tries a channel that was down again on its next tick."
    ),
)
def notification_sensor(
    context: dg.SensorEvaluationContext,
    subsync_config: SubsyncConfigResource,
    state_db: StateDatabaseResource,
    landing: LandingFolderResource,
    reports: ReportsFolderResource,
    notify: NotifyResource,
) -> dg.SkipReason:
    targets = notify.targets()
    if not targets:
        return dg.SkipReason("SUBSYNC_NOTIFY_URLS is not set: no notices")
    config = subsync_config.load()
    unknown = sorted({t.channel for t in targets} - set(config.notify.channels))
    if unknown:
        context.log.warning(f"SUBSYNC_NOTIFY_URLS names channels not in notify.channels: {unknown}")
    now = datetime.now(UTC)
    with state_db.engine.begin() as conn:
        failures = _channels(config, notify, lambda channel: channel.failures)
        for notice in _overdue_notices(context.instance, config, now) if failures else []:
            outbox.queue(conn, notice, failures, now)
        digests = _channels(config, notify, lambda channel: channel.digest != "off")
        _queue_digest(context, conn, config, digests, landing.folder, reports.folder, now)
    deliveries = outbox.deliver(state_db.engine, targets, now)
    for delivery in deliveries:
        if delivery.errors:
            context.log.warning(
                f"{delivery.key} to {delivery.channel}: {delivery.status}; "
                + "; ".join(delivery.errors)
            )
        else:
            context.log.info(f"{delivery.key} sent to {delivery.channel}")
    sent = sum(delivery.status == outbox.SENT for delivery in deliveries)
    waiting = sum(delivery.status == outbox.PENDING for delivery in deliveries)
    return dg.SkipReason(f"{sent} notice(s) sent, {waiting} waiting for a channel to answer")
