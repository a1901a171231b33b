"""Resolution (SPEC §4): the worked examples, edge cases, and a property test of the vectorised code
against a plain sequential fold written from the spec's sentences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.config import DEFAULT_SOURCE_RANKS, SOURCES
from subsync_pipeline.core.resolution import (
    APPLIED,
    BLOCKED_BY_FORCED,
    BLOCKED_BY_PRECEDENCE,
    EVENT_COLUMNS,
    FIRST_SUBSCRIBE,
    FIRST_UNSUBSCRIBE,
    KEY,
    NO_CHANGE,
    STATE_COLUMNS,
    SUBSCRIBED,
    UNSUBSCRIBED,
    _fold,
    current_status,
    resolve,
)

BASE = pd.Timestamp("2026-11-20 09:00")
SUBSCRIBED_ON = pd.Timestamp("2024-05-02 08:30")
MEMBERS = [("000000001001", 0), ("000000001001", 1), ("000000001002", 0), ("000000001003", 0)]
ADDED_COLUMNS = {
    "applied",
    "decision",
    "status_change",
    "status_after",
    "under_forced",
    "first_time",
    "rank",
}


def event(
    event_type: str,
    source: str,
    *,
    forced: bool = False,
    subscribed_on: pd.Timestamp | None = None,
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "source": source,
        "force_optin": forced,
        "timestamp_subscribed": subscribed_on,
    }


def timeline(*events: dict[str, Any]) -> list[dict[str, Any]]:
    """One key's events a minute apart, in the order given: the shape of the spec's examples."""
    return [
        {
            "master_customer_id": "000000001001",
            "sub_customer_id": 0,
            "area": "NEWSLETTER",
            "event_id": f"rm-{n}",
            "occurred_at": BASE + pd.Timedelta(minutes=n),
            **item,
        }
        for n, item in enumerate(events)
    ]


def frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """The column contract `resolve` documents: naive datetimes with NaT, a bool force flag."""
    return pd.DataFrame(events, columns=EVENT_COLUMNS).astype(
        {
            "sub_customer_id": "int64",
            "force_optin": bool,
            "occurred_at": "datetime64[ns]",
            "timestamp_subscribed": "datetime64[ns]",
        }
    )


def plain(value: Any) -> Any:
    """NaT, NaN and None all mean "absent"; compare them as one."""
    return None if pd.isna(value) else value


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Values only: pandas infers `str` for a text column only when it holds some text."""
    values = frame.reset_index(drop=True).astype(object)
    return values.where(values.notna(), None)


def first_times(decided: pd.DataFrame) -> list[str | None]:
    return [plain(value) for value in decided["first_time"]]


def only_status(decided: pd.DataFrame) -> dict[str, Any]:
    rows = current_status(decided).to_dict("records")
    assert len(rows) == 1, rows
    return {name: plain(value) for name, value in rows[0].items()}


# --- SPEC §4 worked examples ------------------------------------------------------------------


def test_example_1_weaker_source_cannot_undo_a_stronger_status() -> None:
    events = timeline(
        event("subscribe", "form", subscribed_on=SUBSCRIBED_ON),
        event("unsubscribe", "third_party"),
    )
    decided = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    assert decided["decision"].tolist() == [APPLIED, BLOCKED_BY_PRECEDENCE]
    assert first_times(decided) == [FIRST_SUBSCRIBE, None]
    status = only_status(decided)
    assert (status["status"], status["status_source"]) == (SUBSCRIBED, "form")
    assert status["first_subscribed_date"] == SUBSCRIBED_ON
    # The blocked request still dates the request columns: status and newer request coexist.
    assert status["last_unsubscribe_request_date"] == events[1]["occurred_at"]
    assert status["first_unsubscribed_date"] is None


def test_example_2_only_the_preference_centre_overrides_the_preference_centre() -> None:
    events = timeline(
        event("unsubscribe", "preference_centre"),
        event("subscribe", "api", subscribed_on=SUBSCRIBED_ON),
        event("subscribe", "preference_centre", subscribed_on=SUBSCRIBED_ON + pd.Timedelta(days=1)),
    )
    decided = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    assert decided["decision"].tolist() == [APPLIED, BLOCKED_BY_PRECEDENCE, APPLIED]
    # The blocked api subscribe is not the key's first subscribe; the applied one is.
    assert first_times(decided) == [FIRST_UNSUBSCRIBE, None, FIRST_SUBSCRIBE]
    status = only_status(decided)
    assert (status["status"], status["status_source"]) == (SUBSCRIBED, "preference_centre")
    assert status["status_date"] == events[2]["occurred_at"]
    assert status["first_subscribed_date"] == SUBSCRIBED_ON + pd.Timedelta(days=1)
    assert status["first_unsubscribed_date"] == events[0]["occurred_at"]


