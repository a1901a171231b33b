"""Why a member's status is what it is: every event subsync ever kept for the member, the rule of
SPEC §4 that decided it in plain words, the status it left, what Personify holds now, and the
member's rejected rows.

The events are resolved again here, from the ledger, with the resolution's own functions: the
explanation can then name the event that set the status each event met, which the decisions
table does not keep. The stored decision is shown beside it; they differ only for an event no run
has decided yet, or decided under other settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subsync_pipeline.core import state
from subsync_pipeline.core.config import SubsyncConfig
from subsync_pipeline.core.ledger import MEMBER, is_member_of, member_history
from subsync_pipeline.core.personify.rows import activity_rows, opt_in_rows
from subsync_pipeline.core.personify.tables import (
    ACTIVITY_DATA,
    OPT_IN_DATA,
    OPT_IN_KEY,
    PersonifyTables,
)
from subsync_pipeline.core.redact import mask_email
from subsync_pipeline.core.resolution import (
    APPLIED,
    BLOCKED_BY_FORCED,
    BLOCKED_BY_PRECEDENCE,
    FIRST_SUBSCRIBE,
    FIRST_UNSUBSCRIBE,
    KEY,
    NO_CHANGE,
    SUBSCRIBE,
    current_status,
    resolve,
)
from subsync_pipeline.core.sql import read_frame
from subsync_pipeline.core.sync import with_areas
from subsync_pipeline.core.validation import split_member_ids

NOT_DECIDED = "not decided yet"

Row = dict[str, Any]


class UnknownMemberError(ValueError):
    """The member id is not of the form MASTER or MASTER|SUB."""


@dataclass(frozen=True)
class Event:
    """One event of the member, as decided."""

    event_id: str
    occurred_at: str
    file: str
    line: int
    event_type: str
    source: str
    rank: int
    forced: bool
    decision: str
    stored_decision: str
    rule: str
    status_after: str | None


@dataclass(frozen=True)
class Area:
    """One interest area (or unmapped scope) of the member: its events, status and Personify row."""

    area: str
    mapped: bool
    events: list[Event]
    status: str | None
    status_line: str
    opt_in_decided: dict[str, Any] | None
    opt_in_in_personify: dict[str, Any] | None
    differences: list[str]


@dataclass(frozen=True)
class Explanation:
    member: str
    areas: list[Area]
    activity: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    differences: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def text(self) -> str:
        """The explanation as a terminal prints it."""
        return "\n".join(_lines(self, markdown=False))

    def markdown(self) -> str:
        """The explanation for the Dagster UI and the report's static pages."""
        return "\n".join(_lines(self, markdown=True))


def parse_member(text: str, config: SubsyncConfig) -> tuple[str, int]:
    """`MASTER` or `MASTER|SUB`, checked as the validation checks a Custom Member ID."""
    ids = split_member_ids(pd.Series([text.strip()], dtype="str"), config.member_id_pattern)
    if not bool(ids["well_formed"].iloc[0]):
        raise UnknownMemberError(
            f"{text!r} is not a member id: give MASTER or MASTER|SUB "
            f"(MASTER matching {config.member_id_pattern}, SUB a number)"
        )
    return str(ids["master_customer_id"].iloc[0]), int(ids["sub_customer_id"].iloc[0])


def explain(
    state_conn: Connection,
    personify_conn: Connection,
    config: SubsyncConfig,
    tables: PersonifyTables,
    member: str,
    area: str | None = None,
    show_emails: bool = False,
) -> Explanation:
    """Everything subsync knows about `member`, optionally of one area (its key or its code)."""
    members = [parse_member(member, config)]
    found = explain_members(state_conn, personify_conn, config, tables, members, area, show_emails)
    return found[0]


