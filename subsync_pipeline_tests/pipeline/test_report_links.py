"""Report links in Dagster metadata: `file://` on the machine that wrote them, the web address of
the same file once `reports_base_url` says where the reports folder is published."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.core.config import ConfigError, parse_config
from subsync_pipeline_tests.harness import Deployment, deploy, event

DAY = "2026-11-19"
BASE = "https://subsync.example.org/steward/reports"
DRY_RUN = {"ops": {"raw_tracking_log": {"config": {"dry_run": True}}}}


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    # A space in the folder's name: links must escape it, as a browser would.
    landed = deploy(tmp_path / "sub sync")
    landed.land(
        "a.csv",
        [
            event("OK1", "000100", "subscribe", "form", f"{DAY}T09:00:00"),
            event("BAD1", "999999", "subscribe", "api", f"{DAY}T10:00:00"),
        ],
    )
    return landed


def report_links(deployment: Deployment) -> dict[str, str]:
    """The `report` and `index` links of the day's data_quality_report, and the dry run's
    `preview` link on personify_cus_opt_in."""
    with dg.instance_for_test() as instance:
        materialized = deployment.materialize(DAY, instance)
        dry_run = dg.materialize(
            sync_assets,
            partition_key=DAY,
            resources=deployment.resources(),
            instance=instance,
            run_config=DRY_RUN,
        )
    metadata = next(
        m.materialization.metadata
        for m in materialized.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("data_quality_report")
    )
    observed = next(
        e.asset_observation_data.asset_observation.metadata
        for e in dry_run.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.asset_key == dg.AssetKey("personify_cus_opt_in")
    )
    links = {
        "report": metadata["report"],
        "index": metadata["index"],
        "preview": observed["preview"],
    }
    assert all(isinstance(link, dg.UrlMetadataValue) for link in links.values()), links
    return {name: str(link.value) for name, link in links.items()}


def test_links_are_file_uris_without_a_base_url(deployment: Deployment) -> None:
    reports = deployment.reports.resolve()
    links = report_links(deployment)
    assert links == {
        "report": (reports / DAY / "report.html").as_uri(),
        "index": (reports / "index.html").as_uri(),
        "preview": (reports / DAY / "preview.html").as_uri(),
    }
    assert "/sub%20sync/" in links["report"]


def test_links_point_under_reports_base_url_when_set(deployment: Deployment) -> None:
    deployment.set_config(reports_base_url=BASE + "/")
    assert report_links(deployment) == {
        "report": f"{BASE}/{DAY}/report.html",
        "index": f"{BASE}/index.html",
        "preview": f"{BASE}/{DAY}/preview.html",
    }
    # The files the links name are the ones written.
    assert (deployment.reports / DAY / "report.html").is_file()
    assert (deployment.reports / DAY / "preview.html").is_file()


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://files.example.org/reports",
        "file:///srv/subsync/reports",
        "subsync.example.org/reports",
        "https://subsync.example.org/reports?user=me",
    ],
)
def test_reports_base_url_must_be_a_web_address(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"reports_base_url: .*not an http"):
        parse_config({"reports_base_url": bad})
