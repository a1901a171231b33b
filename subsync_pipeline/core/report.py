"""The per-day data-quality report for data stewards: an HTML summary and a CSV of rejects."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    rejects_csv: Path


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix cells a spreadsheet would run as a formula with ', so they show as text."""
    safe = frame.copy()
    for column in safe.columns:
        text = safe[column].astype("string")
        risky = text.str.startswith(_FORMULA_START).fillna(False)
        safe[column] = safe[column].astype(object).where(~risky, "'" + text)
    return safe


def write_report(
    folder: Path, label: str, figures: dict[str, object], rejected: pd.DataFrame
) -> ReportFiles:
    """Write report.html and rejected_rows.csv under folder/label; re-runs overwrite them."""
    target = folder / label
    target.mkdir(parents=True, exist_ok=True)
    rejects_csv = target / "rejected_rows.csv"
    neutralise_formulas(rejected).to_csv(rejects_csv, index=False)
    rows = "\n".join(
        f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in figures.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>subsync data quality {html.escape(label)}</title>
</head><body style="font-family: sans-serif; margin: 2em;">
<h1>subsync data quality &mdash; {html.escape(label)}</h1>
<table style="border-collapse: collapse;">{rows}</table>
<p>All rejected rows, with their original values:
<a href="rejected_rows.csv">rejected_rows.csv</a></p>
</body></html>
"""
    report = target / "report.html"
    report.write_text(page, encoding="utf-8")
    return ReportFiles(html=report, rejects_csv=rejects_csv)
