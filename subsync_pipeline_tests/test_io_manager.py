"""The IO manager keeps each partition's output in its own protocol-5 pickle, for the next step and
for re-executing a step of the run later."""

import pickle
from pathlib import Path

import dagster as dg
import pandas as pd

from subsync_pipeline.definitions import defs
from subsync_pipeline.resources import PickleIOManager

days = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(partitions_def=days)
def upstream(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key] * 3, "n": [1, 2, 3]}).astype(
        {"day": "string[pyarrow]"}
    )


@dg.asset(partitions_def=days)
def downstream(upstream: pd.DataFrame) -> int:
    return int(upstream["n"].sum())


def test_outputs_are_protocol_5_pickles_read_back_by_the_next_step(tmp_path: Path) -> None:
    resources = {"io_manager": PickleIOManager(base_dir=str(tmp_path))}
    with dg.instance_for_test() as instance:
        for day in ("2026-11-20", "2026-11-21"):
            result = dg.materialize(
                [upstream, downstream], partition_key=day, resources=resources, instance=instance
            )
            assert result.output_for_node("downstream") == 6
        # A step of the first day again, on its own: its input is the stored partition.
        again = dg.materialize(
            [upstream, downstream],
            selection=[downstream],
            partition_key="2026-11-20",
            resources=resources,
            instance=instance,
        )
        assert again.output_for_node("downstream") == 6

    stored = tmp_path / "upstream" / "2026-11-20"
    assert stored.read_bytes()[:2] == b"\x80\x05"  # the pickle protocol opcode, version 5
    frame = pickle.loads(stored.read_bytes())
    assert frame["day"].tolist() == ["2026-11-20"] * 3
    assert (tmp_path / "upstream" / "2026-11-21").exists()


def test_the_code_location_keeps_outputs_with_it() -> None:
    assert isinstance(defs.resources["io_manager"], PickleIOManager)
