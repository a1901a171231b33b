"""Normalisation (SPEC §3: values trimmed and case-folded before checks), against plain Python."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.tracking_log import ALL_COLUMNS
from subsync_pipeline.core.validation import SOURCE_ALIASES, normalise

CODED = ("event_type", "scope_type", "source", "force_optin")
padding = st.sampled_from(["", " ", "  ", "\t", " \t "])
word = st.sampled_from(["subscribe", "Unsubscribe", "GROUP", "api", "Manual", "true", "F", "x y"])


@st.composite
def values(draw: st.DrawFn) -> str:
    return draw(padding) + draw(word) + draw(padding)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(*[values() for _ in ALL_COLUMNS]), min_size=1, max_size=8),
    st.sets(st.sampled_from(ALL_COLUMNS)),
)
def test_values_are_trimmed_and_codes_case_folded(
    raw: list[tuple[str, ...]], untouched: set[str]
) -> None:
    # Some columns hold values already clean, as most landed files do: those take another path.
    rows = pd.DataFrame(raw, columns=list(ALL_COLUMNS))
    for column in untouched:
        rows[column] = rows[column].str.strip().str.lower()
    frame = normalise(rows, SubsyncConfig())
    for column in ALL_COLUMNS:
        expected = [value.strip() for value in rows[column]]
        if column in CODED:
            expected = [value.lower() for value in expected]
        if column == "source":
            expected = [SOURCE_ALIASES.get(value, value) for value in expected]
        assert frame[column].tolist() == expected, column
