"""A throwaway subsync deployment for tests: landing folder, config, state DB and a sandbox
Personify (SQLite file or a database on the tests' PostgreSQL server), materialised through
Dagster for real.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
import yaml
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START,
)

from subsync_pipeline.assets import sync_assets
from subsync_pipeline.core.config import parse_config
from subsync_pipeline.core.personify.tables import personify_tables
from subsync_pipeline.core.sandbox import create_sandbox_personify
from subsync_pipeline.core.tracking_log import ALL_COLUMNS
from subsync_pipeline.resources import (
    LandingFolderResource,
    PersonifyDatabaseResource,
    ReportsFolderResource,
    StateDatabaseResource,
    SubsyncConfigResource,
)
from subsync_pipeline.resources.summaries import SummaryIOManager

DEFAULT_CONFIG: dict[str, Any] = {
    "timezone": "America/New_York",
    "start_date": "2026-01-01",
    "interest_areas": [
        {"scope_type": "group", "scope_id": "1201", "opt_in_code": "NEWSLETTER"},
        {"scope_type": "message_category", "scope_id": "77", "opt_in_code": "EVENTS"},
    ],
}
MEMBERS: list[str] = [f"{n:06d}" for n in range(100, 140)]

# Audit columns and the generated key differ between any two runs by construction.
OPT_IN_COMPARED = [
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "OPTION_TYPE_CODE",
    "OPTION_SHORT_NAME",
    "OPTION_SHORT_SUBNAME",
    "OPT_IN_FLAG",
    "OPT_IN_DATE",
    "OPT_OUT_DATE",
    "OPT_OUT_REASON_CODE",
]
ACTIVITY_COMPARED = [
    "event_id",
    "MASTER_CUSTOMER_ID",
    "SUB_CUSTOMER_ID",
    "SUBSYSTEM",
    "ACTIVITY_CODE",
    "ACTIVITY_SUBCODE",
    "ACTIVITY_DATE",
    "ACTIVITY_TEXT",
    "ADDOPER",
]
# subsync's own fields (SPEC §5), off by default: `deploy(extras=True)` adds these columns to
# the sandbox and maps them, for the tests that look at what they hold.
EXTRA_OPT_IN_COLUMNS: dict[str, tuple[str, str]] = {
    "source": ("OPT_IN_SOURCE", "varchar(40)"),
    "forced": ("FORCED_FLAG", "char(1)"),
    "first_subscribed_date": ("FIRST_SUBSCRIBED_DATE", "timestamp"),
    "first_unsubscribed_date": ("FIRST_UNSUBSCRIBED_DATE", "timestamp"),
    "last_subscribe_request_date": ("LAST_SUBSCRIBE_REQUEST_DATE", "timestamp"),
    "last_unsubscribe_request_date": ("LAST_UNSUBSCRIBE_REQUEST_DATE", "timestamp"),
}
EXTRA_ACTIVITY_COLUMNS: dict[str, tuple[str, str]] = {"external_id": ("EXTERNAL_ID", "varchar(64)")}


def event(
    event_id: str,
    member: str,
    event_type: str,
    source: str,
    occurred_at: str,
    *,
    scope_type: str = "group",
    scope_id: str = "1201",
    force: bool = False,
    timestamp_subscribed: str = "",
    email: str | None = None,
    scope_name: str = "Weekly News",
) -> dict[str, str]:
    """One tracking-log row with sensible defaults (group 1201 = NEWSLETTER)."""
    return {
        "event_id": event_id,
        "email": email if email is not None else f"m{member}@example.org",
        "custom_member_id": member,
        "event_type": event_type,
        "scope_type": scope_type,
        "scope_id": scope_id,
        "scope_name": scope_name,
        "source": source,
        "force_optin": "true" if force else "false",
        "occurred_at": occurred_at,
        "timestamp_subscribed": timestamp_subscribed,
    }


@dataclass
class Deployment:
    root: Path
    personify_url: str
    state_db_url: str | None = None
    config: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CONFIG))

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def state_url(self) -> str:
        return self.state_db_url or f"sqlite:///{self.root / 'state.db'}"

    @property
    def config_path(self) -> Path:
        return self.root / "subsync.yaml"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def set_config(self, **changes: Any) -> None:
        self.config = {**self.config, **changes}
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")

    def resources(self) -> dict[str, Any]:
        return {
            "subsync_config": SubsyncConfigResource(path=str(self.config_path)),
            "landing": LandingFolderResource(path=str(self.landing)),
            "state_db": StateDatabaseResource(url=self.state_url),
            "personify_db": PersonifyDatabaseResource(url=self.personify_url),
            "reports": ReportsFolderResource(path=str(self.reports)),
            "io_manager": SummaryIOManager(),
        }

    def land(
        self, name: str, rows: Iterable[Mapping[str, str]], columns: list[str] | None = None
    ) -> Path:
        """Write a tracking-log CSV into the landing folder."""
        path = self.landing / name
        header = columns or list(ALL_COLUMNS)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return path

    def materialize(
        self, day: str, instance: dg.DagsterInstance | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        with dg.instance_for_test() if instance is None else nullcontext(instance) as inst:
            return dg.materialize(
                sync_assets,
                partition_key=day,
                resources=self.resources(),
                instance=inst,
                raise_on_error=raise_on_error,
            )

    def materialize_range(self, first: str, last: str) -> dg.ExecuteInProcessResult:
        """One run over the days `first` to `last`, as a backfill under the single-run policy
        launches it (the range in the run's tags)."""
        with dg.instance_for_test() as instance:
            return dg.materialize(
                sync_assets,
                resources=self.resources(),
                instance=instance,
                tags={RANGE_START: first, RANGE_END: last},
            )

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.personify_url)

    def table(self, which: str) -> pd.DataFrame:
        """Every column of the configured table (the sandbox's whole row)."""
        tables = personify_tables(parse_config(self.config).personify)
        table = {"opt_in": tables.opt_in.table, "activity": tables.activity.table}[which]
        engine = self.engine()
        with engine.connect() as conn:
            # Columns only: psqlODBC cannot reflect PostgreSQL's index arrays.
            reflected = sa.inspect(conn).get_columns(table.name, schema=table.schema)
            whole = sa.Table(
                table.name,
                sa.MetaData(),
                *[sa.Column(column["name"], column["type"]) for column in reflected],
                schema=table.schema,
            )
            result = conn.execute(sa.select(whole))
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        engine.dispose()
        return frame

    def opt_in(self) -> pd.DataFrame:
        """CUS_OPT_IN without audit columns, in key order: comparable across deployments."""
        frame = self.table("opt_in")
        columns = [c for c in frame.columns if c in OPT_IN_COMPARED or c in _EXTRA_OPT_IN]
        return frame[columns].sort_values(columns[:5]).reset_index(drop=True)

    def activity(self) -> pd.DataFrame:
        """subsync's CUS_ACTIVITY rows, each with the event_id the state database records for
        it (NaN: a row subsync has no record of), in event order."""
        frame = self.table("activity")
        records = (
            self.state("SELECT event_id, activity_id FROM activity_records")
            if len(frame)
            else pd.DataFrame({"event_id": [], "activity_id": []})
        )
        frame = frame.merge(
            records.astype({"activity_id": "int64"}),
            left_on="CUS_ACTIVITY_ID",
            right_on="activity_id",
            how="left",
        )
        columns = [c for c in frame.columns if c in ACTIVITY_COMPARED or c == "EXTERNAL_ID"]
        return frame[columns].sort_values(["event_id", "ACTIVITY_DATE"]).reset_index(drop=True)

    def state(self, query: str) -> pd.DataFrame:
        engine = sa.create_engine(self.state_url)
        with engine.connect() as conn:
            result = conn.execute(sa.text(query))
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        engine.dispose()
        return frame


