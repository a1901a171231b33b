"""What the Dagster UI's catalog shows beside each asset: owners, tags and column schemas.

Column names come from the core modules that produce them (and the SQLAlchemy tables that store
them), so a schema cannot drift from the data; only the operator-facing explanations live here.
"""

from collections.abc import Iterable, Mapping

import dagster as dg
import sqlalchemy as sa

from subsync_pipeline.core import state
from subsync_pipeline.core.config import PersonifyConfig
from subsync_pipeline.core.ingest import RAW_COLUMNS
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.tracking_log import (
    DAY,
    FILE_ID,
    FINGERPRINT,
    LINE,
    OCCURRED_UTC,
    REQUIRED_COLUMNS,
    SOURCE_FILE,
)
from subsync_pipeline.core.validation import REJECT_COLUMNS

# Who to ask. Data engineering runs the pipeline and answers for what reaches Personify; data
# stewards act on what it could not sync (rejected rows, the daily report) in Real Magnet.
DATA_ENGINEERING = "team:data-engineering"
DATA_STEWARDS = "team:data-stewards"
PIPELINE_OWNERS = [DATA_ENGINEERING]
STEWARD_OWNERS = [DATA_STEWARDS, DATA_ENGINEERING]

# Tags the catalog can filter on: which system a table mirrors, and which ones hold raw emails
# (personal data: subsync masks them everywhere except in these stores and the stewards' CSV).
REAL_MAGNET = {"system": "real-magnet"}
SUBSYNC = {"system": "subsync"}
PERSONIFY = {"system": "personify360"}
HOLDS_EMAILS = {"pii": "email"}

COLUMN_SCHEMA = "dagster/column_schema"

_TRACKING_DOCS: dict[str, str] = {
    "event_id": "Real Magnet's unique id of the tracking record; the idempotency key of an event.",
    "email": "Recipient email (personal data: masked in logs, metadata and the report).",
    "custom_member_id": "Real Magnet's Custom Member ID: MASTER_CUSTOMER_ID, or MASTER|SUB.",
    "event_type": "subscribe or unsubscribe.",
    "scope_type": "group, group_category or message_category.",
    "scope_id": "Real Magnet id of that group, group category or message category.",
    "scope_name": "Display name of the scope, used in activity text and reports.",
    "source": "Where the change came from (preference_centre, api, in_app, csv_upload, form, "
    "importer, third_party, or an alias of one).",
    "force_optin": "true/false (also 1/0, yes/no): a forced change only yields to another.",
    "occurred_at": "ISO-8601 time of the change; without an offset, local time of the config's "
    "timezone. Its local date is the event's day (partition).",
    "timestamp_subscribed": "ISO-8601 moment of subscription; needed for a first_subscribe.",
    LINE: "Line of the row in its file (the header is line 1).",
    DAY: "The partition (local day of occurred_at) the row belongs to.",
    FILE_ID: "The file's id in the state database's file_manifest.",
    SOURCE_FILE: "Path of the file the row was read from.",
    FINGERPRINT: "Hash of the row's content; exact repeats share it and are kept once.",
    OCCURRED_UTC: "occurred_at as naive UTC, read once with the file; empty if unreadable.",
}
# The same fields once validated and normalised, as stored in the event ledger and rejects.
_STATE_DOCS: dict[str, str] = {
    "event_id": _TRACKING_DOCS["event_id"],
    "day": _TRACKING_DOCS[DAY],
    "file_id": _TRACKING_DOCS[FILE_ID],
    "line_number": _TRACKING_DOCS[LINE],
    "master_customer_id": "Personify MASTER_CUSTOMER_ID from the Custom Member ID.",
    "sub_customer_id": "Personify SUB_CUSTOMER_ID from MASTER|SUB (0 when absent).",
    "event_type": _TRACKING_DOCS["event_type"],
    "scope_type": _TRACKING_DOCS["scope_type"],
    "scope_id": _TRACKING_DOCS["scope_id"],
    "scope_name": _TRACKING_DOCS["scope_name"],
    "source": "Canonical source (aliases mapped), which sets the event's precedence rank.",
    "force_optin": "Whether the event is forced.",
    "occurred_at": "Time of the change, naive UTC.",
    "timestamp_subscribed": "Moment of subscription, naive UTC; empty when not given.",
    "source_file": _TRACKING_DOCS[SOURCE_FILE],
    "reasons": "Reason codes, comma-separated (docs/internals.md lists the fix of each).",
    "error": "What was wrong, in words; for a whole-file reject, the reader's error.",
    "original_values": "Every value of the row as landed (JSON), so a steward can find it.",
    "area": (
        "Personify interest area the scope maps to (CODE, or CODE/SUBCODE), or "
        "<scope_type>:<scope_id> if unmapped."
    ),
    "status": "subscribed or unsubscribed: the status after every event so far.",
    "forced": "Whether a forced event set the status.",
    "min_rank": "Strongest (lowest) source rank seen: what a later non-forced event must match.",
    "subscribe_applied": "Whether a subscribe was ever applied (so none later is the first).",
    "status_date": "occurred_at of the change that set the status.",
    "status_source": "Source of the change that set the status.",
    "subscribed_date": "occurred_at of the latest change to subscribed (kept after an opt-out).",
    "first_subscribed_date": "timestamp_subscribed of the key's first subscribe, if it had one.",
    "first_unsubscribed_date": "occurred_at of the key's first applied unsubscribe.",
    "last_subscribe_request_date": "Latest subscribe request, applied or not.",
    "last_unsubscribe_request_date": "Latest unsubscribe request, applied or not.",
    "mapped": "Whether the area is a configured interest area; only those reach CUS_OPT_IN.",
    "through_at": "occurred_at of the member's latest event decided when this row was written.",
    "through_event_id": "event_id of that event (ties at through_at are broken by event_id).",
    "config_hash": "Fingerprint of the settings that decide (source_ranks, interest_areas, "
    "tracking); a row made under other settings is replayed.",
}
_PERSONIFY_DOCS: dict[str, str] = {
    "MASTER_CUSTOMER_ID": "The member's Personify id.",
    "SUB_CUSTOMER_ID": "The member's sub customer id (0 for the main record).",
    "OPTION_TYPE_CODE": "INTEREST_AREA (config.personify.option_type).",
    "OPTION_SHORT_NAME": "The interest-area code (config.interest_areas maps Real Magnet scopes).",
    "OPTION_SHORT_SUBNAME": "The interest-area subcode; the code when the area has none.",
    "OPT_IN_FLAG": "Y subscribed, N unsubscribed.",
    "OPT_IN_DATE": "When the member last changed to subscribed (UTC); kept after an opt-out.",
    "OPT_OUT_DATE": "When the member changed to unsubscribed (UTC); empty while subscribed.",
    "OPT_OUT_REASON_CODE": "config.personify.opt_out_reason while unsubscribed.",
    "ADDOPER": "config.personify.operator (SUBSYNC) on rows subsync added.",
    "ADDDATE": "When subsync added the row (UTC).",
    "MODOPER": "config.personify.operator once subsync has changed the row.",
    "MODDATE": "When subsync last changed the row (UTC).",
    "CONCURRENCY_ID": "Personify's optimistic lock: 0 on insert, +1 on every update.",
    "CUS_ACTIVITY_ID": "Generated by the database; subsync records it against the event_id.",
    "SUBSYSTEM": "CUS.",
    "ACTIVITY_CODE": "RM_SUBSCRIBE or RM_UNSUBSCRIBE (config.personify.activity_codes).",
    "ACTIVITY_SUBCODE": "The interest-area code; empty for an unmapped scope.",
    "ACTIVITY_DATE": "When the status change happened (UTC).",
    "ACTIVITY_TEXT": "The change in words: what, which scope, which source, forced, first-time.",
}

