"""A member's checkpoint is its latest (time, event id) pair over its rows."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.sync import _latest

row = st.tuples(
    st.sampled_from(["000100", "000101", "000102"]),
    st.integers(0, 1),
    st.integers(0, 3),
    st.sampled_from(["E1", "E2", "E3", "E10"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(row, max_size=30))
def test_latest_is_the_greatest_pair_per_member(rows: list[tuple[str, int, int, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["master_customer_id", "sub_customer_id", "at", "id"])
    frame["at"] = pd.Timestamp("2026-11-20") + pd.to_timedelta(frame["at"], unit="h")
    expected = (
        frame.sort_values(["at", "id"])
        .groupby(["master_customer_id", "sub_customer_id"])
        .tail(1)
        .sort_values(["master_customer_id", "sub_customer_id"])
        .reset_index(drop=True)
    )
    latest = (
        _latest(frame, "at", "id")
        .sort_values(["master_customer_id", "sub_customer_id"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(latest, expected, check_dtype=False)