_EXTRA_OPT_IN = {column for column, _ in EXTRA_OPT_IN_COLUMNS.values()}


def _quoted(engine: sa.Engine, table: sa.Table) -> str:
    return engine.dialect.identifier_preparer.format_table(table)


def add_extras(url: str) -> dict[str, Any]:
    """Add subsync's optional columns to a sandbox; the `personify.columns` config mapping them."""
    engine = sa.create_engine(url)
    tables = personify_tables(parse_config({}).personify)
    with engine.begin() as conn:
        for table, extras in (
            (tables.opt_in.table, EXTRA_OPT_IN_COLUMNS),
            (tables.activity.table, EXTRA_ACTIVITY_COLUMNS),
        ):
            for column, kind in extras.values():
                quote = engine.dialect.identifier_preparer.quote
                conn.exec_driver_sql(
                    f"ALTER TABLE {_quoted(engine, table)} ADD COLUMN {quote(column)} {kind}"
                )
    engine.dispose()
    return {
        "opt_in": {field: column for field, (column, _) in EXTRA_OPT_IN_COLUMNS.items()},
        "activity": {field: column for field, (column, _) in EXTRA_ACTIVITY_COLUMNS.items()},
    }


def deploy(
    root: Path,
    personify_url: str | None = None,
    state_url: str | None = None,
    members: list[str] = MEMBERS,
    *,
    extras: bool = False,
) -> Deployment:
    """A fresh deployment under `root` whose CUSTOMER table holds `members` (Custom Member IDs:
    MASTER, or MASTER|SUB); with `extras`, its Personify also has subsync's optional columns,
    mapped in the config."""
    root.mkdir(parents=True, exist_ok=True)
    url = personify_url or f"sqlite:///{root / 'personify.db'}"
    ids = [member.partition("|") for member in members]
    customers = pd.DataFrame(
        {
            "MASTER_CUSTOMER_ID": [master for master, _, _ in ids],
            "SUB_CUSTOMER_ID": [int(sub or 0) for _, _, sub in ids],
            "CUSTOMER_STATUS_CODE": "ACTIVE",
            "PRIMARY_EMAIL_ADDRESS": [f"m{m.replace('|', '.')}@example.org" for m in members],
        }
    )
    create_sandbox_personify(url, customers=customers, reset=True)
    deployment = Deployment(root=root, personify_url=url, state_db_url=state_url)
    deployment.landing.mkdir(exist_ok=True)
    if extras:
        deployment.config = {**deployment.config, "personify": {"columns": add_extras(url)}}
    deployment.set_config()
    return deployment


@contextmanager
def console_output(into: Path) -> Iterator[None]:
    """Everything written to stdout/stderr, by Python or by a library at the file-descriptor
    level: Dagster's console logger writes there and keeps no other record of it."""
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with into.open("w", encoding="utf-8") as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with redirect_stdout(sink), redirect_stderr(sink):
                yield
        finally:
            sink.flush()
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