# The tracking-log values stay text until validated; the bookkeeping columns are numbers.
_RAW_TYPES: dict[str, str] = {
    LINE: "int",
    FILE_ID: "int",
    FINGERPRINT: "int",
    OCCURRED_UTC: "datetime",
}


def _sql_schema(
    table: sa.Table, docs: Mapping[str, str], names: Iterable[str] | None = None
) -> dg.TableSchema:
    """The columns of a stored table, typed as SQL declares them (generic SQL spelling)."""
    wanted = list(names) if names is not None else [column.name for column in table.columns]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(table.c[name].type),
                description=docs[name],
                constraints=dg.TableColumnConstraints(
                    nullable=bool(table.c[name].nullable),
                    other=["primary key"] if table.c[name].primary_key else [],
                ),
            )
            for name in wanted
        ]
    )


def _frame_schema(
    names: Iterable[str],
    docs: Mapping[str, str],
    types: Mapping[str, str],
    required: Iterable[str] = (),
) -> dg.TableSchema:
    """The columns of an in-memory table; `required` ones must be in every file's header."""
    must = set(required)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                types.get(name, "string"),
                description=docs[name],
                constraints=dg.TableColumnConstraints(other=["required header"])
                if name in must
                else None,
            )
            for name in names
        ]
    )


_personify = personify_tables(PersonifyConfig())

RAW_TRACKING_LOG_SCHEMA = _frame_schema(
    RAW_COLUMNS,
    _TRACKING_DOCS,
    _RAW_TYPES,
    required=REQUIRED_COLUMNS,
)
VALIDATED_SCHEMA = _sql_schema(state.event_ledger, _STATE_DOCS)
REJECTED_SCHEMA = _sql_schema(state.rejected_records, _STATE_DOCS, REJECT_COLUMNS)
STATUS_SCHEMA = _sql_schema(state.key_states, _STATE_DOCS)
CUS_OPT_IN_SCHEMA = _sql_schema(_personify.opt_in.table, _PERSONIFY_DOCS)
CUS_ACTIVITY_SCHEMA = _sql_schema(_personify.activity.table, _PERSONIFY_DOCS)


def columns(schema: dg.TableSchema) -> dict[str, dg.TableSchemaMetadataValue]:
    """Definition metadata that shows `schema` as the asset's columns in the UI."""
    return {COLUMN_SCHEMA: dg.MetadataValue.table_schema(schema)}