def explain_members(
    state_conn: Connection,
    personify_conn: Connection,
    config: SubsyncConfig,
    tables: PersonifyTables,
    members: list[tuple[str, int]],
    area: str | None = None,
    show_emails: bool = False,
) -> list[Explanation]:
    """`explain` of each of `members`, in order, with one read of each table for all of them:
    the day's report explains up to 50 members, and a read per member was seconds of its run."""
    if not members:
        return []
    wanted = pd.DataFrame(members, columns=MEMBER).astype({"sub_customer_id": "int64"})
    events = with_areas(member_history(state_conn, wanted), config)
    if area is not None:
        events = events.loc[events["area"].eq(area) | events["opt_in_code"].eq(area)]
    decided = resolve(events, config.source_ranks)
    stored = _stored_decisions(state_conn, decided["event_id"].tolist())
    files = _file_names(state_conn)
    statuses = current_status(decided).merge(
        decided[[*KEY, "mapped"]].drop_duplicates(KEY), on=KEY, how="left"
    )
    expected = _by_code(opt_in_rows(statuses, config))
    live = _by_code(_live_opt_in(personify_conn, tables, wanted))
    activity = _activity(state_conn, personify_conn, tables, decided, config)
    rejected = _rejected(state_conn, wanted, config, show_emails)
    codes = config.area_codes()
    if area is not None:
        areas_named = {name for name, (code, _) in codes.items() if area in (name, code)}
        rejected = rejected.loc[rejected["area"].isna() | rejected["area"].isin(areas_named)]
    # Plain rows from here on: a pandas selection per member and area costs milliseconds.
    decided_of: dict[tuple[str, int], dict[str, list[Row]]] = {}
    for row in _records(decided):
        decided_of.setdefault(_member(row), {}).setdefault(str(row["area"]), []).append(row)
    statuses_of = {(*_member(row), row["area"]): row for row in _records(statuses)}
    rejected_of: dict[tuple[str, int], list[Row]] = {}
    for row in _records(rejected):
        shown = {name: value for name, value in row.items() if name not in MEMBER}
        rejected_of.setdefault(_member(row), []).append(shown)
    explanations = []
    for master, sub in members:
        areas = []
        for name, rows in sorted(decided_of.get((master, sub), {}).items()):
            status = statuses_of[(master, sub, name)]
            code = codes.get(name)
            decided_row = None if code is None else expected.get((master, sub, *code))
            live_row = None if code is None else live.get((master, sub, *code))
            areas.append(
                Area(
                    area=name,
                    mapped=code is not None,
                    events=_events(rows, stored, files, config),
                    status=status["status"],
                    status_line=_status_line(status, config.tz),
                    opt_in_decided=decided_row,
                    opt_in_in_personify=live_row,
                    differences=_opt_in_differences(name, code, decided_row, live_row),
                )
            )
        member_activity = activity.get((master, sub), [])
        differences = [d for a in areas for d in a.differences] + [
            d for row in member_activity for d in row["differences"]
        ]
        explanations.append(
            Explanation(
                member_label(master, sub),
                areas,
                member_activity,
                rejected_of.get((master, sub), []),
                differences,
            )
        )
    return explanations


def _member(row: Row) -> tuple[str, int]:
    return str(row["master_customer_id"]), int(row["sub_customer_id"])


def _by_code(frame: pd.DataFrame) -> dict[tuple[str, int, str, str], Row]:
    """CUS_OPT_IN rows by member, code and subcode."""
    return {(*_member(row), row["code"], row["subcode"]): row for row in _records(frame)}


def _records(frame: pd.DataFrame) -> list[Row]:
    return [_plain(row) for row in frame.to_dict("records")]


def member_label(master: str, sub: int) -> str:
    """A member as Real Magnet's Custom Member ID names it: MASTER, or MASTER|SUB."""
    return master if int(sub) == 0 else f"{master}|{sub}"


def _local(at: Any, tz: ZoneInfo) -> str:
    """A UTC time as the association reads it, in its configured time zone."""
    if at is None or pd.isna(at):
        return "-"
    return pd.Timestamp(at).tz_localize("UTC").tz_convert(tz).strftime("%Y-%m-%d %H:%M %Z")


