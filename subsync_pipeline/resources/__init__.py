"""Dagster resources: the I/O subsync does (config file, landing folder, databases, reports,
Real Magnet's FTPS server)."""

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from subsync_pipeline.core.channels import Target, parse_targets
from subsync_pipeline.core.config import SubsyncConfig, load_config
from subsync_pipeline.core.environment import DEFAULTS, config_path
from subsync_pipeline.core.personify.connection import create_personify_engine
from subsync_pipeline.core.state import create_state_engine
from subsync_pipeline.resources.real_magnet import ftps_from_environment
from subsync_pipeline.resources.summaries import SummaryIOManager


class SubsyncConfigResource(dg.ConfigurableResource):
    """The YAML config (SUBSYNC_CONFIG); empty path means the built-in defaults."""

    path: str = ""

    def load(self) -> SubsyncConfig:
        return load_config(self.path or None)


class LandingFolderResource(dg.ConfigurableResource):
    """Where Real Magnet tracking-log files land (SUBSYNC_LANDING_DIR)."""

    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


class ReportsFolderResource(dg.ConfigurableResource):
    """Where the per-day data-quality reports are written (SUBSYNC_REPORTS_DIR)."""

    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


class _DatabaseResource(dg.ConfigurableResource):
    """One SQLAlchemy engine per run, created when the run starts and disposed when it ends."""

    url: str
    _engine: Engine | None = PrivateAttr(default=None)

    def create_engine(self) -> Engine:
        raise NotImplementedError

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = self.create_engine()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.create_engine()
        return self._engine


class StateDatabaseResource(_DatabaseResource):
    """subsync's own state (SUBSYNC_DB_URL): manifest, ledger, decisions, rejects."""

    def create_engine(self) -> Engine:
        return create_state_engine(self.url)


class PersonifyDatabaseResource(_DatabaseResource):
    """Personify360 (PERSONIFY_DB_URL): CUSTOMER is read, CUS_OPT_IN / CUS_ACTIVITY written."""

    def create_engine(self) -> Engine:
        return create_personify_engine(self.url)


class NotifyResource(dg.ConfigurableResource):
    """Where notices go (SUBSYNC_NOTIFY_URLS): a secret, as it holds SMTP passwords and webhook
    tokens; empty means no notices."""

    urls: str = ""

    def targets(self) -> list[Target]:
        return parse_targets(self.urls)


def _from_env(name: str) -> str | dg.EnvVar:
    """EnvVar (resolved at run time, hidden in the UI) when set; else the local ./data default."""
    return dg.EnvVar(name) if os.environ.get(name) else DEFAULTS[name]


def default_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The resources of the deployed code location, from the environment of SPEC §6."""
    path = config_path()
    return {
        "subsync_config": SubsyncConfigResource(
            path=dg.EnvVar("SUBSYNC_CONFIG")
            if os.environ.get("SUBSYNC_CONFIG")
            else str(path or "")
        ),
        "landing": LandingFolderResource(path=_from_env("SUBSYNC_LANDING_DIR")),
        "state_db": StateDatabaseResource(url=_from_env("SUBSYNC_DB_URL")),
        "personify_db": PersonifyDatabaseResource(url=_from_env("PERSONIFY_DB_URL")),
        "reports": ReportsFolderResource(path=_from_env("SUBSYNC_REPORTS_DIR")),
        "real_magnet_ftps": ftps_from_environment(),
        "notify": NotifyResource(urls=_from_env("SUBSYNC_NOTIFY_URLS")),
        "io_manager": SummaryIOManager(),
    }
