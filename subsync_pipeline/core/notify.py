"""What subsync tells people, as plain text: a notice per failed or overdue run for the engineers
who must act, and the daily digest of a day's figures for stewards and engineers.

Everything here is built from plain values (no Dagster, no I/O), and every line that may quote
an error or a file passes `mask_secrets`, so no password or whole email leaves subsync.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from subsync_pipeline.core.config import NotifyChannel
from subsync_pipeline.core.redact import mask_secrets
from subsync_pipeline.core.report import REASON_FIXES

# A notice quotes this much of an error: enough to recognise it, the rest is in the UI.
ERROR_LINES = 6
LINE_CHARS = 300

# What to do, by the class of the error that failed the step (docs/operating.md, "What happens
# when…", and docs/personify-production.md, "When it cannot connect", say the same at length).
FAILURE_FIXES: dict[str, str] = {
    "PersonifySchemaError": "A Personify table or column subsync needs is missing; nothing was "
    "written. Correct personify.tables / personify.columns in the config, or the database "
    "(`subsync doctor` lists what is missing), then re-execute the run.",
    "PersonifyConnectionError": "Personify could not be reached or refused the login: fix what "
    "the error names (docs/personify-production.md, 'When it cannot connect'), then re-execute "
    "the run.",
    "ConfigError": "The config file is wrong at the key the error names: correct it, then "
    "re-execute the run.",
    "OperationalError": "A database connection kept failing after the step's retries: check the "
    "database the error names is up and reachable, then re-execute the run.",
}
DEFAULT_FIX = (
    "Open the run, read the failed step's error, fix its cause, then re-execute the run from "
    "the failed step (docs/operating.md, 'Operating guide')."
)
SUCCESS = "SUCCESS"


@dataclass(frozen=True)
class Notice:
    """One message: `key` names what it is about, so it is queued once however often asked."""

    key: str
    subject: str
    body: str


@dataclass(frozen=True)
class RunFailure:
    run_id: str
    job: str
    day: str | None
    step: str | None
    error_class: str
    error_text: str


def run_link(ui_base_url: str, run_id: str) -> str:
    return f"{ui_base_url}/runs/{run_id}" if ui_base_url else f"run {run_id} in the Dagster UI"


def error_lines(text: str) -> str:
    """The first lines of an error, masked and cut, indented for a notice."""
    lines = [line[:LINE_CHARS] for line in mask_secrets(text).strip().splitlines()]
    shown = lines[:ERROR_LINES] + (["…"] if len(lines) > ERROR_LINES else [])
    return "\n".join(f"    {line}" for line in shown)


def failure_notice(failure: RunFailure, ui_base_url: str) -> Notice:
    day = failure.day or "(no day: not a partitioned run)"
    step = failure.step or "(the run itself, before or after its steps)"
    fix = FAILURE_FIXES.get(failure.error_class, DEFAULT_FIX)
    body = "\n".join(
        [
            f"A subsync run failed: {failure.job}.",
            "",
            f"Day:   {day}",
            f"Step:  {step}",
            f"Run:   {run_link(ui_base_url, failure.run_id)}",
            f"Error: {failure.error_class}",
            error_lines(failure.error_text),
            "",
            f"What to do: {fix}",
        ]
    )
    subject = f"subsync: the run for {failure.day or failure.job} failed at {step}"
    return Notice(f"failure:{failure.run_id}", mask_secrets(subject), mask_secrets(body))


def usual_seconds(durations: list[float]) -> float | None:
    """A job's usual run time: the median of its recent successful runs, None without any."""
    return statistics.median(durations) if durations else None


def is_overdue(running: float, usual: float | None, factor: float, minimum_minutes: float) -> bool:
    """Whether a run running for `running` seconds is far beyond its usual time."""
    limit = max(minimum_minutes * 60, factor * usual if usual is not None else 0.0)
    return running > limit


def overdue_notice(
    run_id: str, job: str, day: str | None, running: float, usual: float | None, ui_base_url: str
) -> Notice:
    usual_text = f"{usual / 60:.1f} min" if usual is not None else "unknown (no successful run)"
    body = "\n".join(
        [
            f"A subsync run has been running far longer than usual: {job}.",
            "",
            f"Day:     {day or '(no day: not a partitioned run)'}",
            f"Running: {running / 60:.1f} min (usually {usual_text})",
            f"Run:     {run_link(ui_base_url, run_id)}",
            "",
            "What to do: open the run and see which step is still going. A step waiting for a "
            "pool ('Step blocked by limit') waits for another run; a step with no new log lines "
            "may be blocked by a database lock or a dead process: terminate the run, then "
            "re-execute it (docs/operating.md, 'What happens when…').",
        ]
    )
    return Notice(f"overdue:{run_id}", f"subsync: the run for {day or job} is still running", body)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str


