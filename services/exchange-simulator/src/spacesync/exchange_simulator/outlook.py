"""Outlook's side of the calendars: meetings people book, move and cancel in Outlook (pure, no I/O).

These changes go through `Calendars` like EWS writes do, so they raise the same notifications. Meetings booked
here carry origin="outlook"; moving or cancelling works on any item of the mailbox (a person may move a meeting
the sync service booked). The input models validate everything a person could get wrong and name the field.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from spacesync.common.events.catalog import is_iana_zone
from spacesync.exchange_simulator.calendar import (
    CalendarItem,
    Calendars,
    FreeBusy,
    ItemNotFound,
    Person,
    Recurrence,
    decode_id,
)
from spacesync.exchange_simulator.persistence import WEEKDAYS, RecurrenceView, Weekday
from spacesync.exchange_simulator.seed import MailboxSeed, Seed

FreeBusyIn = Literal["Busy", "OOF", "WorkingElsewhere", "Tentative", "Free"]

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)

# Characters XML 1.0 cannot carry: a subject with one would break every EWS answer that contains the item.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SMTP = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class Invalid(ValueError):
    """Input that is well-formed but does not make a valid meeting: (field, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in problems))
        self.problems = problems


def _xml_safe(value: str) -> str:
    found = _NOT_XML.search(value)
    if found:
        raise ValueError(f"contains the control character U+{ord(found.group()):04X}, which XML cannot carry")
    return value


def _in_range(moment: datetime) -> datetime:
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"is out of range ({EARLIEST.year} to {LATEST.year - 1})")
    return utc


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=255)
    smtp: str = Field(max_length=320)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _xml_safe(value)

    @field_validator("smtp")
    @classmethod
    def _smtp(cls, value: str) -> str:
        if not _SMTP.match(value):
            raise ValueError("must be an SMTP address (name@domain)")
        return value.lower()


class RecurrenceIn(RecurrenceView):
    """Daily or weekly, every `interval` days/weeks; ends after `count` occurrences or on `until` (a date in
    `time_zone`), or neither (Outlook's "no end date", capped at 10 years). Occurrences keep their local time in
    `time_zone` (an IANA zone) across DST changes."""

    model_config = ConfigDict(extra="forbid")

    pattern: Literal["daily", "weekly"]
    interval: int = Field(default=1, ge=1, le=99)
    weekdays: list[Weekday] = Field(default_factory=list, max_length=7)  # weekly only; empty: the start's weekday
    count: int | None = Field(default=None, ge=1, le=999)
    until: date | None = None
    time_zone: str = Field(default="UTC", max_length=64)

    @field_validator("weekdays", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, list):
            return [day.strip().lower() if isinstance(day, str) else day for day in value]
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekly_only(cls, days: list[Weekday], info: ValidationInfo) -> list[Weekday]:
        if days and info.data.get("pattern") == "daily":
            raise ValueError("only a weekly series has weekdays")
        repeated = sorted({day for day in days if days.count(day) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} given more than once")
        return sorted(days, key=WEEKDAYS.index)

    @field_validator("until")
    @classmethod
    def _count_or_until(cls, until: date | None, info: ValidationInfo) -> date | None:
        if until is not None and info.data.get("count") is not None:
            raise ValueError("give count or until, not both")
        return until

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str) -> str:
        if not is_iana_zone(value):
            raise ValueError(f"'{value}' is not a known IANA time zone (e.g. Europe/Berlin)")
        return value



class MeetingIn(BaseModel):
    """A meeting booked in Outlook: who organises it, when (aware ISO times), how it shows in free/busy."""

    model_config = ConfigDict(extra="forbid")

    organizer: PersonIn
    subject: str = Field(default="", max_length=255)
    start: AwareDatetime
    end: AwareDatetime
    free_busy: FreeBusyIn = "Busy"
    location: str | None = Field(default=None, max_length=255)  # none: the mailbox's display name
    body: str = Field(default="", max_length=65_536)
    recurrence: RecurrenceIn | None = None

    @field_validator("subject", "location", "body")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _xml_safe(value)

    @field_validator("start")
    @classmethod
    def _start(cls, value: datetime) -> datetime:
        return _in_range(value)

    @field_validator("end")
    @classmethod
    def _end(cls, value: datetime, info: ValidationInfo) -> datetime:
        end = _in_range(value)
        start = info.data.get("start")
        if isinstance(start, datetime) and end <= start:
            raise ValueError(f"must be after start ({start.isoformat()})")
        return end


