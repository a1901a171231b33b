"""The per-day data-quality report for data stewards: a self-contained HTML page (Jinja2, inline
styles, the trend chart as inline SVG drawn by matplotlib), a CSV of every rejected row, and an
index of all days. Emails are masked everywhere but in the CSV, which stewards need whole.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.explain import Explanation, member_label
from subsync_pipeline.core.preview import CHANGE_COLUMNS, DELETE, INSERT, UPDATE, Preview
from subsync_pipeline.core.redact import mask_email

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TREND_DAYS = 30

REASON_FIXES: dict[str, str] = {
    "missing_member_id": "Fill the contact's Custom Member ID with their Personify Master "
    "Customer ID.",
    "invalid_member_id": "Correct the Custom Member ID: digits only (MASTER or MASTER|SUB).",
    "unknown_member": "The id is not in Personify: correct it in Real Magnet, or add the customer "
    "in Personify, then re-run the day.",
    "invalid_event_type": "Only subscribe / unsubscribe events can be synced.",
    "invalid_scope_type": "Use group, group_category or message_category.",
    "invalid_source": "Use a known source (preference centre, API, in-app, CSV upload, form, "
    "importer, third party).",
    "invalid_timestamp": "Fix occurred_at / timestamp_subscribed (ISO-8601, not before the "
    "configured start date, not in the future, subscribed no later than the event).",
    "tracking_disabled": "This event type is switched off in the subsync config (tracking).",
    "duplicate_event": "The same event id was exported twice with different content; the first "
    "recorded version was kept.",
    "invalid_event_id": "The tracking record has no event id (or one longer than 64 characters).",
    "missing_scope_id": "Fill in the group / category id.",
    "invalid_force_optin": "Use true or false for force_optin.",
    "value_too_long": "Shorten the group / category id or name (255 characters at most).",
    "file_unreadable": "Export the file again as UTF-8 CSV (optionally gzip) and re-upload it.",
    "file_too_large": "Split the export into smaller files (or raise max_file_mb) and re-upload.",
    "missing_columns": "Export the file again with all required columns.",
}
WRITE_COLUMNS = ["inserted", "updated", "deleted", "unchanged", "mismatched"]

_templates = Environment(
    loader=PackageLoader("subsync_pipeline", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    rejects_csv: Path
    index: Path


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix cells a spreadsheet would run as a formula with ', so they show as text."""
    safe = frame.copy()
    for column in safe.columns:
        text = safe[column].astype("string")
        risky = text.str.startswith(_FORMULA_START).fillna(False)
        safe[column] = safe[column].astype(object).where(~risky, "'" + text)
    return safe


def rejects_for_stewards(rejected: pd.DataFrame) -> pd.DataFrame:
    """Where each row was, why it failed, then its original values one per column as exported,
    so a steward can filter by email or member id and fix the contact in Real Magnet."""
    where = pd.DataFrame(
        {
            "file": rejected["source_file"].astype("string").to_numpy(),
            "line": rejected["line_number"].astype("Int64").array,
            "reasons": rejected["reasons"].to_numpy(),
            "error": rejected["error"].to_numpy(),
        }
    )
    originals = pd.DataFrame.from_records(
        [json.loads(v) if isinstance(v, str) else {} for v in rejected["original_values"]],
        index=where.index,
    )
    clashing = originals.columns.intersection(where.columns)
    originals = originals.rename(columns={c: f"{c} (original)" for c in clashing})
    return pd.concat([where, originals], axis=1)


def store_figures(conn: Connection, label: str, figures: dict[str, Any], now: datetime) -> None:
    table = state.quality_history
    conn.execute(table.delete().where(table.c.label == label))
    conn.execute(table.insert().values(label=label, figures=json.dumps(figures), updated_at=now))


def history(conn: Connection) -> list[dict[str, Any]]:
    """Every day's figures, oldest first."""
    table = state.quality_history
    rows = conn.execute(sa.select(table.c.label, table.c.figures).order_by(table.c.label))
    return [{"label": label, **json.loads(figures)} for label, figures in rows]


def figures_of(conn: Connection, label: str) -> dict[str, Any] | None:
    """One report's figures (a day's, by its label), None when it has not been written."""
    table = state.quality_history
    figures = conn.execute(
        sa.select(table.c.figures).where(table.c.label == label)
    ).scalar_one_or_none()
    return None if figures is None else dict(json.loads(figures))


def trend_svg(days: list[dict[str, Any]]) -> str:
    """Match rate, rejects by reason and status changes over the days, as inline SVG."""
    figure = Figure(figsize=(10, 5.5), layout="constrained")
    rate_axis, count_axis = figure.subplots(2, 1, sharex=True)
    labels = [day["label"][5:] for day in days]
    rate_axis.plot(labels, [day["match_rate"] for day in days], marker="o", color="#2a5db0")
    rate_axis.set_ylabel("member match rate")
    rate_axis.set_ylim(0, 1.05)
    reasons = sorted({code for day in days for code in day["rejects_by_reason"]})
    bottom = [0] * len(days)
    for reason in reasons:
        values = [day["rejects_by_reason"].get(reason, 0) for day in days]
        count_axis.bar(labels, values, bottom=bottom, label=f"rejected: {reason}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    count_axis.plot(
        labels,
        [day["status_changes"] for day in days],
        color="#1b7f3b",
        marker="s",
        label="status changes",
    )
    count_axis.set_ylabel("rows")
    count_axis.legend(fontsize="small", loc="upper left")
    count_axis.tick_params(axis="x", labelrotation=45)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _sample(rejected: pd.DataFrame, size: int = 20) -> list[dict[str, str]]:
    rows = rejects_for_stewards(rejected.head(size)).astype(object)
    return [
        {
            "file": mask_email(Path(str(row["file"])).name),
            "line": str(row["line"]),
            "event id": str(row.get("event_id", "")),
            "email": mask_email(str(row.get("email", ""))),
            "member id": str(row.get("custom_member_id", "")),
            "reasons": str(row["reasons"]),
            "error": mask_email(str(row["error"])),
        }
        for row in rows.where(rows.notna(), "").to_dict("records")
    ]


