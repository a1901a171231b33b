"""Resolution (SPEC §4): the worked examples, and a property test of the vectorised code against
a plain sequential fold written from the spec's sentences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subsync_pipeline.core.config import DEFAULT_SOURCE_RANKS, SOURCES
from subsync_pipeline.core.resolution import KEY, current_status, resolve

BASE = pd.Timestamp("2026-11-20T00:00:00")


def frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for n, item in enumerate(events):
        rows.append(
            {
                "master_customer_id": item.get("member", "1"),
                "sub_customer_id": 0,
                "area": item.get("area", "NEWSLETTER"),
                "event_id": item.get("event_id", f"e{n:03d}"),
                "event_type": item["type"],
                "source": item["source"],
                "force_optin": item.get("forced", False),
                "occurred_at": BASE + pd.Timedelta(minutes=item.get("minute", n)),
                "timestamp_subscribed": pd.Timestamp(item["ts"]) if item.get("ts") else pd.NaT,
            }
        )
    out = pd.DataFrame(rows)
    out["timestamp_subscribed"] = out["timestamp_subscribed"].astype("datetime64[ns]")
    return out


def decided(events: list[dict[str, Any]]) -> pd.DataFrame:
    return resolve(frame(events), DEFAULT_SOURCE_RANKS).set_index("event_id")


def test_example_1() -> None:
    result = decided(
        [{"type": "subscribe", "source": "form"}, {"type": "unsubscribe", "source": "third_party"}]
    )
    assert result["decision"].tolist() == ["applied", "blocked_by_precedence"]
    assert result["status_after"].tolist() == ["subscribed", "subscribed"]


def test_example_2() -> None:
    result = decided(
        [
            {"type": "unsubscribe", "source": "preference_centre"},
            {"type": "subscribe", "source": "api"},
            {"type": "subscribe", "source": "preference_centre"},
        ]
    )
    assert result["decision"].tolist() == ["applied", "blocked_by_precedence", "applied"]


def test_example_3() -> None:
    result = decided(
        [{"type": "subscribe", "source": "api"}, {"type": "unsubscribe", "source": "csv_upload"}]
    )
    assert result["decision"].tolist() == ["applied", "applied"]
    assert result["status_after"].iloc[-1] == "unsubscribed"


def test_example_4() -> None:
    result = decided(
        [
            {"type": "unsubscribe", "source": "third_party", "forced": True},
            {"type": "subscribe", "source": "preference_centre"},
            {"type": "subscribe", "source": "form", "forced": True},
        ]
    )
    assert result["decision"].tolist() == ["applied", "blocked_by_forced", "applied"]
    status = current_status(
        resolve(
            frame([{"type": "unsubscribe", "source": "third_party", "forced": True}]),
            DEFAULT_SOURCE_RANKS,
        )
    )
    assert status["forced"].tolist() == [True]


def test_example_5() -> None:
    result = decided(
        [
            {"type": "subscribe", "source": "importer"},
            {"type": "subscribe", "source": "api", "ts": "2026-01-01"},
        ]
    )
    assert result["decision"].tolist() == ["applied", "no_change"]
    assert result["first_time"].isna().all()


def test_empty_input_keeps_the_columns() -> None:
    result = resolve(
        frame([{"type": "subscribe", "source": "api"}]).iloc[0:0], DEFAULT_SOURCE_RANKS
    )
    assert result.empty
    assert {"applied", "decision", "status_change", "first_time"} <= set(result.columns)


def test_unknown_source_is_named() -> None:
    with pytest.raises(ValueError, match="fax"):
        resolve(frame([{"type": "subscribe", "source": "fax"}]), DEFAULT_SOURCE_RANKS)


# --- the reference: SPEC §4 as a plain fold, one event at a time ---------------------------


def reference(events: pd.DataFrame, ranks: dict[str, int]) -> tuple[dict[str, dict], dict]:
    per_event: dict[str, dict[str, Any]] = {}
    final: dict[tuple, dict[str, Any]] = {}
    ordered = events.sort_values(["occurred_at", "event_id"], kind="mergesort")
    for key, group in ordered.groupby(KEY, sort=False):
        status = None
        status_rank: int | None = None
        forced_status = False
        seen_first_subscribe = seen_first_unsubscribe = False
        last_change: dict[str, Any] | None = None
        first_sub_date = first_unsub_date = pd.NaT
        last_request: dict[str, pd.Timestamp] = {}
        for event in group.itertuples():
            rank = ranks[event.source]
            if forced_status:
                applies = bool(event.force_optin)
            else:
                applies = bool(event.force_optin) or status is None or rank <= status_rank
            new = "subscribed" if event.event_type == "subscribe" else "unsubscribed"
            first_time = None
            if applies:
                changed = status != new
                if event.event_type == "subscribe" and not seen_first_subscribe:
                    seen_first_subscribe = True
                    if pd.notna(event.timestamp_subscribed):
                        first_time = "first_subscribe"
                        first_sub_date = event.timestamp_subscribed
                if event.event_type == "unsubscribe" and not seen_first_unsubscribe:
                    seen_first_unsubscribe = True
                    first_time = "first_unsubscribe"
                    first_unsub_date = event.occurred_at
                status, status_rank, forced_status = new, rank, bool(event.force_optin)
                decision = "applied" if changed else "no_change"
                if changed:
                    last_change = {"date": event.occurred_at, "source": event.source}
            else:
                changed = False
                decision = "blocked_by_forced" if forced_status else "blocked_by_precedence"
            previous = last_request.get(event.event_type)
            if previous is None or event.occurred_at > previous:
                last_request[event.event_type] = event.occurred_at
            per_event[event.event_id] = {
                "decision": decision,
                "status_change": changed,
                "first_time": first_time,
                "status_after": status,
            }
        if last_change is not None:
            final[key] = {
                "status": status,
                "forced": forced_status,
                "opt_in_date": last_change["date"],
                "opt_in_source": last_change["source"],
                "first_subscribed_date": first_sub_date,
                "first_unsubscribed_date": first_unsub_date,
                "last_subscribe_request_date": last_request.get("subscribe", pd.NaT),
                "last_unsubscribe_request_date": last_request.get("unsubscribe", pd.NaT),
            }
    return per_event, final


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, int]]:
    members = draw(st.integers(1, 3))
    areas = draw(st.integers(1, 3))
    forced_share = draw(st.sampled_from([0.0, 0.1, 0.5]))
    n = draw(st.integers(1, 40))
    rows = []
    for i in range(n):
        rows.append(
            {
                "master_customer_id": str(draw(st.integers(1, members))),
                "sub_customer_id": 0,
                "area": f"A{draw(st.integers(1, areas))}",
                # Few distinct ids and times: ties on occurred_at are broken by event_id.
                "event_id": f"{draw(st.integers(0, 9))}-{i:02d}",
                "event_type": draw(st.sampled_from(["subscribe", "unsubscribe"])),
                "source": draw(st.sampled_from(SOURCES)),
                "force_optin": draw(st.floats(0, 1)) < forced_share,
                "occurred_at": BASE + pd.Timedelta(hours=draw(st.integers(0, 4))),
                "timestamp_subscribed": (
                    BASE - pd.Timedelta(days=draw(st.integers(1, 30)))
                    if draw(st.booleans())
                    else pd.NaT
                ),
            }
        )
    events = pd.DataFrame(rows)
    events["timestamp_subscribed"] = events["timestamp_subscribed"].astype("datetime64[ns]")
    if draw(st.booleans()):
        ranks = dict(DEFAULT_SOURCE_RANKS)
    else:
        ranks = {source: draw(st.integers(1, 4)) for source in SOURCES}
    return events, ranks


@settings(max_examples=300, deadline=None)
@given(event_streams(), st.randoms(use_true_random=False))
def test_vectorised_resolution_equals_the_sequential_fold(
    stream: tuple[pd.DataFrame, dict[str, int]], rnd: Any
) -> None:
    events, ranks = stream
    order = list(range(len(events)))
    rnd.shuffle(order)
    shuffled = events.iloc[order].reset_index(drop=True)
    expected_events, expected_final = reference(events, ranks)

    result = resolve(shuffled, ranks)
    for row in result.itertuples():
        expected = expected_events[row.event_id]
        assert row.decision == expected["decision"], row
        assert bool(row.status_change) == expected["status_change"], row
        first = None if pd.isna(row.first_time) else row.first_time
        assert first == expected["first_time"], row
        assert row.status_after == expected["status_after"], row

    status = current_status(result)
    got = {
        tuple(row[k] for k in KEY): {k: row[k] for k in row.index if k not in KEY}
        for _, row in status.iterrows()
    }
    assert set(got) == set(expected_final)
    for key, values in expected_final.items():
        for name, value in values.items():
            actual = got[key][name]
            if pd.isna(value):
                assert pd.isna(actual), (key, name, actual)
            else:
                assert actual == value, (key, name, actual, value)


def test_input_order_does_not_matter() -> None:
    events = frame(
        [
            {"type": t, "source": s, "minute": m, "forced": f}
            for t, s, m, f in [
                ("subscribe", "form", 1, False),
                ("unsubscribe", "api", 1, False),
                ("subscribe", "third_party", 0, True),
                ("unsubscribe", "importer", 2, True),
            ]
        ]
    )
    forward = resolve(events, DEFAULT_SOURCE_RANKS)
    backward = resolve(events.iloc[::-1], DEFAULT_SOURCE_RANKS)
    pd.testing.assert_frame_equal(forward, backward)
    assert np.array_equal(
        forward["event_id"],
        sorted(
            forward["event_id"],
            key=lambda e: (events.set_index("event_id").loc[e, "occurred_at"], e),
        ),
    )