def _events(
    rows: list[Row], stored: dict[str, str], files: dict[int, str], config: SubsyncConfig
) -> list[Event]:
    """Each event with the rule that decided it; `setter` is the event that set the status the
    next event meets (the last applied one)."""
    explained = []
    setter: Row | None = None
    subscribed_before = False
    for row in rows:
        first_subscribe = bool(row["applied"]) and row["event_type"] == SUBSCRIBE
        first_subscribe &= not subscribed_before
        subscribed_before |= first_subscribe
        explained.append(
            Event(
                event_id=row["event_id"],
                occurred_at=_local(row["occurred_at"], config.tz),
                file=files.get(int(row["file_id"]), f"file {row['file_id']}"),
                line=int(row["line_number"]),
                event_type=row["event_type"],
                source=row["source"],
                rank=int(row["rank"]),
                forced=bool(row["force_optin"]),
                decision=row["decision"],
                stored_decision=stored.get(row["event_id"], NOT_DECIDED),
                rule=_rule(row, setter, first_subscribe, config.tz),
                status_after=row["status_after"],
            )
        )
        if row["applied"]:
            setter = row
    return explained


def _rule(row: Row, setter: Row | None, first_subscribe: bool, tz: ZoneInfo) -> str:
    """SPEC §4's rule for this event, in the words a steward would use."""
    request = f"{row['source']} {row['event_type']} (rank {row['rank']})"
    decision = row["decision"]
    if row["force_optin"] and row["applied"]:
        verb = "sets the status to" if decision == APPLIED else "keeps the status"
        said = f"applied: a forced {request} overrides any rank; it {verb} {row['status_after']}"
    elif setter is None:
        said = f"applied: the area's first request sets the status to {row['status_after']}"
    else:
        by = (
            f"{'forced ' if row['under_forced'] else ''}status was set at "
            f"{_local(setter['occurred_at'], tz)} by {setter['source']} (rank {setter['rank']})"
        )
        if decision == BLOCKED_BY_FORCED:
            said = (
                f"blocked: the {by}; only another forced event can change a forced status, "
                f"and this {request} is not forced"
            )
        elif decision == BLOCKED_BY_PRECEDENCE:
            said = f"blocked: the {by}; a {request} cannot override it"
        elif decision == NO_CHANGE:
            said = (
                f"no change: the {by}; a {request} may override it, but the status is "
                f"{row['status_after']} already"
            )
        else:
            said = (
                f"applied: the {by}; a {request} is at least as strong, so the status is now "
                f"{row['status_after']}"
            )
    if row["first_time"] == FIRST_SUBSCRIBE:
        said += "; it is the area's first subscribe"
    elif row["first_time"] == FIRST_UNSUBSCRIBE:
        said += "; it is the area's first unsubscribe"
    elif first_subscribe and pd.isna(row["timestamp_subscribed"]):
        said += (
            "; as the area's first applied subscribe without timestamp_subscribed, no first "
            "subscribe event will ever be generated for it"
        )
    return said


def _status_line(status: Row, tz: ZoneInfo) -> str:
    forced = ", forced" if status["forced"] else ""
    return (
        f"{status['status']}{forced} since {_local(status['status_date'], tz)}, set by "
        f"{status['status_source']}; last subscribe request "
        f"{_local(status['last_subscribe_request_date'], tz)}, last unsubscribe request "
        f"{_local(status['last_unsubscribe_request_date'], tz)}"
    )


def _stored_decisions(conn: Connection, event_ids: list[str]) -> dict[str, str]:
    table = state.decisions
    query = sa.select(table.c.event_id, table.c.decision).where(table.c.event_id.in_(event_ids))
    return {event_id: decision for event_id, decision in conn.execute(query)}


