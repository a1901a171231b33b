"""How the steps hand each other their summaries (counts and figures, never the data)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg


class SummaryIOManager(dg.ConfigurableIOManager):
    """Keeps each step's summary as a pickle per asset and partition range, in the instance's
    storage folder (where Dagster's filesystem IO manager keeps a day's). Dagster's own refuses
    an output covering several partitions, which is what a ranged run (a backfill's one run over
    many days) makes; here a range is one file, `FIRST...LAST`, and a day is `DAY` as before."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = _path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(obj))

    def load_input(self, context: dg.InputContext) -> Any:
        path = _path(context)
        if not path.exists():
            asset = context.asset_key.to_user_string()
            raise dg.Failure(
                f"no summary of {asset} for {path.name}: a step reads the summary its upstream "
                f"step made for the same days; materialise {asset} and the assets after it "
                f"together for {path.name}"
            )
        return pickle.loads(path.read_bytes())


def _path(context: dg.OutputContext | dg.InputContext) -> Path:
    keys = context.asset_partition_key_range
    name = keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"
    storage = Path(context.step_context.instance.storage_directory())
    return storage.joinpath(*context.asset_key.path, name)
