"""The subsync YAML config (SPEC §7), loaded into typed models that fail fast on bad input."""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SOURCES: tuple[str, ...] = (
    "preference_centre",
    "api",
    "in_app",
    "csv_upload",
    "form",
    "importer",
    "third_party",
)
SCOPE_TYPES: tuple[str, ...] = ("group", "group_category", "message_category")
EVENT_TYPES: tuple[str, ...] = ("subscribe", "unsubscribe")
DEFAULT_SOURCE_RANKS: dict[str, int] = {
    "preference_centre": 1,
    "api": 2,
    "in_app": 2,
    "csv_upload": 2,
    "form": 3,
    "importer": 4,
    "third_party": 5,
}
# Personify column widths bound what we may write; codes longer than these would be truncated.
_CODE_MAX = 24
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackingConfig(_Strict):
    subscribe_enabled: bool = True
    unsubscribe_enabled: bool = True


class InterestArea(_Strict):
    scope_type: Literal["group", "group_category", "message_category"]
    scope_id: str = Field(min_length=1)
    opt_in_code: str = Field(min_length=1, max_length=_CODE_MAX)

    @field_validator("scope_id", mode="before")
    @classmethod
    def _scope_id_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 1201 as an int; Real Magnet ids are opaque text.
        return str(value).strip() if isinstance(value, int | str) else value


class ActivityCodes(_Strict):
    subscribe: str = Field(default="RM_SUBSCRIBE", min_length=1, max_length=_CODE_MAX)
    unsubscribe: str = Field(default="RM_UNSUBSCRIBE", min_length=1, max_length=_CODE_MAX)


class PersonifyTables(_Strict):
    customer: str = "CUSTOMER"
    opt_in: str = "CUS_OPT_IN"
    activity: str = "CUS_ACTIVITY"

    @field_validator("customer", "opt_in", "activity")
    @classmethod
    def _is_identifier(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
            raise ValueError(
                f"{value!r} is not a table name of the form NAME or SCHEMA.NAME "
                "(letters, digits and underscores)"
            )
        return value


class PersonifyConfig(_Strict):
    write_opt_in: bool = True
    write_activity: bool = True
    activity_codes: ActivityCodes = ActivityCodes()
    tables: PersonifyTables = PersonifyTables()


class QualityConfig(_Strict):
    min_member_match_rate: float = Field(default=0.95, ge=0, le=1)
    max_reject_rate: float = Field(default=0.05, ge=0, le=1)


class SubsyncConfig(_Strict):
    timezone: str = "America/New_York"
    start_date: date = date(2026, 1, 1)
    schedule_time: time = time(2, 0)
    member_id_pattern: str = "^[0-9]{1,24}$"
    tracking: TrackingConfig = TrackingConfig()
    interest_areas: tuple[InterestArea, ...] = ()
    source_ranks: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_SOURCE_RANKS))
    columns: dict[str, str] = Field(default_factory=dict)
    # Reading a file takes several times its size in memory; a bigger one is refused, not read.
    max_file_mb: int = Field(default=512, ge=1)
    personify: PersonifyConfig = PersonifyConfig()
    quality: QualityConfig = QualityConfig()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("member_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("source_ranks")
    @classmethod
    def _ranks_cover_sources(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; known sources are {list(SOURCES)}")
        if any(rank < 0 for rank in value.values()):
            raise ValueError("ranks must be zero or positive (lower is stronger)")
        # A partial override keeps the default rank of every source it does not name.
        return {**DEFAULT_SOURCE_RANKS, **value}

    @field_validator("columns")
    @classmethod
    def _renames_to_known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from subsync_pipeline.core.tracking_log import ALL_COLUMNS

        bad = {src: dst for src, dst in value.items() if dst.strip().lower() not in ALL_COLUMNS}
        if bad:
            raise ValueError(
                f"renames to unknown column(s) {bad}; targets must be in {ALL_COLUMNS}"
            )
        return {src.strip().lower(): dst.strip().lower() for src, dst in value.items()}

    @model_validator(mode="after")
    def _one_code_per_scope(self) -> SubsyncConfig:
        seen: dict[tuple[str, str], str] = {}
        for area in self.interest_areas:
            key = (area.scope_type, area.scope_id)
            if key in seen and seen[key] != area.opt_in_code:
                raise ValueError(
                    f"interest_areas maps {area.scope_type} {area.scope_id} to both "
                    f"{seen[key]} and {area.opt_in_code}"
                )
            seen[key] = area.opt_in_code
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def area_map(self) -> dict[tuple[str, str], str]:
        """(scope_type, scope_id) -> OPT_IN_CODE for the configured interest areas."""
        return {(a.scope_type, a.scope_id): a.opt_in_code for a in self.interest_areas}


def parse_config(data: Any, source: str = "<config>") -> SubsyncConfig:
    """Validate already-parsed YAML; errors name each offending key path and the problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping, got {type(data).__name__}")
    try:
        return SubsyncConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: invalid config — {problems}") from None


def load_config(path: str | Path | None) -> SubsyncConfig:
    """Load the YAML file at `path`; None means the built-in defaults."""
    if path is None:
        return SubsyncConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML — {exc}") from None
    return parse_config(data, str(path))