def test_example_3_equal_weight_sources_override_each_other() -> None:
    events = timeline(event("subscribe", "api"), event("unsubscribe", "csv_upload"))
    decided = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    assert decided["decision"].tolist() == [APPLIED, APPLIED]
    assert decided["status_change"].tolist() == [True, True]
    assert first_times(decided) == [None, FIRST_UNSUBSCRIBE]
    status = only_status(decided)
    assert (status["status"], status["status_source"]) == (UNSUBSCRIBED, "csv_upload")
    assert status["forced"] is False


def test_example_4_a_forced_status_yields_only_to_a_forced_event() -> None:
    events = timeline(
        event("unsubscribe", "third_party", forced=True),
        event("subscribe", "preference_centre", subscribed_on=SUBSCRIBED_ON),
        event("subscribe", "form", forced=True, subscribed_on=SUBSCRIBED_ON),
    )
    decided = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    assert decided["decision"].tolist() == [APPLIED, BLOCKED_BY_FORCED, APPLIED]
    assert decided["status_after"].tolist() == [UNSUBSCRIBED, UNSUBSCRIBED, SUBSCRIBED]
    assert first_times(decided) == [FIRST_UNSUBSCRIBE, None, FIRST_SUBSCRIBE]
    status = only_status(decided)
    assert (status["status"], status["status_source"]) == (SUBSCRIBED, "form")
    assert status["forced"] is True


def test_example_5_a_first_subscribe_without_timestamp_means_none_ever() -> None:
    events = timeline(
        event("subscribe", "importer"),
        event("subscribe", "api", subscribed_on=SUBSCRIBED_ON),
        # Even after an unsubscribe and a fresh subscribe the key never gets a first_subscribe.
        event("unsubscribe", "api"),
        event("subscribe", "api", subscribed_on=SUBSCRIBED_ON),
    )
    decided = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    assert decided["decision"].tolist() == [APPLIED, NO_CHANGE, APPLIED, APPLIED]
    assert first_times(decided) == [None, None, FIRST_UNSUBSCRIBE, None]
    status = only_status(decided)
    assert status["status"] == SUBSCRIBED
    assert status["first_subscribed_date"] is None


# --- edge cases ------------------------------------------------------------------------------


def test_empty_input_gives_an_empty_frame_with_the_decision_columns() -> None:
    decided = resolve(frame([]), DEFAULT_SOURCE_RANKS)

    assert decided.empty
    assert set(decided.columns) == set(EVENT_COLUMNS) | ADDED_COLUMNS
    status = current_status(decided)
    assert status.empty
    assert list(status.columns) == STATE_COLUMNS


def test_an_unknown_source_is_rejected_by_name() -> None:
    events = timeline(event("subscribe", "api"), event("subscribe", "fax_machine"))
    with pytest.raises(ValueError, match="fax_machine"):
        resolve(frame(events), DEFAULT_SOURCE_RANKS)


def test_input_order_does_not_change_the_result() -> None:
    events = [
        *timeline(
            event("subscribe", "form"),
            event("unsubscribe", "third_party", forced=True),
            event("subscribe", "api", forced=True, subscribed_on=SUBSCRIBED_ON),
        ),
        *[{**item, "area": "EVENTS"} for item in timeline(event("unsubscribe", "importer"))],
    ]
    # Ties on occurred_at, to be broken by event_id and nothing else.
    events[1]["occurred_at"] = events[2]["occurred_at"] = BASE
    expected = resolve(frame(events), DEFAULT_SOURCE_RANKS)

    for order in ([3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]):
        shuffled = frame([events[n] for n in order])
        pd.testing.assert_frame_equal(resolve(shuffled, DEFAULT_SOURCE_RANKS), expected)


def test_sort_codes_are_made_dense_before_they_could_overflow() -> None:
    # Three rows whose key codes are huge (the product of many large cardinalities): refined by
    # a 4-valued column, 2**61 * 4 would wrap around int64 and sort first.
    folded, bound = _fold(np.array([2**61, 7, 2**61 - 1]), 2**61 + 1, np.array([1, 0, 1]), 4)

    assert np.argsort(folded).tolist() == [1, 2, 0]
    assert bound == 3 * 4


