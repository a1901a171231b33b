"""The subsync YAML config (SPEC §7), loaded into typed models that fail fast on bad input."""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_SOURCE_RANKS: dict[str, int] = {
    "preference_centre": 1,
    "api": 2,
    "in_app": 2,
    "csv_upload": 2,
    "form": 3,
    "importer": 4,
    "third_party": 5,
}
# Every source has a default rank, so the known sources are exactly its keys.
SOURCES: tuple[str, ...] = tuple(DEFAULT_SOURCE_RANKS)
SCOPE_TYPES: tuple[str, ...] = ("group", "group_category", "message_category")
EVENT_TYPES: tuple[str, ...] = ("subscribe", "unsubscribe")
# Personify column widths bound what we may write; codes longer than these would be truncated.
_CODE_MAX = 24
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Personify codes (APP_CODE.CODE, APP_SUBCODE.SUBCODE): no '/' or ':', which build area keys.
_CODE = r"^[A-Za-z0-9_][A-Za-z0-9_ .\-]*$"

# Personify's columns, by the field subsync writes into them (SPEC §5), with their default
# names; None: not written unless `personify.columns` maps it.
OPT_IN_COLUMNS: dict[str, str | None] = {
    "master_customer_id": "MASTER_CUSTOMER_ID",
    "sub_customer_id": "SUB_CUSTOMER_ID",
    "option_type": "OPTION_TYPE_CODE",
    "code": "OPTION_SHORT_NAME",
    "subcode": "OPTION_SHORT_SUBNAME",
    "flag": "OPT_IN_FLAG",
    "opt_in_date": "OPT_IN_DATE",
    "opt_out_date": "OPT_OUT_DATE",
    "opt_out_reason": "OPT_OUT_REASON_CODE",
    "source": None,
    "forced": None,
    "first_subscribed_date": None,
    "first_unsubscribed_date": None,
    "last_subscribe_request_date": None,
    "last_unsubscribe_request_date": None,
    "add_oper": "ADDOPER",
    "add_date": "ADDDATE",
    "mod_oper": "MODOPER",
    "mod_date": "MODDATE",
    "concurrency_id": "CONCURRENCY_ID",
}
ACTIVITY_COLUMNS: dict[str, str | None] = {
    "id": "CUS_ACTIVITY_ID",
    "master_customer_id": "MASTER_CUSTOMER_ID",
    "sub_customer_id": "SUB_CUSTOMER_ID",
    "subsystem": "SUBSYSTEM",
    "activity_code": "ACTIVITY_CODE",
    "activity_subcode": "ACTIVITY_SUBCODE",
    "activity_date": "ACTIVITY_DATE",
    "text": "ACTIVITY_TEXT",
    "external_id": None,
    "add_oper": "ADDOPER",
    "add_date": "ADDDATE",
    "mod_oper": "MODOPER",
    "mod_date": "MODDATE",
    "concurrency_id": "CONCURRENCY_ID",
}
# Fields without which a row cannot be found or written again: they cannot be switched off.
REQUIRED_OPT_IN: frozenset[str] = frozenset(
    {"master_customer_id", "sub_customer_id", "code", "flag"}
)
REQUIRED_ACTIVITY: frozenset[str] = frozenset(
    {"id", "master_customer_id", "sub_customer_id", "activity_code", "activity_date"}
)
_TABLE_FIELDS: dict[str, tuple[dict[str, str | None], frozenset[str]]] = {
    "opt_in": (OPT_IN_COLUMNS, REQUIRED_OPT_IN),
    "activity": (ACTIVITY_COLUMNS, REQUIRED_ACTIVITY),
}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackingConfig(_Strict):
    subscribe_enabled: bool = True
    unsubscribe_enabled: bool = True


def area_name(code: str, subcode: str) -> str:
    """The resolution key of a mapped interest area: its code, or CODE/SUBCODE when a subcode
    other than the code is configured (Personify 7.4.2 stores opt-ins at subcode level)."""
    return code if subcode == code else f"{code}/{subcode}"