def _file_names(conn: Connection) -> dict[int, str]:
    table = state.file_manifest
    rows = conn.execute(sa.select(table.c.file_id, table.c.path))
    return {int(file_id): str(path) for file_id, path in rows}


def _plain(values: dict[Any, Any]) -> dict[str, Any]:
    """Values compared and shown as text: a missing date and None are one thing."""
    return {str(name): None if _missing(value) else value for name, value in values.items()}


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _live_opt_in(conn: Connection, tables: PersonifyTables, members: pd.DataFrame) -> pd.DataFrame:
    shape = tables.opt_in
    fields = shape.mapped([*OPT_IN_KEY, *OPT_IN_DATA])
    # By master id alone: SQL Server has no (a, b) IN, and a member's other subs are few.
    query = sa.select(*(shape.column(name).label(name) for name in fields)).where(
        shape.column("master_customer_id").in_(members["master_customer_id"].unique().tolist())
    )
    frame = read_frame(conn, query)
    for name in fields:
        if name.endswith("_date"):
            frame[name] = pd.to_datetime(frame[name])
    return frame.loc[is_member_of(frame, members)]


def _opt_in_differences(
    area: str,
    code: tuple[str, str] | None,
    decided: dict[str, Any] | None,
    live: dict[str, Any] | None,
) -> list[str]:
    if code is None or decided is None:
        return []
    if live is None:
        return [f"{area}: Personify has no CUS_OPT_IN row; subsync decided {decided['flag']}"]
    return [
        f"{area}: CUS_OPT_IN {name} is {live[name]!r} in Personify, subsync decided "
        f"{decided[name]!r} (edited outside subsync, or not written yet)"
        for name in OPT_IN_DATA
        if name in live and not _same(live[name], decided[name])
    ]


def _same(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, pd.Timestamp) or isinstance(right, pd.Timestamp):
        return bool(pd.Timestamp(left) == pd.Timestamp(right))
    return str(left).strip() == str(right).strip()


