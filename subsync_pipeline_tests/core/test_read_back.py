"""Pairing the ids an INSERT ... RETURNING read back with the events they record (PostgreSQL and
SQLite cannot return the staged event_id): a property test against the simple rule that each
event gets an id of a row holding exactly its values, each id once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.config import PersonifyConfig
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.personify.writers import SQLiteWriter

WRITER = SQLiteWriter(personify_tables(PersonifyConfig()), "SUBSYNC")
FIELDS = {
    "master_customer_id": "MASTER_CUSTOMER_ID",
    "sub_customer_id": "SUB_CUSTOMER_ID",
    "subsystem": "SUBSYSTEM",
    "activity_code": "ACTIVITY_CODE",
    "activity_subcode": "ACTIVITY_SUBCODE",
    "activity_date": "ACTIVITY_DATE",
    "text": "ACTIVITY_TEXT",
}
START = datetime(2026, 11, 20, 9, 0)

# Few distinct values, so equal rows (interchangeable ids) are common.
rows = st.lists(
    st.fixed_dictionaries(
        {
            "master_customer_id": st.sampled_from(["000100", "000101"]),
            "sub_customer_id": st.sampled_from([0, 1]),
            "subsystem": st.just("CUS"),
            "activity_code": st.sampled_from(["RM_SUBSCRIBE", "RM_UNSUBSCRIBE"]),
            "activity_subcode": st.sampled_from(["NEWSLETTER", None]),
            "activity_date": st.integers(0, 2).map(lambda n: START + timedelta(microseconds=n)),
            "text": st.sampled_from(["Real Magnet: a", "Real Magnet: \u201cb\u201d"]),
        }
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows, order=st.randoms(use_true_random=False))
def test_each_event_gets_an_id_of_a_row_with_its_values(rows: list[dict], order) -> None:  # type: ignore[no-untyped-def,type-arg]
    missing = pd.DataFrame(rows, columns=list(FIELDS)).assign(
        event_id=[f"E{n}" for n in range(len(rows))]
    )
    missing["activity_date"] = pd.to_datetime(missing["activity_date"])
    # What the database returns: its own types (datetime, int, None), in an order of its own.
    returned = [
        {"CUS_ACTIVITY_ID": 1000 + n, **{FIELDS[k]: v for k, v in row.items()}}
        for n, row in enumerate(rows)
    ]
    order.shuffle(returned)
    frame = pd.DataFrame(returned, columns=["CUS_ACTIVITY_ID", *FIELDS.values()])

    paired = WRITER.match_inserted(missing, frame)

    assert sorted(paired["event_id"]) == sorted(missing["event_id"])
    assert paired["activity_id"].is_unique
    values = {row["CUS_ACTIVITY_ID"]: row for row in returned}
    by_event = missing.set_index("event_id")
    for event_id, activity_id in paired.itertuples(index=False):
        mine = by_event.loc[event_id]
        theirs = values[activity_id]
        for field, column in FIELDS.items():
            expected = mine[field]
            got = theirs[column]
            if field == "activity_date":
                assert pd.Timestamp(got) == expected
            elif expected is None or (isinstance(expected, float) and pd.isna(expected)):
                assert got is None
            else:
                assert got == expected
