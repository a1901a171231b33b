"""The steward report: every section present and rendered in a real browser, emails masked in the
HTML, the Dagster metadata and the run logs but whole in the rejects CSV, formula payloads
neutralised, an index of all days.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from playwright.sync_api import Browser

from subsync_pipeline.core.redact import mask_email
from subsync_pipeline.core.report import neutralise_formulas, rejects_for_stewards
from subsync_pipeline_tests.browser import new_page, screenshot
from subsync_pipeline_tests.harness import (
    DEFAULT_CONFIG,
    Deployment,
    console_output,
    deploy,
    event,
)

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
SECTIONS = ("headline", "trend", "rejects", "newer-requests", "written")
# A file whose very name is personal data: it fails to parse, so its name is logged.
BROKEN_FILE = "export-jane.doe@example.org.csv"


def unmasked_emails(text: str) -> list[str]:
    return [found for found in EMAIL.findall(text) if "***@" not in found]


def recorded_day() -> str:
    return datetime.now(ZoneInfo(DEFAULT_CONFIG["timezone"])).date().isoformat()


@dataclass
class Reported:
    deployment: Deployment
    instance: dg.DagsterInstance
    results: list[dg.ExecuteInProcessResult]
    console: str


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reported]:
    """Two days through Dagster: rejects with emails and a formula payload, a newer request, an
    unreadable file named after a person; every Python log record of the runs is kept."""
    deployment = deploy(tmp_path_factory.mktemp("report"))
    deployment.land(
        "a.csv",
        [
            event("OK1", "000100", "subscribe", "form", "2026-11-19T09:00:00"),
            event(
                "BAD1",
                "999999",
                "subscribe",
                "api",
                "2026-11-19T09:00:00",
                email="secret.person@example.org",
            ),
            {
                **event(
                    '=HYPERLINK("http://x")', "12AB", "subscribe", "api", "2026-11-19T09:00:00"
                ),
                "email": "+danger@example.org",
            },
        ],
    )
    deployment.land(
        "b.csv", [event("OK2", "000100", "unsubscribe", "third_party", "2026-11-20T09:00:00")]
    )
    (deployment.landing / BROKEN_FILE).write_bytes(b"\x00\xff\xfe garbage, not a tracking log")
    console = deployment.root / "console.log"
    with dg.instance_for_test() as instance:
        with console_output(console):
            days = ("2026-11-19", "2026-11-20", recorded_day())
            results = [deployment.materialize(day, instance) for day in days]
        yield Reported(deployment, instance, results, console.read_text(errors="replace"))


def test_mask_email() -> None:
    assert mask_email("john.smith@example.org") == "j***@example.org"
    assert (
        mask_email("write to a@b.co or zed@x.example.com")
        == "write to a***@b.co or z***@x.example.com"
    )
    assert unmasked_emails("a***@b.co and m000100@example.org") == ["m000100@example.org"]


def test_report_sections_masking_and_csv(reported: Reported) -> None:
    reports = reported.deployment.reports
    html = (reports / "2026-11-19" / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    # Self-contained: an inline SVG chart, nothing fetched (namespace URIs are not fetches).
    assert "<svg" in html
    assert not re.search(r"""(src|href)=["']https?:""", html) and "<script" not in html
    assert "unknown_member" in html and "Personify" in html
    assert "s***@example.org" in html
    assert not unmasked_emails(html)
    # A file with no readable timestamp is reported on the day it was recorded, name masked.
    recorded = (reports / recorded_day() / "report.html").read_text()
    assert "e***@example.org.csv" in recorded and "file_unreadable" in recorded
    assert not unmasked_emails(recorded)

    later = (reports / "2026-11-20" / "report.html").read_text()
    # The third-party unsubscribe is newer than the status; the table names the form as blocker.
    newer = later[later.index('id="newer-requests"') : later.index('id="written"')]
    assert re.search(r"000100.*?NEWSLETTER.*?subscribed.*?>form<", newer, re.S)
    # The member links to a static page explaining the blocked request.
    assert 'href="explain/000100_0.html"' not in newer and 'href="explain/000100.html"' in newer
    page = (reports / "2026-11-20" / "explain" / "000100.html").read_text()
    assert "blocked_by_precedence" in page and "cannot override it" in page
    assert not unmasked_emails(page)

    index = (reports / "index.html").read_text()
    assert "2026-11-19/report.html" in index and "2026-11-20/report.html" in index

    with (reports / "2026-11-19" / "rejected_rows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # Where, why, then every original value in its own column, whole emails included.
    assert list(rows[0])[:4] == ["file", "line", "reasons", "error"]
    by_member = {row["custom_member_id"]: row for row in rows}
    assert by_member["999999"]["email"] == "secret.person@example.org"
    assert by_member["999999"]["reasons"] == "unknown_member"
    assert by_member["999999"]["line"] == "3"
    assert by_member["12AB"]["event_id"] == '\'=HYPERLINK("http://x")'
    assert by_member["12AB"]["email"] == "'+danger@example.org"
    assert not [cell for row in rows for cell in row.values() if cell and cell[0] in "=+-@"]


def test_no_unmasked_email_in_metadata_or_run_logs(reported: Reported) -> None:
    instance = reported.instance
    entries = [entry for result in reported.results for entry in instance.all_logs(result.run_id)]
    assert any(
        entry.dagster_event and entry.dagster_event.is_step_materialization for entry in entries
    )
    # Every event record, its message and its metadata, as the UI and the GraphQL API show them.
    logged = "\n".join(repr(entry) for entry in entries)
    assert "e***@example.org.csv" in logged, "the broken file should be logged, masked"
    assert not unmasked_emails(logged)
    console = reported.console
    assert "e***@example.org.csv" in console and "RUN_SUCCESS" in console
    assert not unmasked_emails(console)
    for key in instance.get_asset_keys():
        for record in instance.fetch_materializations(key, limit=100).records:
            assert not unmasked_emails(repr(record.asset_materialization))


def test_report_in_a_real_browser(reported: Reported, browser: Browser) -> None:
    reports = reported.deployment.reports
    page, watch = new_page(browser)
    page.goto((reports / "index.html").as_uri())
    page.get_by_role("link", name=re.compile("2026-11-19")).first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("2026-11-19/report.html")

    for section in SECTIONS:
        box = page.locator(f"#{section}").bounding_box()
        assert box and box["height"] > 20, f"section {section} is not rendered"
    chart = page.locator("#trend svg")
    box = chart.bounding_box()
    assert box and box["width"] > 400 and box["height"] > 200
    assert chart.locator("path").count() > 10  # axes, the rate line, bars: a drawn chart
    body = page.inner_text("body")
    assert "unknown_member" in body and "s***@example.org" in body
    assert not unmasked_emails(body)
    shot = screenshot(page, "report-2026-11-19")
    assert shot.stat().st_size > 10_000

    assert watch.console_errors == [] and watch.page_errors == []
    assert all(url.startswith("file://") for url in watch.requests), watch.requests

    # The next day's blocked request links to the member's explanation, a page of its own.
    page.goto((reports / "2026-11-20" / "report.html").as_uri())
    page.locator("#newer-requests").get_by_role("link", name="000100").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("2026-11-20/explain/000100.html")
    body = page.inner_text("body")
    assert "blocked_by_precedence" in body and "by form (rank 3)" in body
    assert not unmasked_emails(body)
    screenshot(page, "explanation-000100")
    page.get_by_role("link", name="Back to the report").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("2026-11-20/report.html")
    assert watch.console_errors == [] and watch.page_errors == []
    page.close()


def test_neutralise_formulas_leaves_ordinary_cells() -> None:
    frame = pd.DataFrame({"a": ["=1+1", "plain", "-2", "@x", None], "b": [1, 2, 3, 4, 5]})
    safe = neutralise_formulas(frame)
    assert safe["a"].tolist()[:4] == ["'=1+1", "plain", "'-2", "'@x"]
    assert safe["b"].tolist() == [1, 2, 3, 4, 5]


def test_rejects_csv_keeps_line_numbers_whole_beside_a_file_reject() -> None:
    """An unreadable file's reject has no line; the row rejects of the same day keep theirs."""
    rejected = pd.DataFrame(
        {
            "source_file": ["a.csv", "b.csv"],
            "line_number": [3, None],
            "reasons": ["unknown_member", "file_unreadable"],
            "error": [None, "cannot read the file"],
            "original_values": ['{"event_id": "E1"}', None],
        }
    )
    lines = rejects_for_stewards(rejected).to_csv(index=False).splitlines()
    assert lines[1:] == [
        "a.csv,3,unknown_member,,E1",
        "b.csv,,file_unreadable,cannot read the file,",
    ]
