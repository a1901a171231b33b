"""CUS_ACTIVITY sentences: written once per distinct combination, they must read exactly as the
sentence built for each row on its own."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.personify.rows import _sentences, activity_text
from subsync_pipeline.core.resolution import FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE

CHANGE = {
    "event_type": st.sampled_from(["subscribe", "unsubscribe"]),
    "scope_type": st.sampled_from(["group", "group_category", "message_category"]),
    "scope_id": st.sampled_from(["1201", "77", "9"]),
    "scope_name": st.sampled_from([None, "", "  Weekly news ", "Événements"]),
    "opt_in_code": st.sampled_from([None, "NEWSLETTER", "EVENTS"]),
    "source": st.sampled_from(["api", "form", "preference_centre", "third_party"]),
    "force_optin": st.booleans(),
    "first_time": st.sampled_from([None, FIRST_SUBSCRIBE, FIRST_UNSUBSCRIBE]),
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries(CHANGE), max_size=40), st.integers(0, 1000))
def test_each_row_reads_as_its_own_sentence(rows: list[dict[str, object]], offset: int) -> None:
    frame = pd.DataFrame(rows, columns=list(CHANGE))
    frame["force_optin"] = frame["force_optin"].astype(bool)
    # An index like a slice of the decided events: not 0..n-1, and out of order.
    frame.index = pd.Index([offset + 3 * n for n in range(len(frame))][::-1])
    text = activity_text(frame)
    assert text.index.equals(frame.index)
    assert text.tolist() == _sentences(frame).tolist()


def test_a_sentence_says_what_where_how_and_first_time() -> None:
    frame = pd.DataFrame(
        [
            {
                "event_type": "unsubscribe",
                "scope_type": "message_category",
                "scope_id": "77",
                "scope_name": "Events",
                "opt_in_code": "EVENTS",
                "source": "third_party",
                "force_optin": True,
                "first_time": FIRST_UNSUBSCRIBE,
            },
            {
                "event_type": "subscribe",
                "scope_type": "group",
                "scope_id": "5",
                "scope_name": None,
                "opt_in_code": None,
                "source": "api",
                "force_optin": False,
                "first_time": None,
            },
        ]
    )
    assert activity_text(frame).tolist() == [
        "Real Magnet: Unsubscribed from EVENTS (message category 77 \u201cEvents\u201d) "
        "via a third party (forced); first unsubscription.",
        "Real Magnet: Subscribed to group 5 via the API; no Personify opt-in code is mapped.",
    ]
