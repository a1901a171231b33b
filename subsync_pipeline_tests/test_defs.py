"""The code location loads, and exposes exactly the names SPEC §6 fixes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from subsync_pipeline.core import sync
from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline.definitions import defs
from subsync_pipeline_tests.harness import deploy, event

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


GROUPS = {"ingest", "validate", "resolve", "personify", "quality"}
OWNERS = {"team:data-engineering", "team:data-stewards"}
TABULAR = SPEC_ASSETS - {"data_quality_report"}


def _schema(name: str) -> dg.TableSchema | None:
    value = defs.resolve_asset_graph().get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
    return value.schema if value is not None else None


def test_every_asset_reads_well_in_the_ui() -> None:
    graph = defs.resolve_asset_graph()
    groups = set()
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        groups.add(node.group_name)
        assert node.owners and set(node.owners) <= OWNERS, name
        # A sentence or three for an operator, not a restated name.
        assert node.description and len(node.description) > 100, name
        assert node.kinds, name
        assert node.tags.get("system") in {"real-magnet", "subsync", "personify360"}, name
        references = node.metadata["dagster/code_references"].code_references
        assert len(references) == 1, name
        source = Path(references[0].file_path)
        defining = source.read_text().splitlines()[references[0].line_number - 1 :]
        assert source.parent.name == "assets" and name in "\n".join(defining[:40]), name
    assert groups == GROUPS


def test_who_to_ask_and_where_emails_are() -> None:
    graph = defs.resolve_asset_graph()
    stewards = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if "team:data-stewards" in graph.get(key).owners
    }
    assert stewards == {"rejected_tracking_records", "data_quality_report"}
    emails = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).tags.get("pii") == "email"
    }
    assert emails == {"raw_tracking_log", "rejected_tracking_records"}


def test_tabular_assets_have_documented_column_schemas() -> None:
    assert _schema("data_quality_report") is None
    for name in TABULAR:
        schema = _schema(name)
        assert schema is not None and schema.columns, name
        for column in schema.columns:
            assert column.description and column.type, (name, column.name)
    opt_in = {column.name: column for column in _schema("personify_cus_opt_in").columns}
    assert opt_in["OPTION_SHORT_NAME"].type == "VARCHAR(24)"
    assert "primary key" in opt_in["OPTION_SHORT_NAME"].constraints.other


DTYPE_KINDS = {"string": "OU", "int": "i", "bool": "b", "datetime": "M"}
# Columns of the state tables that only record who stored a row when (not part of the asset).
_BOOKKEEPING = {"reject_id", "rejected_in_run", "rejected_at"}


def test_column_schemas_match_what_the_assets_produce(tmp_path: Path) -> None:
    """The schemas the UI shows are the columns a real day produces, in order."""
    deployment = deploy(tmp_path)
    deployment.land(
        "day.csv",
        [
            event("E1", "000100", "subscribe", "form", "2026-11-19T09:00:00"),
            event("E2", "999999", "subscribe", "form", "2026-11-19T09:00:00"),
        ],
    )
    deployment.materialize("2026-11-19")
    config = load_config(deployment.config_path)
    state_engine = create_state_engine(deployment.state_url)
    raw = sync.read_raw(state_engine, config, ["2026-11-19"]).rows
    state_engine.dispose()
    assert [c.name for c in _schema("raw_tracking_log").columns] == list(raw.columns)
    # The raw rows are typed from what they hold, so their types are checked too.
    for column in _schema("raw_tracking_log").columns:
        assert raw[column.name].dtype.kind in DTYPE_KINDS[column.type], column
    # The other assets are the state database's tables, which the schemas name as stored.
    for name, table in (
        ("validated_tracking_records", "SELECT * FROM event_ledger"),
        ("rejected_tracking_records", "SELECT * FROM rejected_records"),
        ("contact_subscription_status", "SELECT * FROM key_states"),
    ):
        stored = [c for c in deployment.state(table).columns if c not in _BOOKKEEPING]
        assert [c.name for c in _schema(name).columns] == stored, name
    with deployment.engine().connect() as conn:
        inspector = sa.inspect(conn)
        for name, table in (
            ("personify_cus_opt_in", "CUS_OPT_IN"),
            ("personify_cus_activity", "CUS_ACTIVITY"),
        ):
            stored = [column["name"] for column in inspector.get_columns(table)]
            assert [c.name for c in _schema(name).columns] == stored, name
