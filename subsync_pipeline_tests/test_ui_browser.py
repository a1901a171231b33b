"""The Dagster UI as an operator uses it, in Debian's chromium.

`dagster dev` (webserver and daemon) runs on loopback with a throwaway DAGSTER_HOME and the demo
sandbox that `subsync sandbox` creates. In the browser: the asset graph shows the seven assets in
their five groups; one day is launched from the UI and succeeds; its data-quality report is
opened from the link on the materialisation. Each step leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, FloatRect, Page, expect

from subsync_pipeline_tests.browser import PageWatch, new_page, screenshot
from subsync_pipeline_tests.dagster_services import (
    BIN,
    ROOT,
    WORKSPACE,
    Services,
    graphql,
    group_alive,
    wait_until_loaded,
)
from subsync_pipeline_tests.pg_server import free_port

GROUPS = {
    "raw_tracking_log": "ingest",
    "validated_tracking_records": "validate",
    "rejected_tracking_records": "validate",
    "contact_subscription_status": "resolve",
    "personify_cus_opt_in": "personify",
    "personify_cus_activity": "personify",
    "data_quality_report": "quality",
}
RUN_SECONDS = 240
UI_TIMEOUT_MS = 60_000


@dataclass
class DagsterDev:
    url: str
    root: Path
    day: str
    services: Services


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    """`subsync sandbox` into a temp folder, then `dagster dev` on it; stopped whatever happens."""
    root = tmp_path_factory.mktemp("ui")
    env = {name: value for name, value in os.environ.items() if name != "SUBSYNC_CONFIG"}
    env.update(
        PERSONIFY_DB_URL=f"sqlite:///{root / 'personify.db'}",
        SUBSYNC_DB_URL=f"sqlite:///{root / 'state.db'}",
        SUBSYNC_LANDING_DIR=str(root / "landing"),
        SUBSYNC_REPORTS_DIR=str(root / "reports"),
    )
    # Without SUBSYNC_CONFIG the sandbox writes the demo config to ./data/ of its folder.
    sandbox = subprocess.run(
        [str(BIN / "subsync"), "sandbox"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sandbox.returncode == 0, sandbox.stdout + sandbox.stderr
    days = re.search(r"days (\d{4}-\d{2}-\d{2}) to", sandbox.stdout)
    assert days, sandbox.stdout
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env.update(SUBSYNC_CONFIG=str(root / "data" / "subsync.yaml"), DAGSTER_HOME=str(home))

    port = free_port()
    services = Services(env, root / "logs")
    try:
        services.start(
            "dagster-dev",
            str(BIN / "dagster"),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            WORKSPACE,
        )
        wait_until_loaded(port, services)
        # A fresh DAGSTER_HOME greets its first visitor, at some moment, with a newsletter dialog
        # that would close any menu open then; answer it up front, as its Skip button does.
        graphql(port, "mutation { setNuxSeen }")
        yield DagsterDev(f"http://127.0.0.1:{port}", root, days.group(1), services)
    finally:
        services.stop()
        assert not any(group_alive(p.pid) for p in services.processes), "dagster dev survived"


def _operator_page(browser: Browser) -> tuple[Page, PageWatch]:
    page, watch = new_page(browser)
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page, watch


def _assert_quiet(watch: PageWatch, dev: DagsterDev) -> None:
    """No uncaught error or console error, and nothing fetched from beyond this machine."""
    assert watch.page_errors == [], watch.page_errors
    assert watch.console_errors == [], watch.console_errors
    allowed = (dev.url, "blob:", "data:", "file://")
    assert all(url.startswith(allowed) for url in watch.requests), [
        url for url in watch.requests if not url.startswith(allowed)
    ]


def _graph_boxes(page: Page) -> dict[str, FloatRect]:
    """Text of each node of the asset graph (an SVG of HTML nodes) and where it is drawn."""
    boxes = {}
    for node in page.locator("svg foreignObject").all():
        text, box = (node.text_content() or "").strip(), node.bounding_box()
        if text and box:
            boxes[text] = box
    return boxes


def _label_of(asset: str, labels: list[str]) -> str | None:
    """The node label showing `asset`; a zoomed-out graph shortens names as `contact_su…_status`."""
    for label in labels:
        if re.fullmatch(".*".join(re.escape(part) for part in label.split("…")), asset):
            return label
    return None


def _inside(inner: FloatRect, outer: FloatRect) -> bool:
    return (
        outer["x"] - 1 <= inner["x"]
        and outer["y"] - 1 <= inner["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 1
    )


def test_asset_graph_shows_the_seven_assets_in_their_groups(
    dagster_dev: DagsterDev, browser: Browser
) -> None:
    page, watch = _operator_page(browser)
    page.goto(f"{dagster_dev.url}/asset-groups")
    expect(page.get_by_role("button", name=re.compile("Materialize all"))).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
    page.keyboard.press("Escape")

    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        boxes = _graph_boxes(page)
        labels = {asset: _label_of(asset, list(boxes)) for asset in GROUPS}
        if all(labels.values()) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    screenshot(page, "ui-1-asset-graph")
    assert all(labels.values()), f"assets missing from the graph: {sorted(boxes)}"
    for asset, group in GROUPS.items():
        label = labels[asset]
        assert label is not None and group in boxes, (asset, group, sorted(boxes))
        assert _inside(boxes[label], boxes[group]), f"{asset} is not drawn inside group {group}"
    _assert_quiet(watch, dagster_dev)
    page.close()


def test_a_day_launched_from_the_ui_succeeds_and_links_its_report(
    dagster_dev: DagsterDev, browser: Browser
) -> None:
    day, url = dagster_dev.day, dagster_dev.url
    page, watch = _operator_page(browser)
    page.goto(f"{url}/asset-groups")
    page.get_by_role("button", name=re.compile("Materialize all")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 7 assets")
    partitions = dialog.get_by_role("textbox").first
    partitions.fill(day)
    partitions.press("Enter")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled(timeout=UI_TIMEOUT_MS)
    screenshot(page, "ui-2-launch-one-day")
    launch.click()

    toast = page.get_by_role("region", name=re.compile("Notifications")).get_by_role("listitem")
    expect(toast.filter(has_text="Launched run")).to_be_visible(timeout=UI_TIMEOUT_MS)
    toast.get_by_role("link", name="View").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(outcome).to_be_visible(timeout=RUN_SECONDS * 1000)
    screenshot(page, "ui-3-run")
    assert outcome.inner_text() == "Success", dagster_dev.services.log_tail()
    expect(page.get_by_text(f"partition: {day}")).to_be_visible(timeout=UI_TIMEOUT_MS)

    # The day's report, linked from the data_quality_report materialisation of that partition.
    page.goto(f"{url}/assets/data_quality_report?view=partitions&partition={day}")
    # The slash is escaped: Playwright's selector parser would end the pattern at a bare one.
    link = page.get_by_role("link", name=re.compile(rf"{day}\/report\.html$")).first
    expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
    screenshot(page, "ui-4-report-link")
    href = link.get_attribute("href") or ""
    assert href.startswith("file://"), href
    report = Path(unquote(urlparse(href).path))
    assert report == dagster_dev.root / "reports" / day / "report.html"
    _assert_quiet(watch, dagster_dev)

    # Chromium will not follow a file:// link from an http page; an operator opens it directly.
    page.goto(href)
    expect(page.locator("#headline")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("body")).to_contain_text(day, timeout=UI_TIMEOUT_MS)
    screenshot(page, "ui-5-report")
    assert watch.page_errors == [] and watch.console_errors == []
    page.close()

    engine = sa.create_engine(f"sqlite:///{dagster_dev.root / 'personify.db'}")
    with engine.connect() as conn:
        written = conn.execute(sa.text('SELECT count(*) FROM "CUS_OPT_IN"')).scalar_one()
    engine.dispose()
    assert written > 0, "the run launched from the UI wrote nothing to Personify"
