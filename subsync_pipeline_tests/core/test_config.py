"""Config (SPEC §7): the documented example loads; a bad key or value fails at load, named."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from subsync_pipeline.core.config import ConfigError, load_config, parse_config

SPEC_EXAMPLE = """
timezone: America/New_York
start_date: "2026-01-01"
schedule_time: "02:00"
member_id_pattern: "^[0-9]{1,24}$"
tracking: {subscribe_enabled: true, unsubscribe_enabled: true}
interest_areas:
  - {scope_type: group, scope_id: "1201", opt_in_code: NEWSLETTER, opt_in_subcode: INSIDER}
  - {scope_type: message_category, scope_id: "77", opt_in_code: EVENTS}
source_ranks: {preference_centre: 1, api: 2, in_app: 2, csv_upload: 2, form: 3, importer: 4,
  third_party: 5}
columns: {}
personify:
  write_opt_in: true
  write_activity: true
  activity_codes: {subscribe: RM_SUBSCRIBE, unsubscribe: RM_UNSUBSCRIBE}
  tables: {customer: CUSTOMER, opt_in: CUS_OPT_IN, activity: CUS_ACTIVITY}
  option_type: INTEREST_AREA
  operator: SUBSYNC
  opt_out_reason: null
  columns: {opt_in: {}, activity: {}}
  constants: {opt_in: {}, activity: {}}