def _activity(
    state_conn: Connection,
    personify_conn: Connection,
    tables: PersonifyTables,
    decided: pd.DataFrame,
    config: SubsyncConfig,
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """subsync's CUS_ACTIVITY rows of each member: one per status change, as decided and as
    Personify holds it now."""
    expected = activity_rows(decided, config.personify.activity_codes)
    records = state.activity_records
    query = sa.select(records.c.event_id, records.c.activity_id).where(
        records.c.event_id.in_(decided["event_id"].tolist()), ~records.c.gone
    )
    ids = {str(event_id): int(activity_id) for event_id, activity_id in state_conn.execute(query)}
    shape = tables.activity
    fields = shape.mapped(["id", *ACTIVITY_DATA])
    # By master id, not by row id: SQL Server takes at most 2,100 parameters in a statement.
    masters = expected["master_customer_id"].unique().tolist()
    live = read_frame(
        personify_conn,
        sa.select(*(shape.column(name).label(name) for name in fields)).where(
            shape.column("master_customer_id").in_(masters or [""])
        ),
    )
    live_by_id = {int(row["id"]): row for row in _records(live)}
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in _records(expected):
        activity_id = ids.get(row["event_id"])
        held = live_by_id.get(activity_id) if activity_id is not None else None
        if activity_id is None:
            differences = [f"activity of {row['event_id']}: not written to Personify yet"]
        elif held is None:
            differences = [
                f"activity of {row['event_id']}: CUS_ACTIVITY row {activity_id} is gone from "
                "Personify (deleted outside subsync)"
            ]
        else:
            differences = [
                f"activity of {row['event_id']}: CUS_ACTIVITY {name} is {held[name]!r} in "
                f"Personify, subsync wrote {row[name]!r} (edited outside subsync)"
                for name in ACTIVITY_DATA
                if name in held and not _same(held[name], row[name])
            ]
        found.setdefault(_member(row), []).append(
            {
                "event_id": row["event_id"],
                "activity_id": activity_id,
                "activity_code": row["activity_code"],
                "activity_subcode": row["activity_subcode"],
                "activity_date": _local(row["activity_date"], config.tz),
                "text": row["text"],
                "differences": differences,
            }
        )
    return found


def _rejected(
    conn: Connection, members: pd.DataFrame, config: SubsyncConfig, show_emails: bool
) -> pd.DataFrame:
    """Rejected rows that may be the members': those whose values name one of their master ids,
    with the member their Custom Member ID names once trimmed."""
    table = state.rejected_records
    masters = members["master_customer_id"].unique().tolist()
    query = (
        sa.select(
            table.c.day,
            table.c.source_file.label("file"),
            table.c.line_number.label("line"),
            table.c.event_id,
            table.c.reasons,
            table.c.original_values,
        )
        .where(sa.or_(*(table.c.original_values.contains(m, autoescape=True) for m in masters)))
        .order_by(table.c.reject_id)
    )
    rows = read_frame(conn, query)
    values = pd.DataFrame(
        [json.loads(text) for text in rows["original_values"]],
        index=rows.index,
        columns=["custom_member_id", "scope_type", "scope_id"],
    ).fillna("")
    ids = split_member_ids(
        values["custom_member_id"].astype(str).str.strip(), config.member_id_pattern
    )
    scopes = zip(
        values["scope_type"].astype(str).str.strip(),
        values["scope_id"].astype(str).str.strip(),
        strict=True,
    )
    areas = config.area_map()
    rows["area"] = [areas.get(scope) for scope in scopes]
    if not show_emails:
        rows["original_values"] = rows["original_values"].map(mask_email)
    return pd.concat([rows, ids[MEMBER]], axis=1)


def _lines(explanation: Explanation, markdown: bool) -> list[str]:
    heading = "## " if markdown else ""
    sub = "### " if markdown else ""
    bullet = "- " if markdown else "    "
    lines = [f"{heading}Member {explanation.member}", ""]
    if not explanation.areas:
        lines.append("No validated event of this member is in the ledger.")
    for area in explanation.areas:
        mapped = "" if area.mapped else " (not mapped to an interest area: no CUS_OPT_IN row)"
        lines += [f"{sub}{area.area}{mapped}", ""]
        for event in area.events:
            forced = ", forced" if event.forced else ""
            stored = (
                ""
                if event.stored_decision == event.decision
                else f"; stored decision: {event.stored_decision}"
            )
            said = f"{event.rule} ({event.decision}{stored})"
            lines.append(
                f"{bullet}{event.occurred_at}  {event.event_id}  {event.event_type} by "
                f"{event.source} (rank {event.rank}{forced})  {event.file}:{event.line}"
                + ("  \n  " if markdown else "\n        ")
                + said
            )
        lines += ["", f"{bullet}Status now: {area.status_line}"]
        if area.opt_in_in_personify is not None:
            flag = area.opt_in_in_personify.get("flag")
            lines.append(f"{bullet}Personify CUS_OPT_IN now: flag {flag}")
        lines += [f"{bullet}DIFFERENCE: {d}" for d in area.differences]
        lines.append("")
    if explanation.activity:
        lines += [f"{sub}subsync's CUS_ACTIVITY rows", ""]
        for row in explanation.activity:
            lines.append(
                f"{bullet}{row['activity_date']}  {row['activity_code']} {row['activity_subcode']}"
                f"  (event {row['event_id']}, row {row['activity_id']}): {row['text']}"
            )
            lines += [f"{bullet}DIFFERENCE: {d}" for d in row["differences"]]
        lines.append("")
    lines += [f"{sub}Rejected rows", ""]
    if not explanation.rejected:
        lines.append(f"{bullet}none")
    for row in explanation.rejected:
        lines.append(
            f"{bullet}{row['day']}  {row['file']}:{row['line']}  {row['event_id']}: "
            f"{row['reasons']}  {row['original_values']}"
        )
    return lines
