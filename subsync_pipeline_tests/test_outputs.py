"""Steps hand each other summaries, not data (issue 19): the state database is the only copy
of the events, decisions and statuses, so what Dagster stores per step stays the same size
however big the day is."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from subsync_pipeline.assets import sync_assets
from subsync_pipeline_tests.harness import deploy, event


def stored_outputs(tmp_path: Path, events: int) -> dict[str, int]:
    """Bytes Dagster's filesystem IO manager keeps per step output, for a day of `events`."""
    deployment = deploy(tmp_path / f"day-{events}")
    deployment.land(
        "day.csv",
        [
            event(
                f"E{n}",
                "000100",
                ("subscribe", "unsubscribe")[n % 2],
                "form",
                f"2026-11-19T09:{n // 60 % 60:02d}:{n % 60:02d}",
            )
            for n in range(events)
        ],
    )
    storage = tmp_path / f"outputs-{events}"
    resources = {
        **deployment.resources(),
        "io_manager": dg.FilesystemIOManager(base_dir=str(storage)),
    }
    with dg.instance_for_test() as instance:
        dg.materialize(
            sync_assets, partition_key="2026-11-19", resources=resources, instance=instance
        )
    return {path.parent.name: path.stat().st_size for path in storage.rglob("2026-11-19")}


def test_step_outputs_do_not_grow_with_the_day(tmp_path: Path) -> None:
    small, large = stored_outputs(tmp_path, 20), stored_outputs(tmp_path, 2_000)
    assert (
        set(small)
        == set(large)
        >= {
            "raw_tracking_log",
            "validated_tracking_records",
            "rejected_tracking_records",
            "contact_subscription_status",
        }
    )
    for name, size in large.items():
        assert size < 20_000, (name, size)
        assert size <= small[name] + 200, (name, small[name], size)