def test_extra_columns_travel_with_their_event() -> None:
    events = frame(timeline(event("subscribe", "form"), event("unsubscribe", "api")))
    events["scope_name"] = ["Weekly newsletter", "Event news"]

    decided = resolve(events.iloc[::-1], DEFAULT_SOURCE_RANKS)

    assert dict(zip(decided["event_id"], decided["scope_name"], strict=True)) == {
        "rm-0": "Weekly newsletter",
        "rm-1": "Event news",
    }


# --- the property: vectorised resolution == SPEC §4 as a plain fold -----------------------


def reference_fold(
    events: list[dict[str, Any]], ranks: Mapping[str, int]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """SPEC §4 read sentence by sentence, one event at a time: the oracle for `resolve`.

    Deliberately naive (loops and variables, no pandas) so that it shares none of the reasoning
    behind the cumulative formulation it checks. Returns the outcome of each event by event_id,
    and each key's final row as `current_status` should give it.
    """
    streams: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    # "Events of a key are applied in order of (occurred_at, event_id)".
    for item in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"])):
        streams.setdefault(tuple(item[column] for column in KEY), []).append(item)

    outcomes: dict[str, dict[str, Any]] = {}
    final_rows: list[dict[str, Any]] = []
    for key, stream in streams.items():
        status: str | None = None
        status_rank = 0
        forced = False
        status_date = status_source = subscribed_date = None
        had_applied_subscribe = had_applied_unsubscribe = False
        first_subscribed_date = first_unsubscribed_date = None
        last_request_date: dict[str, pd.Timestamp | None] = {"subscribe": None, "unsubscribe": None}
        lowest_rank = None

        for item in stream:
            rank = ranks[item["source"]]
            lowest_rank = rank if lowest_rank is None else min(lowest_rank, rank)
            was_forced = forced
            if was_forced:
                # "a forced opt-in/out can only be overridden by another forced event"
                applies = item["force_optin"]
            else:
                # "if it is forced, or the key has no status yet, or its rank <= the rank of the
                # event that set the current status"
                applies = item["force_optin"] or status is None or rank <= status_rank

            new_status = SUBSCRIBED if item["event_type"] == "subscribe" else UNSUBSCRIBED
            status_change = False
            first_time = None
            if applies:
                # "An applied event that changes the status is a status change."
                status_change = new_status != status
                decision = APPLIED if status_change else NO_CHANGE
                # "An applied event sets status, rank and forced-ness."
                status, status_rank, forced = new_status, rank, item["force_optin"]
                if status_change:
                    status_date, status_source = item["occurred_at"], item["source"]
                    if status == SUBSCRIBED:
                        subscribed_date = item["occurred_at"]
                # "the first applied subscribe of a key is its first subscribe — it is a
                # first_subscribe event only if it carries timestamp_subscribed"
                if item["event_type"] == "subscribe" and not had_applied_subscribe:
                    had_applied_subscribe = True
                    if item["timestamp_subscribed"] is not None:
                        first_time = FIRST_SUBSCRIBE
                        first_subscribed_date = item["timestamp_subscribed"]
                # "the first applied unsubscribe is first_unsubscribe"
                if item["event_type"] == "unsubscribe" and not had_applied_unsubscribe:
                    had_applied_unsubscribe = True
                    first_time = FIRST_UNSUBSCRIBE
                    first_unsubscribed_date = item["occurred_at"]
            else:
                decision = BLOCKED_BY_FORCED if was_forced else BLOCKED_BY_PRECEDENCE

            # "Every subscribe event, applied or not, updates LAST_SUBSCRIBE_REQUEST_DATE";
            # the stream is in time order, so the latest request is the one seen last.
            last_request_date[item["event_type"]] = item["occurred_at"]

            outcomes[item["event_id"]] = {
                "applied": applies,
                "decision": decision,
                "status_change": status_change,
                "status_after": status,
                "under_forced": was_forced,
                "first_time": first_time,
                "rank": rank,
            }

        final_rows.append(
            {
                **dict(zip(KEY, key, strict=True)),
                "status": status,
                "forced": forced,
                "status_date": status_date,
                "status_source": status_source,
                "subscribed_date": subscribed_date,
                "first_subscribed_date": first_subscribed_date,
                "first_unsubscribed_date": first_unsubscribed_date,
                "last_subscribe_request_date": last_request_date["subscribe"],
                "last_unsubscribe_request_date": last_request_date["unsubscribe"],
                "min_rank": lowest_rank,
                "subscribe_applied": had_applied_subscribe,
            }
        )
    return outcomes, final_rows


def by_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: tuple(row[column] for column in KEY))


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], dict[str, int], list[int]]:
    """Event streams over a few keys, rich in ties: few distinct moments, ranks and sources.

    Returns the events, the source ranks and the order in which to feed the rows to `resolve`.
    """
    # Members as (MASTER_CUSTOMER_ID, SUB_CUSTOMER_ID): two subs of one master are two keys.
    members = MEMBERS[: draw(st.integers(2, 4))]
    areas = draw(st.integers(1, 3))
    forced_percent = draw(st.sampled_from([0, 5, 30, 80]))
    moments = draw(st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=4, unique=True))
    ranks = draw(
        st.one_of(
            st.just(dict(DEFAULT_SOURCE_RANKS)),
            st.fixed_dictionaries({source: st.integers(0, 4) for source in SOURCES}),
        )
    )
    count = draw(st.integers(0, 30))
    # Ids in an order unrelated to the rows', so equal timestamps are ordered by event_id alone.
    ids = draw(st.permutations(range(count)))
    events = []
    for n in range(count):
        master, sub = draw(st.sampled_from(members))
        days_before = draw(st.sampled_from([None, 3, 400]))
        events.append(
            {
                "master_customer_id": master,
                "sub_customer_id": sub,
                "area": f"AREA{draw(st.integers(1, areas))}",
                "event_id": f"rm-{ids[n]}",
                "event_type": draw(st.sampled_from(["subscribe", "unsubscribe"])),
                "source": draw(st.sampled_from(SOURCES)),
                "force_optin": draw(st.integers(0, 99)) < forced_percent,
                "occurred_at": BASE + pd.Timedelta(minutes=draw(st.sampled_from(moments))),
                "timestamp_subscribed": (
                    None if days_before is None else BASE - pd.Timedelta(days=days_before)
                ),
            }
        )
    feed_order = draw(st.permutations(range(count)))
    return events, ranks, feed_order


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_resolution_matches_the_sequential_fold_of_the_spec(
    scenario: tuple[list[dict[str, Any]], dict[str, int], list[int]],
) -> None:
    events, ranks, feed_order = scenario
    expected_outcomes, expected_final = reference_fold(events, ranks)

    decided = resolve(frame([events[n] for n in feed_order]), ranks)

    in_key_and_time_order = sorted(
        events, key=lambda e: (*(e[column] for column in KEY), e["occurred_at"], e["event_id"])
    )
    assert decided["event_id"].tolist() == [item["event_id"] for item in in_key_and_time_order]
    for row in decided.to_dict("records"):
        actual = {name: plain(row[name]) for name in ADDED_COLUMNS}
        assert actual == expected_outcomes[row["event_id"]], row

    actual_final = [
        {name: plain(value) for name, value in row.items()}
        for row in current_status(decided).to_dict("records")
    ]
    assert by_key(actual_final) == by_key(expected_final)


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.data())
def test_resuming_from_a_checkpoint_equals_resolving_the_whole_history(
    scenario: tuple[list[dict[str, Any]], dict[str, int], list[int]], data: st.DataObject
) -> None:
    """The daily path: each member's state after its events up to a cut, then only later events.

    Cuts are per member, in (occurred_at, event_id) order, as the state database keeps them;
    a member may have no checkpoint (cut before everything) or nothing after it.
    """
    events, ranks, _ = scenario
    whole = resolve(frame(events), ranks)
    position = {e["event_id"]: (e["occurred_at"], e["event_id"]) for e in events}
    cuts = {
        member: data.draw(st.sampled_from(sorted(position.values())), label=f"cut {member}")
        if events and data.draw(st.booleans(), label=f"checkpoint {member}")
        else None
        for member in MEMBERS
    }

    def before_cut(item: dict[str, Any]) -> bool:
        cut = cuts[(item["master_customer_id"], item["sub_customer_id"])]
        return cut is not None and position[item["event_id"]] <= cut

    earlier = [item for item in events if before_cut(item)]
    later = [item for item in events if not before_cut(item)]
    checkpoint = current_status(resolve(frame(earlier), ranks))

    resumed = resolve(frame(later), ranks, initial=checkpoint)

    expected = whole.loc[whole["event_id"].isin([item["event_id"] for item in later])]
    assert resumed["event_id"].tolist() == expected["event_id"].tolist()
    if later:
        pd.testing.assert_frame_equal(comparable(resumed), comparable(expected))
    state = current_status(resumed, initial=checkpoint)
    pd.testing.assert_frame_equal(
        comparable(state.sort_values(KEY)), comparable(current_status(whole).sort_values(KEY))
    )
