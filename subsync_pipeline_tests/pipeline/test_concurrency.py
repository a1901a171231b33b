"""Runs at once: two processes materialising overlapping days both succeed, and Personify ends
equal to an in-order pass (under the write lock, a writer whose resolution was overtaken writes the
newer one from the state database, or nothing once it is written).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from subsync_pipeline.core import sync
from subsync_pipeline.core.config import load_config
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline_tests.harness import Deployment, deploy, event
from subsync_pipeline_tests.pg_server import PostgresServer
from subsync_pipeline_tests.pipeline.test_convergence import DAYS, land_all


def materialize_in_process(deployment: Deployment, day: str) -> bool:
    return deployment.materialize(day).success


def test_overlapping_days_at_once_on_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    def make(name: str) -> Deployment:
        deployment = deploy(
            tmp_path / name,
            personify_url=postgres_server.create_database(f"personify_{name}"),
            state_url=postgres_server.create_database(f"state_{name}"),
        )
        land_all(deployment)
        return deployment

    reference = make("reference")
    for day in DAYS:
        reference.materialize(day)

    concurrent = make("concurrent")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for pair in ([DAYS[2], DAYS[0]], [DAYS[3], DAYS[1]], [DAYS[1], DAYS[2]]):
            results = list(pool.map(materialize_in_process, [concurrent] * 2, pair))
            assert results == [True, True], pair

    pd.testing.assert_frame_equal(concurrent.opt_in(), reference.opt_in())
    pd.testing.assert_frame_equal(concurrent.activity(), reference.activity())


def two_days(
    tmp_path: Path,
) -> tuple[Deployment, Callable[[str], sync.ResolvedDays], Callable[[sync.ResolvedDays], None]]:
    """One contact subscribed on day 1 and unsubscribed on day 2; each run's steps by hand."""
    deployment = deploy(tmp_path)
    member = "000100"
    deployment.land("d1.csv", [event("A1", member, "subscribe", "api", "2026-11-19T09:00:00")])
    deployment.land("d2.csv", [event("B1", member, "unsubscribe", "api", "2026-11-20T09:00:00")])
    config = load_config(deployment.config_path)
    state = create_state_engine(deployment.state_url)
    personify = deployment.engine()

    def resolve_day(day: str) -> sync.ResolvedDays:
        raw = sync.ingest(state, deployment.landing, config, [day])
        validated = sync.validate_days(state, personify, config, raw, f"run-{day}")
        return sync.resolve_days(state, config, validated, f"run-{day}")

    def write(resolved: sync.ResolvedDays) -> None:
        sync.write_opt_in(personify, state, config, resolved)
        sync.write_activity(personify, state, config, resolved)

    return deployment, resolve_day, write


def test_a_late_writer_does_not_regress_a_newer_change(tmp_path: Path) -> None:
    """Run A resolves day 1; run B then resolves and writes day 2; A writes last. A must write
    the state of both days, not the stale one it resolved."""
    deployment, resolve_day, write = two_days(tmp_path)
    run_a = resolve_day("2026-11-19")
    assert run_a.statuses["status"].tolist() == ["subscribed"]
    run_b = resolve_day("2026-11-20")
    # B resolved after A: A's writers find their resolution is no longer the newest and read
    # the member from the state database, so A writes nothing stale.
    pending = deployment.state("SELECT run_id, target FROM pending_writes ORDER BY 1, 2")
    assert pending.values.tolist() == [
        ["run-2026-11-19", "activity"],
        ["run-2026-11-19", "opt_in"],
        ["run-2026-11-20", "activity"],
        ["run-2026-11-20", "opt_in"],
    ]
    write(run_b)
    write(run_a)

    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]


def test_a_late_writer_writes_the_newer_resolution_it_finds(tmp_path: Path) -> None:
    """As above, but A writes before B: A must write B's newer state, not the one it resolved."""
    deployment, resolve_day, write = two_days(tmp_path)
    run_a = resolve_day("2026-11-19")
    run_b = resolve_day("2026-11-20")
    write(run_a)
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]
    write(run_b)
    assert deployment.opt_in()["OPT_IN_FLAG"].tolist() == ["N"]
    assert deployment.activity()["event_id"].tolist() == ["A1", "B1"]
    assert deployment.state("SELECT * FROM pending_writes").empty
