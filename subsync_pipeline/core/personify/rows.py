"""The rows subsync wants in CUS_OPT_IN and CUS_ACTIVITY, derived from resolved events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from subsync_pipeline.core.config import ActivityCodes
from subsync_pipeline.core.resolution import FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE, SUBSCRIBED

OPT_IN_DATA_COLUMNS: list[str] = [
    "OPT_IN_FLAG",
    "OPT_IN_DATE",
    "OPT_IN_SOURCE",
    "FORCED_FLAG",
    "FIRST_SUBSCRIBED_DATE",
    "FIRST_UNSUBSCRIBED_DATE",
    "LAST_SUBSCRIBE_REQUEST_DATE",
    "LAST_UNSUBSCRIBE_REQUEST_DATE",
]
OPT_IN_KEY: list[str] = ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", "OPT_IN_CODE"]
OPT_IN_COLUMNS: list[str] = [*OPT_IN_KEY, *OPT_IN_DATA_COLUMNS]
ACTIVITY_DATA_COLUMNS: list[str] = [
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "ACTIVITY_CODE",
    "ACTIVITY_SUBCODE",
    "ACTIVITY_DATE",
    "ACTIVITY_TEXT",
]
ACTIVITY_COLUMNS: list[str] = [*ACTIVITY_DATA_COLUMNS, "EXTERNAL_ID"]

SOURCE_LABELS: dict[str, str] = {
    "preference_centre": "the preference centre",
    "api": "the API",
    "in_app": "Real Magnet (in-app)",
    "csv_upload": "a CSV upload",
    "form": "a form",
    "importer": "an importer",
    "third_party": "a third party",
}
_SCOPE_LABELS = {
    "group": "group",
    "group_category": "group category",
    "message_category": "message category",
}
_TEXT_MAX = 2000


def opt_in_rows(statuses: pd.DataFrame) -> pd.DataFrame:
    """CUS_OPT_IN rows for the mapped keys of `statuses` (the output of current_status + mapped)."""
    mapped = statuses.loc[statuses["mapped"]]
    return pd.DataFrame(
        {
            "MASTER_CUSTOMER_ID": mapped["master_customer_id"],
            "SUB_CUSTOMER_ID": mapped["sub_customer_id"].astype("int64"),
            "OPT_IN_CODE": mapped["area"],
            "OPT_IN_FLAG": mapped["status"].map(lambda s: "Y" if s == SUBSCRIBED else "N"),
            "OPT_IN_DATE": mapped["opt_in_date"],
            "OPT_IN_SOURCE": mapped["opt_in_source"],
            "FORCED_FLAG": mapped["forced"].map({True: "Y", False: "N"}),
            "FIRST_SUBSCRIBED_DATE": mapped["first_subscribed_date"],
            "FIRST_UNSUBSCRIBED_DATE": mapped["first_unsubscribed_date"],
            "LAST_SUBSCRIBE_REQUEST_DATE": mapped["last_subscribe_request_date"],
            "LAST_UNSUBSCRIBE_REQUEST_DATE": mapped["last_unsubscribe_request_date"],
        }
    ).reset_index(drop=True)


# What an activity sentence says: rows that agree on these get the same sentence.
_TEXT_INPUTS: list[str] = [
    "event_type",
    "scope_type",
    "scope_id",
    "scope_name",
    "opt_in_code",
    "source",
    "force_optin",
    "first_time",
]


def activity_text(changes: pd.DataFrame) -> pd.Series:
    """A sentence per status change: what, which scope, which source, forced, first-time.

    Written once per distinct combination of what it says (a day has a few hundred), then
    spread to the rows: building every sentence piece by piece for each of a day's half
    million changes took seconds and a string column per piece.
    """
    if changes.empty:
        return pd.Series(dtype="str", index=changes.index)
    inputs = changes[_TEXT_INPUTS]
    combination = inputs.groupby(_TEXT_INPUTS, dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(combination, return_index=True)
    sentences = _sentences(inputs.iloc[first].reset_index(drop=True))
    text = pa.DictionaryArray.from_arrays(
        pa.array(combination, pa.int32()), pa.array(sentences.to_numpy(object), pa.large_string())
    ).cast(pa.large_string())
    return pd.Series(text.to_pandas(), dtype="str").set_axis(changes.index)


def _sentences(changes: pd.DataFrame) -> pd.Series:
    subscribed = changes["event_type"].eq("subscribe")
    verb = subscribed.map({True: "Subscribed to ", False: "Unsubscribed from "})
    scope = (
        changes["scope_type"].map(_SCOPE_LABELS).fillna(changes["scope_type"])
        + " "
        + changes["scope_id"].astype(str)
    )
    named = changes["scope_name"].fillna("").astype(str).str.strip()
    scope = scope + named.where(named.eq(""), " \u201c" + named + "\u201d")
    area = pd.Series(changes["opt_in_code"].fillna("").astype(str).to_numpy(), index=changes.index)
    has_area = area.ne("")
    where = scope.where(~has_area, area + " (" + scope + ")")
    source = " via " + changes["source"].map(SOURCE_LABELS).fillna(changes["source"])
    forced = changes["force_optin"].map({True: " (forced)", False: ""})
    first = (
        changes["first_time"]
        .map(
            {
                FIRST_SUBSCRIBE: "; first subscription",
                FIRST_UNSUBSCRIBE: "; first unsubscription",
            }
        )
        .fillna("")
    )
    unmapped = has_area.map({False: "; no Personify opt-in code is mapped", True: ""})
    text = "Real Magnet: " + verb + where + source + forced + first + unmapped + "."
    return text.str.slice(0, _TEXT_MAX)


def activity_rows(decided: pd.DataFrame, codes: ActivityCodes) -> pd.DataFrame:
    """CUS_ACTIVITY rows: one per status change, mapped or not, keyed by EXTERNAL_ID = event_id."""
    needed = ["master_customer_id", "sub_customer_id", "occurred_at", "event_id", *_TEXT_INPUTS]
    changes = decided.loc[decided["status_change"].to_numpy(bool), needed]
    return pd.DataFrame(
        {
            "MASTER_CUSTOMER_ID": changes["master_customer_id"],
            "SUB_CUSTOMER_ID": changes["sub_customer_id"].astype("int64"),
            "ACTIVITY_CODE": changes["event_type"].map(
                {"subscribe": codes.subscribe, "unsubscribe": codes.unsubscribe}
            ),
            "ACTIVITY_SUBCODE": changes["opt_in_code"],
            "ACTIVITY_DATE": changes["occurred_at"],
            "ACTIVITY_TEXT": activity_text(changes),
            "EXTERNAL_ID": changes["event_id"],
        }
    ).reset_index(drop=True)


def audit_now() -> datetime:
    """ADDDATE / MODDATE: naive UTC, to the microsecond the databases keep."""
    return datetime.now(UTC).replace(tzinfo=None)
