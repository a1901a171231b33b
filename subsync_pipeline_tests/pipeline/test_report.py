"""The steward report: every section present, emails masked in the HTML and metadata but whole
in the rejects CSV, formula payloads neutralised, an index of all days.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from subsync_pipeline.core.report import mask_email, neutralise_formulas
from subsync_pipeline_tests.harness import deploy, event

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def test_mask_email() -> None:
    assert mask_email("john.smith@example.org") == "j***@example.org"
    assert (
        mask_email("write to a@b.co or zed@x.example.com")
        == "write to a***@b.co or z***@x.example.com"
    )


def test_report_sections_masking_and_csv(tmp_path: Path) -> None:
    deployment = deploy(tmp_path)
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
        "b.csv",
        [
            event("OK2", "000100", "unsubscribe", "third_party", "2026-11-20T09:00:00"),
        ],
    )
    deployment.materialize("2026-11-19")
    result = deployment.materialize("2026-11-20")

    html = (deployment.reports / "2026-11-19" / "report.html").read_text()
    for section in ("headline", "trend", "rejects", "newer-requests", "written"):
        assert f'id="{section}"' in html
    # Self-contained: an inline SVG chart, nothing fetched (namespace URIs are not fetches).
    assert "<svg" in html
    assert not re.search(r"""(src|href)=["']https?:""", html) and "<script" not in html
    assert "unknown_member" in html and "Personify" in html
    assert "s***@example.org" in html
    assert not [e for e in EMAIL.findall(html) if "***@" not in e]

    later = (deployment.reports / "2026-11-20" / "report.html").read_text()
    # The third-party unsubscribe is newer than the status; the table names the form as blocker.
    newer = later[later.index('id="newer-requests"') : later.index('id="written"')]
    assert re.search(r"000100\|0.*?NEWSLETTER.*?subscribed.*?>form<", newer, re.S)

    index = (deployment.reports / "index.html").read_text()
    assert "2026-11-19/report.html" in index and "2026-11-20/report.html" in index

    metadata = result.asset_materializations_for_node("data_quality_report")[0].metadata
    assert not EMAIL.findall(str(metadata))
    with (deployment.reports / "2026-11-19" / "rejected_rows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    text = str(rows)
    assert "secret.person@example.org" in text
    assert all(not row["event_id"].startswith("=") for row in rows)
    assert any(row["event_id"].startswith("'=HYPERLINK") for row in rows)


def test_neutralise_formulas_leaves_ordinary_cells() -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": ["=1+1", "plain", "-2", "@x", None], "b": [1, 2, 3, 4, 5]})
    safe = neutralise_formulas(frame)
    assert safe["a"].tolist()[:4] == ["'=1+1", "plain", "'-2", "'@x"]
    assert safe["b"].tolist() == [1, 2, 3, 4, 5]