quality: {min_member_match_rate: 0.95, max_reject_rate: 0.05}
"""


def test_spec_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "subsync.yaml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    config = load_config(path)
    assert config.start_date == date(2026, 1, 1)
    assert config.schedule_time == time(2, 0)
    assert config.area_map() == {
        ("group", "1201"): "NEWSLETTER/INSIDER",
        ("message_category", "77"): "EVENTS",
    }
    # The subcode defaults to the code (an area Personify stores without subcodes).
    assert config.area_codes() == {
        "NEWSLETTER/INSIDER": ("NEWSLETTER", "INSIDER"),
        "EVENTS": ("EVENTS", "EVENTS"),
    }
    assert config.source_ranks["third_party"] == 5
    assert config.personify.columns_of("opt_in")["code"] == "OPTION_SHORT_NAME"
    assert "source" not in config.personify.columns_of("opt_in")  # extras are off by default
    assert "external_id" not in config.personify.columns_of("activity")


def test_column_map_renames_and_switches_off_fields() -> None:
    personify = parse_config(
        {
            "personify": {
                "columns": {
                    "opt_in": {"flag": "IS_OPTED_IN", "opt_out_reason": None, "source": "SRC"},
                    "activity": {"external_id": "RM_EVENT_ID", "mod_date": None},
                },
                "constants": {"opt_in": {"ORG_ID": "ASSOC1"}, "activity": {"PRIORITY": 3}},
            }
        }
    ).personify
    opt_in, activity = personify.columns_of("opt_in"), personify.columns_of("activity")
    assert (opt_in["flag"], opt_in["source"]) == ("IS_OPTED_IN", "SRC")
    assert "opt_out_reason" not in opt_in
    assert activity["external_id"] == "RM_EVENT_ID" and "mod_date" not in activity
    assert personify.constants.activity == {"PRIORITY": 3}


@pytest.mark.parametrize(
    ("personify", "named"),
    [
        (
            {"columns": {"opt_in": {"colour": "X"}}},
            "personify.columns.opt_in: Value error, unknown field(s) ['colour']",
        ),
        ({"columns": {"opt_in": {"code": None}}}, "field(s) ['code'] cannot be switched off"),
        ({"columns": {"activity": {"id": None}}}, "field(s) ['id'] cannot be switched off"),
        ({"columns": {"opt_in": {"flag": "OPT_IN_DATE"}}}, "both map to column OPT_IN_DATE"),
        ({"columns": {"activity": {"text": "NOTE; DROP"}}}, "'NOTE; DROP' is not a column name"),
        ({"constants": {"opt_in": {"OPT_IN_FLAG": "Y"}}}, "constants.opt_in.OPT_IN_FLAG"),
        ({"constants": {"activity": {"bad name": 1}}}, "are not column names"),
        ({"opt_out_reason": ""}, "personify.opt_out_reason"),
    ],
)
def test_bad_column_map_fails_naming_the_key(personify: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"personify": personify}, "site.yaml")
    assert named in str(error.value) and str(error.value).startswith("site.yaml")


def test_one_scope_cannot_map_to_two_areas() -> None:
    areas = [
        {"scope_type": "group", "scope_id": "1", "opt_in_code": "NEWS", "opt_in_subcode": "A"},
        {"scope_type": "group", "scope_id": "1", "opt_in_code": "NEWS", "opt_in_subcode": "B"},
    ]
    with pytest.raises(ConfigError, match="maps group 1 to both NEWS/A and NEWS/B"):
        parse_config({"interest_areas": areas})
    with pytest.raises(ConfigError, match="opt_in_subcode"):
        parse_config(
            {"interest_areas": [{**areas[0], "opt_in_subcode": "A/B"}]}  # '/' builds area keys
        )


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.timezone == "America/New_York"
    assert config.personify.tables.opt_in == "CUS_OPT_IN"
    assert config.personify.activity_codes.subscribe == "RM_SUBSCRIBE"


def test_partial_source_ranks_keep_the_other_defaults() -> None:
    config = parse_config({"source_ranks": {"form": 1}})
    assert config.source_ranks["form"] == 1 and config.source_ranks["importer"] == 4


def test_unquoted_numeric_scope_id_is_text() -> None:
    config = parse_config(
        {"interest_areas": [{"scope_type": "group", "scope_id": 1201, "opt_in_code": "NEWS"}]}
    )
    assert config.area_map() == {("group", "1201"): "NEWS"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone: Value error, unknown IANA time zone"),
        ({"start_date": "yesterday"}, "start_date:"),
        ({"member_id_pattern": "(["}, "member_id_pattern: Value error, not a valid regular"),
        ({"source_ranks": {"fax": 1}}, "source_ranks: Value error, unknown source(s) ['fax']"),
        ({"tracking": {"subscribe": False}}, "tracking.subscribe: Extra inputs"),
        ({"typo_key": 1}, "typo_key: Extra inputs are not permitted"),
        (
            {"interest_areas": [{"scope_type": "list", "scope_id": "1", "opt_in_code": "X"}]},
            "interest_areas.0.scope_type:",
        ),
        (
            {"personify": {"tables": {"opt_in": "dbo.CUS_OPT_IN; DROP TABLE x"}}},
            "personify.tables.opt_in: Value error",
        ),
        ({"quality": {"max_reject_rate": 2}}, "quality.max_reject_rate:"),
        ({"columns": {"Member": "member"}}, "columns: Value error, renames to unknown column"),
        (
            {
                "interest_areas": [
                    {"scope_type": "group", "scope_id": "1", "opt_in_code": "A"},
                    {"scope_type": "group", "scope_id": "1", "opt_in_code": "B"},
                ]
            },
            "maps group 1 to both A and B",
        ),
    ],
)
def test_bad_config_names_key_and_problem(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(data, "site.yaml")
    assert str(error.value).startswith("site.yaml: invalid config")
    assert expected in str(error.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(listing)


@pytest.mark.parametrize(
    "name",
    [
        'CUS_OPT_IN"; DROP TABLE "CUSTOMER"; --',
        "CUS_OPT_IN; DROP TABLE x",
        "[dbo].[CUS_OPT_IN]",
        '"CUS_OPT_IN"',
        "db.dbo.CUS_OPT_IN",
        "CUS OPT IN",
        "1CUS_OPT_IN",
        "",
        "dbo.",
    ],
)
def test_table_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(ConfigError, match=r"personify\.tables\.opt_in"):
        parse_config({"personify": {"tables": {"opt_in": name}}})


def test_configured_table_names_are_quoted_in_sql() -> None:
    """Checked names are still quoted by the dialect, so a reserved word or case is kept."""
    from sqlalchemy.dialects import mssql, postgresql

    from subsync_pipeline.core.personify.tables import personify_tables

    names = parse_config({"personify": {"tables": {"opt_in": "dbo.select", "activity": "Act"}}})
    tables = personify_tables(names.personify)
    on_pg = str(tables.opt_in.table.insert().compile(dialect=postgresql.dialect()))
    assert on_pg.startswith('INSERT INTO dbo."select" ("MASTER_CUSTOMER_ID"')
    on_mssql = str(tables.activity.table.delete().compile(dialect=mssql.dialect()))
    assert on_mssql.startswith("DELETE FROM [Act]")