@dataclass(frozen=True)
class PreviewFiles:
    html: Path
    changes_csv: Path


# How many changed values the preview page shows; the CSV beside it has them all.
PREVIEW_SAMPLE = 100


def write_preview(folder: Path, preview: Preview) -> PreviewFiles:
    """Write <label>/preview.csv (every change) and <label>/preview.html (the counts and the
    first changes, a "Preview" section); a later preview of the same days overwrites them.

    The CSV is written a part at a time: a first backfill's long form held whole took 7.4 GB
    (bench/RESULTS.md item 18)."""
    target = folder / preview.label
    target.mkdir(parents=True, exist_ok=True)
    csv = target / "preview.csv"
    total = 0
    with csv.open("w", newline="", encoding="utf-8") as out:
        pd.DataFrame(columns=CHANGE_COLUMNS).to_csv(out, index=False)
        for part in preview.change_parts():
            neutralise_formulas(part).to_csv(out, index=False, header=False)
            total += len(part)
    sample = preview.sample(PREVIEW_SAMPLE).astype(object)
    page = _templates.get_template("preview.html.j2").render(
        label=preview.label,
        days=preview.days,
        rows_read=preview.rows_read,
        rows_rejected=preview.rows_rejected,
        files_failed=preview.files_failed,
        actions=[INSERT, UPDATE, DELETE],
        counts=list(preview.counts().items()),
        changes=total,
        columns=CHANGE_COLUMNS,
        sample=sample.where(sample.notna(), "").to_dict("records"),
    )
    html = target / "preview.html"
    html.write_text(page, encoding="utf-8")
    return PreviewFiles(html=html, changes_csv=csv)


def explanation_page(member: str) -> str:
    """Where a member's explanation goes beside its report (`MASTER|SUB` is no file name)."""
    return f"explain/{member.replace('|', '_')}.html"


def write_explanations(target: Path, explanations: Sequence[Explanation]) -> None:
    """One static page per member beside the report: no server needed to follow a link."""
    template = _templates.get_template("explanation.html.j2")
    for explanation in explanations:
        page = target / explanation_page(explanation.member)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(template.render(e=explanation), encoding="utf-8")


def write_report(
    folder: Path,
    label: str,
    figures: dict[str, Any],
    rejected: pd.DataFrame,
    newer: pd.DataFrame,
    written: dict[str, dict[str, int]],
    days: list[dict[str, Any]],
    explanations: Sequence[Explanation] = (),
) -> ReportFiles:
    """Write <label>/report.html, <label>/rejected_rows.csv, each explanation of a member with
    a newer request, and the index; re-runs overwrite."""
    target = folder / label
    target.mkdir(parents=True, exist_ok=True)
    write_explanations(target, explanations)
    explained = {explanation.member for explanation in explanations}
    rejects_csv = target / "rejected_rows.csv"
    neutralise_formulas(rejects_for_stewards(rejected)).to_csv(rejects_csv, index=False)
    newer_rows = []
    for row in newer.head(50).itertuples():
        member = member_label(str(row.master_customer_id), int(str(row.sub_customer_id)))
        subscribed = row.status == "subscribed"
        request = (
            row.last_unsubscribe_request_date if subscribed else row.last_subscribe_request_date
        )
        newer_rows.append(
            {
                "member": member,
                "link": explanation_page(member) if member in explained else "",
                "area": row.area,
                "status": row.status,
                "blocking": ("forced " if row.forced else "") + str(row.status_source),
                "request": str(request),
            }
        )
    page = _templates.get_template("report.html.j2").render(
        label=label,
        status=figures["status"],
        headline=[
            ("Files read", figures["files_read"]),
            ("Files that could not be read", figures["files_failed"]),
            ("Rows read", figures["rows_read"]),
            ("Rows rejected", figures["rows_rejected"]),
            ("Member match rate", f"{figures['match_rate']:.1%}"),
            ("Status changes", figures["status_changes"]),
            ("First-time events", figures["first_time_events"]),
            ("Requests newer than the status", figures["newer_requests"]),
        ],
        chart_svg=trend_svg(days[-TREND_DAYS:]),
        rejects=[
            {"code": code, "count": count, "fix": REASON_FIXES.get(code, "")}
            for code, count in figures["rejects_by_reason"].items()
        ],
        sample_columns=["file", "line", "event id", "email", "member id", "reasons", "error"],
        sample=_sample(rejected),
        newer=newer_rows,
        write_columns=WRITE_COLUMNS,
        written=list(written.items()),
    )
    report = target / "report.html"
    report.write_text(page, encoding="utf-8")
    index = folder / "index.html"
    index.write_text(
        _templates.get_template("index.html.j2").render(
            days=[{**day, "match_rate": f"{day['match_rate']:.1%}"} for day in reversed(days)]
        ),
        encoding="utf-8",
    )
    return ReportFiles(html=report, rejects_csv=rejects_csv, index=index)