class InterestArea(_Strict):
    scope_type: Literal["group", "group_category", "message_category"]
    scope_id: str = Field(min_length=1)
    opt_in_code: str = Field(min_length=1, max_length=_CODE_MAX, pattern=_CODE)
    # None: the code itself, as Personify stores an interest area that has no subcodes.
    opt_in_subcode: str | None = Field(
        default=None, min_length=1, max_length=_CODE_MAX, pattern=_CODE
    )

    @field_validator("scope_id", mode="before")
    @classmethod
    def _scope_id_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 1201 as an int; Real Magnet ids are opaque text.
        return str(value).strip() if isinstance(value, int | str) else value

    @property
    def subcode(self) -> str:
        return self.opt_in_subcode or self.opt_in_code

    @property
    def area(self) -> str:
        return area_name(self.opt_in_code, self.subcode)


class ActivityCodes(_Strict):
    subscribe: str = Field(default="RM_SUBSCRIBE", min_length=1, max_length=_CODE_MAX)
    unsubscribe: str = Field(default="RM_UNSUBSCRIBE", min_length=1, max_length=_CODE_MAX)


class PersonifyTables(_Strict):
    customer: str = "CUSTOMER"
    opt_in: str = "CUS_OPT_IN"
    activity: str = "CUS_ACTIVITY"
    # Read by `subsync doctor` only: the codes interest areas and activities must exist as.
    app_code: str = "APP_CODE"
    app_subcode: str = "APP_SUBCODE"

    @field_validator("customer", "opt_in", "activity", "app_code", "app_subcode")
    @classmethod
    def _is_identifier(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
            raise ValueError(
                f"{value!r} is not a table name of the form NAME or SCHEMA.NAME "
                "(letters, digits and underscores)"
            )
        return value


class PersonifyColumns(_Strict):
    """Field -> physical column (or null: not written), over the defaults of SPEC §5."""

    opt_in: dict[str, str | None] = Field(default_factory=dict)
    activity: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("opt_in", "activity")
    @classmethod
    def _known_fields(
        cls, value: dict[str, str | None], info: pydantic.ValidationInfo
    ) -> dict[str, str | None]:
        defaults, required = _TABLE_FIELDS[str(info.field_name)]
        unknown = sorted(set(value) - set(defaults))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; fields are {list(defaults)}")
        merged = {**defaults, **value}
        off = sorted(name for name in required if merged[name] is None)
        if off:
            raise ValueError(f"field(s) {off} cannot be switched off (null): subsync needs them")
        seen: dict[str, str] = {}
        for name, column in merged.items():
            if column is None:
                continue
            if not _IDENTIFIER.match(column):
                raise ValueError(f"{name}: {column!r} is not a column name")
            if column.upper() in seen:
                raise ValueError(
                    f"fields {seen[column.upper()]} and {name} both map to column {column}"
                )
            seen[column.upper()] = name
        return value


Constant = str | int | float | bool


class PersonifyConstants(_Strict):
    """COLUMN -> value, for NOT NULL columns subsync has no field for."""

    opt_in: dict[str, Constant] = Field(default_factory=dict)
    activity: dict[str, Constant] = Field(default_factory=dict)

    @field_validator("opt_in", "activity")
    @classmethod
    def _names(cls, value: dict[str, Constant]) -> dict[str, Constant]:
        bad = [name for name in value if not _IDENTIFIER.match(name)]
        if bad:
            raise ValueError(f"{bad} are not column names")
        return value


class PersonifyConfig(_Strict):
    write_opt_in: bool = True
    write_activity: bool = True
    activity_codes: ActivityCodes = ActivityCodes()
    tables: PersonifyTables = PersonifyTables()
    option_type: str = Field(default="INTEREST_AREA", min_length=1, max_length=_CODE_MAX)
    # ADDOPER / MODOPER of what subsync writes.
    operator: str = Field(default="SUBSYNC", min_length=1, max_length=_CODE_MAX)
    opt_out_reason: str | None = Field(default=None, min_length=1, max_length=_CODE_MAX)
    columns: PersonifyColumns = PersonifyColumns()
    constants: PersonifyConstants = PersonifyConstants()

    @model_validator(mode="after")
    def _constants_fill_unmapped_columns(self) -> PersonifyConfig:
        for table in _TABLE_FIELDS:
            taken = {column.upper(): name for name, column in self.columns_of(table).items()}
            for column in getattr(self.constants, table):
                if column.upper() in taken:
                    raise ValueError(
                        f"constants.{table}.{column}: the column is already written from "
                        f"field {taken[column.upper()]}; map that field to null to use a constant"
                    )
        return self

    def columns_of(self, table: str) -> dict[str, str]:
        """The fields subsync writes into CUS_OPT_IN or CUS_ACTIVITY (or reads: activity's `id`),
        each with its column."""
        merged = {**_TABLE_FIELDS[table][0], **getattr(self.columns, table)}
        return {name: column for name, column in merged.items() if column is not None}


class QualityConfig(_Strict):
    min_member_match_rate: float = Field(default=0.95, ge=0, le=1)
    max_reject_rate: float = Field(default=0.05, ge=0, le=1)
    # The tracking_logs_fetched_recently check fails when the newest file fetched from Real
    # Magnet's FTPS server is older than this (Real Magnet delivers daily).
    max_fetch_age_hours: float = Field(default=36, gt=0)


# A channel name ties a `notify.channels` entry to its URLs in SUBSYNC_NOTIFY_URLS (`name=URL`).
CHANNEL_NAME = r"^[a-z0-9_-]{1,40}$"
DIGEST_PARTS: tuple[str, ...] = ("rejects", "failures")


class NotifyChannel(_Strict):
    """What one channel is sent: failure notices, and which parts of the daily digest when."""

    failures: bool = True
    # needed: only when something in the channel's parts needs attention; always; off.
    digest: Literal["needed", "always", "off"] = "needed"
    digest_parts: tuple[Literal["rejects", "failures"], ...] = DIGEST_PARTS  # type: ignore[assignment]

    @field_validator("digest", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false.
        return "off" if value is False else value

    @field_validator("digest_parts")
    @classmethod
    def _some_part(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"name at least one of {list(DIGEST_PARTS)}, or set digest: off")
        return value


class NotifyConfig(_Strict):
    # Local time (config.timezone) after which yesterday's digest goes out.
    digest_time: time = time(7, 0)
    # A run still STARTED after this many times its job's median successful run, and at least
    # overdue_minimum_minutes, gets a notice.
    overdue_factor: float = Field(default=3.0, ge=1)
    overdue_minimum_minutes: float = Field(default=60, ge=0)
    # No tracking file landed for this long: the digest's failures part says so.
    stale_after_hours: float = Field(default=36, gt=0)
    channels: dict[str, NotifyChannel] = Field(default_factory=lambda: {"default": NotifyChannel()})

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, NotifyChannel]) -> dict[str, NotifyChannel]:
        bad = [name for name in value if not re.match(CHANNEL_NAME, name)]
        if bad:
            raise ValueError(f"channel names {bad} must be lower-case letters, digits, _ or -")
        return value


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
    # A run over several days (a backfill) validates them in chunks of about this many rows and
    # resolves their contacts in batches of about this many events: its memory stays that of
    # one such day (about 1.3 GB a million) however long the range.
    chunk_events: int = Field(default=1_000_000, ge=1)
    personify: PersonifyConfig = PersonifyConfig()
    quality: QualityConfig = QualityConfig()
    # Where a web server publishes SUBSYNC_REPORTS_DIR to stewards (docs/access.md); report
    # links then point there instead of file://.
    reports_base_url: str | None = None
    # The Dagster UI as its users reach it, for links to runs in notices; empty: no links.
    ui_base_url: str = ""
    notify: NotifyConfig = NotifyConfig()

    @field_validator("ui_base_url")
    @classmethod
    def _ui_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

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

    @field_validator("reports_base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"{value!r} is not an http(s) address of a folder, "
                "e.g. https://subsync.example.org/steward/reports"
            )
        return value.rstrip("/")

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
    def _one_area_per_scope(self) -> SubsyncConfig:
        seen: dict[tuple[str, str], str] = {}
        for area in self.interest_areas:
            key = (area.scope_type, area.scope_id)
            if key in seen and seen[key] != area.area:
                raise ValueError(
                    f"interest_areas maps {area.scope_type} {area.scope_id} to both "
                    f"{seen[key]} and {area.area}"
                )
            seen[key] = area.area
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def area_map(self) -> dict[tuple[str, str], str]:
        """(scope_type, scope_id) -> area key (`area_name`) for the configured interest areas."""
        return {(a.scope_type, a.scope_id): a.area for a in self.interest_areas}

    def area_codes(self) -> dict[str, tuple[str, str]]:
        """Area key -> (code, subcode) of the configured interest areas."""
        return {a.area: (a.opt_in_code, a.subcode) for a in self.interest_areas}


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