class MeetingChange(BaseModel):
    """What a person changes in Outlook. Only `start`: the meeting moves and keeps its length; only `end`: it gets
    shorter or longer; both: it gets exactly these times. `recurrence: null` turns a series into a single
    meeting. Every other field may not be null."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    free_busy: FreeBusyIn | None = None
    subject: str | None = Field(default=None, max_length=255)
    location: str | None = Field(default=None, max_length=255)
    body: str | None = Field(default=None, max_length=65_536)
    recurrence: RecurrenceIn | None = None

    @field_validator("start", "end", "free_busy", "subject", "location", "body")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep it)")
        if isinstance(value, str):
            return _xml_safe(value)
        if isinstance(value, datetime):
            return _in_range(value)
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if isinstance(start, datetime) and value <= start:
            raise ValueError(f"must be after start ({start.isoformat()})")
        return value

    @model_validator(mode="after")
    def _something(self) -> MeetingChange:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give at least one of " + ", ".join(type(self).model_fields))
        return self


def mailbox(seed: Seed, smtp: str) -> MailboxSeed | None:
    wanted = smtp.strip().lower()
    return next((candidate for candidate in seed.mailboxes if candidate.smtp == wanted), None)


def series_problems(start: datetime, end: datetime, recurrence: Recurrence | None,
                    prefix: str = "recurrence") -> list[tuple[str, str]]:
    """What Outlook would refuse about a series starting at `start`: (field, reason) pairs."""
    if recurrence is None:
        return []
    problems: list[tuple[str, str]] = []
    local = start.astimezone(ZoneInfo(recurrence.time_zone))
    days = sorted(set(recurrence.weekdays)) or [local.weekday()]
    if recurrence.pattern == "weekly" and local.weekday() not in days:
        problems.append(("start", f"{local.date()} is a {WEEKDAYS[local.weekday()]} in {recurrence.time_zone}; "
                                  f"a weekly series starts on one of its weekdays "
                                  f"({', '.join(WEEKDAYS[d] for d in days)})"))
    if recurrence.until is not None and recurrence.until < local.date():
        problems.append((f"{prefix}.until", f"{recurrence.until} is before the first occurrence ({local.date()})"))
    if recurrence.pattern == "daily":
        gap = recurrence.interval
    else:
        gaps = [later - earlier for earlier, later in itertools.pairwise(days)]
        gap = min([*gaps, 7 * recurrence.interval - (days[-1] - days[0])])
    if end - start >= timedelta(days=gap):
        problems.append(("end", f"the meeting lasts {end - start}, not shorter than the {gap} day(s) between "
                                "occurrences"))
    return problems


def find(calendars: Calendars, smtp: str, item_id: str) -> CalendarItem:
    """The item (a single meeting or a series) with this id in this mailbox; ItemNotFound otherwise."""
    item = calendars.find(item_id)
    if item.mailbox != smtp:
        raise ItemNotFound(item_id)
    return item


def _whole_item(item_id: str) -> None:
    parts = decode_id(item_id)
    if parts and parts[0] == "occ":
        raise Invalid([("item_id", "is one occurrence of a series; changing single occurrences is not supported, "
                                   "change the series by its id")])


def create_meeting(calendars: Calendars, room: MailboxSeed, meeting: MeetingIn) -> CalendarItem:
    recurrence = meeting.recurrence.recurrence() if meeting.recurrence else None
    problems = series_problems(meeting.start, meeting.end, recurrence)
    if problems:
        raise Invalid(problems)
    item = CalendarItem(
        id="", change_key="", mailbox=room.smtp, subject=meeting.subject, body=meeting.body,
        start=meeting.start.astimezone(UTC), end=meeting.end.astimezone(UTC), free_busy=FreeBusy(meeting.free_busy),
        location=room.name if meeting.location is None else meeting.location,
        organizer=Person(meeting.organizer.name, meeting.organizer.smtp), recurrence=recurrence, origin="outlook",
    )
    return calendars.create(room.smtp, item)


def change_meeting(calendars: Calendars, smtp: str, item_id: str, change: MeetingChange,
                   change_key: str | None = None) -> CalendarItem:
    """Moves or edits an item; checks everything first, so a refused change changes nothing.

    Raises ItemNotFound, Invalid, or StaleChangeKey (when `change_key` is given and is not the item's).
    """
    _whole_item(item_id)
    item = find(calendars, smtp, item_id)
    given = change.model_fields_set
    start = change.start if change.start is not None else item.start
    if change.end is not None:
        end = change.end
    elif change.start is not None:
        end = start + item.duration
    else:
        end = item.end
    if end <= start:
        raise Invalid([("end" if "end" in given else "start",
                        f"the meeting would end ({end.isoformat()}) before it starts ({start.isoformat()})")])
    if "recurrence" in given:
        recurrence = change.recurrence.recurrence() if change.recurrence else None
    else:
        recurrence = item.recurrence
    problems = series_problems(start, end, recurrence)
    if problems:
        raise Invalid(problems)

    def apply(target: CalendarItem) -> None:
        target.start, target.end, target.recurrence = start.astimezone(UTC), end.astimezone(UTC), recurrence
        if change.free_busy is not None:
            target.free_busy = FreeBusy(change.free_busy)
        if change.subject is not None:
            target.subject = change.subject
        if change.location is not None:
            target.location = change.location
        if change.body is not None:
            target.body = change.body

    return calendars.update(item.id, change_key, apply)


def cancel_meeting(calendars: Calendars, smtp: str, item_id: str) -> CalendarItem:
    """Deletes an item (a whole series for a series); raises ItemNotFound or Invalid."""
    _whole_item(item_id)
    return calendars.delete(find(calendars, smtp, item_id).id)