@dataclass(frozen=True)
class DayFigures:
    """What is known of one day: its report's figures, its runs (newest first), the checks of
    its latest run that did not pass, the rows it wrote, and the landing folder's freshness."""

    day: str
    figures: dict[str, Any] | None
    runs: list[RunOutcome]
    failed_checks: list[FailedCheck] = field(default_factory=list)
    written: dict[str, dict[str, int]] = field(default_factory=dict)
    newest_file_age: timedelta | None = None
    stale_after: timedelta = timedelta(hours=36)
    report_link: str = ""
    rejects_link: str = ""

    @property
    def rejects_need_attention(self) -> bool:
        figures = self.figures
        return figures is not None and (
            figures["rows_rejected"] > 0 or figures["files_failed"] > 0 or figures["status"] != "OK"
        )

    @property
    def stale(self) -> bool:
        return self.newest_file_age is None or self.newest_file_age > self.stale_after

    @property
    def failures_need_attention(self) -> bool:
        latest_failed = not self.runs or self.runs[0].status != SUCCESS
        return latest_failed or bool(self.failed_checks) or self.stale

    def needs_attention(self, parts: tuple[str, ...]) -> bool:
        return ("rejects" in parts and self.rejects_need_attention) or (
            "failures" in parts and self.failures_need_attention
        )


def digest_wanted(channel: NotifyChannel, day: DayFigures) -> bool:
    """Whether this channel gets the day's digest: always, or when its parts need attention."""
    if channel.digest == "off":
        return False
    return channel.digest == "always" or day.needs_attention(channel.digest_parts)


def _rejects_part(day: DayFigures) -> list[str]:
    figures = day.figures
    if figures is None:
        return ["Rejected rows: no report for the day yet (see the runs)."]
    rate = figures["rows_rejected"] / figures["rows_read"] if figures["rows_read"] else 0.0
    lines = [
        f"Rejected rows and member matches — {figures['status']}",
        f"  rows read: {figures['rows_read']}, rejected: {figures['rows_rejected']} ({rate:.1%})",
        f"  member match rate: {figures['match_rate']:.1%}",
        f"  status changes: {figures['status_changes']}",
        f"  files that could not be read: {figures['files_failed']}",
    ]
    reasons = figures["rejects_by_reason"]
    if reasons:
        lines.append("  rejects by reason, and what to fix in Real Magnet:")
        lines += [
            f"    {code}: {count} — {REASON_FIXES.get(code, '')}".rstrip(" —")
            for code, count in sorted(reasons.items(), key=lambda item: -item[1])
        ]
    if day.report_link:
        lines.append(f"  report: {day.report_link}")
    if day.rejects_link:
        lines.append(f"  rejected rows (CSV, whole emails: personal data): {day.rejects_link}")
    return lines


def _failures_part(day: DayFigures, ui_base_url: str) -> list[str]:
    lines = ["Runs, checks and landing"]
    if not day.runs:
        lines.append("  no run for the day: check the schedule, the sensor and the daemon")
    else:
        latest = day.runs[0]
        failed = sum(run.status != SUCCESS for run in day.runs)
        lines.append(
            f"  runs: {len(day.runs)}, not successful: {failed}; latest {latest.status}: "
            f"{run_link(ui_base_url, latest.run_id)}"
        )
    for table, counts in sorted(day.written.items()):
        lines.append(
            f"  {table}: {counts.get('inserted', 0)} inserted, {counts.get('updated', 0)} "
            f"updated, {counts.get('deleted', 0)} deleted"
        )
    if day.failed_checks:
        lines.append("  checks that warned or failed:")
        lines += [
            f"    {check.check} on {check.asset}: {check.severity}" for check in day.failed_checks
        ]
    else:
        lines.append("  checks: all passed" if day.runs else "  checks: none ran")
    if day.newest_file_age is None:
        lines.append("  landing: no tracking file in the landing folder")
    else:
        hours = day.newest_file_age.total_seconds() / 3600
        stale = " — STALE: is Real Magnet still delivering?" if day.stale else ""
        lines.append(f"  landing: newest tracking file landed {hours:.1f} h ago{stale}")
    return lines


def _rejects_issues(day: DayFigures) -> list[str]:
    figures = day.figures
    if figures is None or not day.rejects_need_attention:
        return []
    rejected, failed = figures["rows_rejected"], figures["files_failed"]
    issues = [f"{rejected} rejected row{'s' if rejected != 1 else ''}"] if rejected else []
    issues += [f"{failed} unreadable file{'s' if failed != 1 else ''}"] if failed else []
    return issues or ["quality below its thresholds"]


def _failures_issues(day: DayFigures) -> list[str]:
    issues = []
    if not day.runs:
        issues.append("no run")
    elif day.runs[0].status != SUCCESS:
        issues.append(f"latest run {day.runs[0].status}")
    if day.failed_checks:
        issues.append(f"{len(day.failed_checks)} check(s) warned or failed")
    if day.stale:
        issues.append("no recent tracking file")
    return issues


def digest_notice(day: DayFigures, parts: tuple[str, ...], ui_base_url: str) -> Notice:
    """The day's digest with the channel's parts: stewards the rejects, engineers the runs."""
    sections = []
    if "rejects" in parts:
        sections.append(_rejects_part(day))
    if "failures" in parts:
        sections.append(_failures_part(day, ui_base_url))
    issues = (_rejects_issues(day) if "rejects" in parts else []) + (
        _failures_issues(day) if "failures" in parts else []
    )
    summary = ", ".join(issues) or "all clear"
    body = "\n\n".join(
        [f"subsync's digest of {day.day}."] + ["\n".join(section) for section in sections]
    )
    return Notice(f"digest:{day.day}", f"subsync digest {day.day}: {summary}", mask_secrets(body))


def digest_day(now: datetime) -> str:
    """The day a digest sent at local time `now` is about: yesterday."""
    return (now.date() - timedelta(days=1)).isoformat()
