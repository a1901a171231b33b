"""The code location loads, and exposes exactly the names SPEC §6 fixes."""

from __future__ import annotations

import dagster as dg

from subsync_pipeline.definitions import defs

SPEC_ASSETS = {
    "raw_tracking_log",
    "validated_tracking_records",
    "rejected_tracking_records",
    "contact_subscription_status",
    "personify_cus_opt_in",
    "personify_cus_activity",
    "data_quality_report",
}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_job_schedule_and_sensor_names() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == SPEC_ASSETS
    assert defs.resolve_job_def("daily_sync_job").name == "daily_sync_job"
    assert defs.resolve_schedule_def("daily_sync_schedule").job_name == "daily_sync_job"
    assert defs.resolve_sensor_def("tracking_upload_sensor").name == "tracking_upload_sensor"


def test_data_flows_one_way() -> None:
    graph = defs.resolve_asset_graph()

    def upstream(name: str) -> set[str]:
        return {key.to_user_string() for key in graph.get(dg.AssetKey(name)).parent_keys}

    assert upstream("raw_tracking_log") == set()
    assert upstream("validated_tracking_records") == {"raw_tracking_log"}
    assert upstream("contact_subscription_status") == {"validated_tracking_records"}
    assert upstream("personify_cus_opt_in") == {"contact_subscription_status"}
    assert upstream("personify_cus_activity") == {"contact_subscription_status"}
