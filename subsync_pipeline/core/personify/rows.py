"""The rows subsync wants in CUS_OPT_IN and CUS_ACTIVITY, derived from resolved events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from subsync_pipeline.core.config import ActivityCodes, SubsyncConfig
from subsync_pipeline.core.personify.tables import SUBSYSTEM
from subsync_pipeline.core.resolution import FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE, SUBSCRIBED

SOURCE_LABELS: dict[str, str] = {
    "preference_centre": "the preference centre",
    "api": "the API",
    "in_app": "Real Magnet (in-app)",
    "csv_upload": "a CSV upload",
    "form": "a form",
    "importer": "an importer",
    "third_party": "a third party",
}
_FIRST_TIME_LABELS = {
    FIRST_SUBSCRIBE: "; first subscription",
    FIRST_UNSUBSCRIBE: "; first unsubscription",
}
_TEXT_MAX = 2000


def opt_in_rows(statuses: pd.DataFrame, config: SubsyncConfig) -> pd.DataFrame:
    """CUS_OPT_IN rows, by field (SPEC §5), for the mapped keys of `statuses` (the output of
    current_status with `mapped`)."""
    mapped = statuses.loc[statuses["mapped"].to_numpy(bool)]
    codes = config.area_codes()
    known = mapped["area"].isin(list(codes))
    # A key whose area the config no longer maps (stored under an older config) is not written.
    mapped = mapped.loc[known.to_numpy(bool)]
    subscribed = mapped["status"].eq(SUBSCRIBED).to_numpy(bool)
    personify = config.personify
    return pd.DataFrame(
        {
            "master_customer_id": mapped["master_customer_id"],
            "sub_customer_id": mapped["sub_customer_id"].astype("int64"),
            "option_type": personify.option_type,
            "code": mapped["area"].map({area: code for area, (code, _) in codes.items()}),
            "subcode": mapped["area"].map({area: sub for area, (_, sub) in codes.items()}),
            "flag": np.where(subscribed, "Y", "N"),
            "opt_in_date": mapped["subscribed_date"],
            "opt_out_date": mapped["status_date"].where(~subscribed),
            "opt_out_reason": pd.Series(
                personify.opt_out_reason, index=mapped.index, dtype=object
            ).where(~subscribed, None),
            "source": mapped["status_source"],
            "forced": np.where(mapped["forced"].to_numpy(bool), "Y", "N"),
            "first_subscribed_date": mapped["first_subscribed_date"],
            "first_unsubscribed_date": mapped["first_unsubscribed_date"],
            "last_subscribe_request_date": mapped["last_subscribe_request_date"],
            "last_unsubscribe_request_date": mapped["last_unsubscribe_request_date"],
        },
        index=mapped.index,
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
    scope = changes["scope_type"].str.replace("_", " ") + " " + changes["scope_id"].astype(str)
    named = changes["scope_name"].fillna("").astype(str).str.strip()
    scope = scope + named.where(named.eq(""), " \u201c" + named + "\u201d")
    area = pd.Series(changes["opt_in_code"].fillna("").astype(str).to_numpy(), index=changes.index)
    has_area = area.ne("")
    where = scope.where(~has_area, area + " (" + scope + ")")
    source = " via " + changes["source"].map(SOURCE_LABELS).fillna(changes["source"])
    forced = changes["force_optin"].map({True: " (forced)", False: ""})
    first = changes["first_time"].map(_FIRST_TIME_LABELS).fillna("")
    unmapped = has_area.map({False: "; no Personify opt-in code is mapped", True: ""})
    text = "Real Magnet: " + verb + where + source + forced + first + unmapped + "."
    return text.str.slice(0, _TEXT_MAX)


def activity_rows(decided: pd.DataFrame, codes: ActivityCodes) -> pd.DataFrame:
    """CUS_ACTIVITY rows, by field (SPEC §5): one per status change, mapped or not, each with
    the event_id it records (also the `external_id` field, written where a site maps it)."""
    needed = ["master_customer_id", "sub_customer_id", "occurred_at", "event_id", *_TEXT_INPUTS]
    changes = decided.loc[decided["status_change"].to_numpy(bool), needed]
    area = changes["opt_in_code"]
    return pd.DataFrame(
        {
            "event_id": changes["event_id"],
            "master_customer_id": changes["master_customer_id"],
            "sub_customer_id": changes["sub_customer_id"].astype("int64"),
            "subsystem": SUBSYSTEM,
            "activity_code": changes["event_type"].map(
                {"subscribe": codes.subscribe, "unsubscribe": codes.unsubscribe}
            ),
            # The area's code: CODE of a CODE/SUBCODE area.
            "activity_subcode": area.where(
                area.isna(), area.astype(str).str.replace(r"/.*$", "", regex=True)
            ),
            "activity_date": changes["occurred_at"],
            "text": activity_text(changes),
            "external_id": changes["event_id"],
        }
    ).reset_index(drop=True)


def audit_now() -> datetime:
    """ADDDATE / MODDATE: naive UTC, to the microsecond the databases keep."""
    return datetime.now(UTC).replace(tzinfo=None)
