"""The calendars the simulator holds: items, recurring series and their occurrences (pure, no I/O).

Times are aware datetimes in UTC; a recurring series repeats in its own IANA zone, so a weekly 10:00 meeting
stays at 10:00 local time across a DST change, as Outlook's do.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo


class FreeBusy(StrEnum):
    """LegacyFreeBusyStatus values (types.xsd LegacyFreeBusyType)."""

    FREE = "Free"
    TENTATIVE = "Tentative"
    BUSY = "Busy"
    OOF = "OOF"
    WORKING_ELSEWHERE = "WorkingElsewhere"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class ExtendedKey:
    """An extended property's identity: (DistinguishedPropertySetId or PropertySetId, name or tag, type)."""

    property_set: str
    name: str
    type: str


@dataclass(frozen=True)
class Person:
    name: str
    smtp: str


@dataclass(frozen=True)
class Recurrence:
    """Daily or weekly, every `interval` days/weeks, ending after `count` occurrences or on `until` (a date)."""

    pattern: Literal["daily", "weekly"]
    interval: int = 1
    weekdays: tuple[int, ...] = ()  # 0 = Monday; weekly only; empty: the first occurrence's weekday
    count: int | None = None
    until: date | None = None
    time_zone: str = "UTC"  # IANA

    def starts(self, first_start: datetime) -> Iterator[datetime]:
        """Occurrence starts in UTC, in order, from the first one, until the series ends."""
        zone = ZoneInfo(self.time_zone)
        local_first = first_start.astimezone(zone)
        local_time = local_first.timetz().replace(tzinfo=None)
        weekdays = sorted(set(self.weekdays)) or [local_first.weekday()]
        produced = 0
        day = local_first.date()
        week_start = day - timedelta(days=day.weekday())
        # A series without count or until is bounded too: Outlook's "no end date" is capped at 10 years here.
        last_day = self.until or (local_first.date() + timedelta(days=3653))
        while day <= last_day:
            if self._occurs_on(day, local_first.date(), week_start, weekdays):
                yield datetime.combine(day, local_time, zone).astimezone(UTC)
                produced += 1
                if self.count is not None and produced >= self.count:
                    return
            day += timedelta(days=1)

    def _occurs_on(self, day: date, first: date, first_week: date, weekdays: list[int]) -> bool:
        if day < first:
            return False
        if self.pattern == "daily":
            return (day - first).days % self.interval == 0
        weeks = (day - timedelta(days=day.weekday()) - first_week).days // 7
        return weeks % self.interval == 0 and day.weekday() in weekdays


def new_change_key() -> str:
    return base64.b64encode(secrets.token_bytes(12)).decode()


def encode_id(kind: str, *parts: str) -> str:
    return base64.b64encode(":".join((kind, *parts)).encode()).decode()


def decode_id(item_id: str) -> list[str] | None:
    try:
        return base64.b64decode(item_id.encode(), validate=True).decode().split(":")
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class CalendarItem:
    """One appointment (a single one or a recurring series' master) in a mailbox's calendar."""

    id: str
    change_key: str
    mailbox: str
    subject: str = ""
    body: str = ""
    body_type: str = "Text"
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time_zone: str | None = None  # Windows zone id as the client sent it
    end_time_zone: str | None = None
    is_all_day: bool = False
    free_busy: FreeBusy = FreeBusy.BUSY
    location: str = ""
    organizer: Person | None = None
    sensitivity: str = "Normal"
    importance: str = "Normal"
    reminder_is_set: bool = False
    reminder_minutes: int = 0
    categories: tuple[str, ...] = ()
    extended: dict[ExtendedKey, str | tuple[str, ...]] = field(default_factory=dict)
    recurrence: Recurrence | None = None
    uid: str = field(default_factory=lambda: secrets.token_hex(16).upper())
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    origin: Literal["ews", "outlook"] = "ews"

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Occurrence:
    """What a calendar view shows: a single item, or one occurrence of a series (index from 1)."""

    item: CalendarItem
    start: datetime
    end: datetime
    index: int | None = None

    @property
    def id(self) -> str:
        if self.index is None:
            return self.item.id
        return encode_id("occ", self.item.id, str(self.index))

    @property
    def calendar_item_type(self) -> str:
        return "Single" if self.index is None else "Occurrence"


class ChangeKind(StrEnum):
    CREATED = "CreatedEvent"
    MODIFIED = "ModifiedEvent"
    DELETED = "DeletedEvent"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    mailbox: str
    item_id: str
    change_key: str
    at: datetime


class ItemNotFound(LookupError):
    pass


class StaleChangeKey(ValueError):
    pass


@dataclass
class Calendars:
    """All calendars by mailbox SMTP address; every change is told to the listeners (notifications)."""

    mailboxes: dict[str, dict[str, CalendarItem]] = field(default_factory=dict)
    listeners: list[Callable[[Change], None]] = field(default_factory=list)
    _counter: int = 0

    def add_mailbox(self, smtp: str) -> None:
        self.mailboxes.setdefault(smtp, {})

    def items(self, mailbox: str) -> list[CalendarItem]:
        return sorted(self.mailboxes[mailbox].values(), key=lambda item: (item.start, item.id))

    def create(self, mailbox: str, item: CalendarItem) -> CalendarItem:
        self._counter += 1
        now = datetime.now(UTC)
        stored = replace(
            item, id=encode_id("item", mailbox, str(self._counter), secrets.token_hex(4)),
            change_key=new_change_key(), mailbox=mailbox, created=now, modified=now,
        )
        self.mailboxes[mailbox][stored.id] = stored
        self._tell(ChangeKind.CREATED, stored)
        return stored

    def find(self, item_id: str) -> CalendarItem:
        """The item (or, for an occurrence id, its series' master)."""
        parts = decode_id(item_id)
        if parts and parts[0] == "occ" and len(parts) == 3:
            return self.find(parts[1])
        if not parts or parts[0] != "item" or len(parts) < 2:
            raise ItemNotFound(item_id)
        item = self.mailboxes.get(parts[1], {}).get(item_id)
        if item is None:
            raise ItemNotFound(item_id)
        return item

    def occurrence(self, item_id: str) -> Occurrence:
        """A view entry by its id: a single item, a master (as its first occurrence) or one occurrence."""
        parts = decode_id(item_id)
        item = self.find(item_id)
        if parts and parts[0] == "occ" and item.recurrence is not None:
            index = int(parts[2]) if parts[2].isdigit() else 0
            for number, start in enumerate(item.recurrence.starts(item.start), start=1):
                if number == index:
                    return Occurrence(item, start, start + item.duration, number)
            raise ItemNotFound(item_id)
        return Occurrence(item, item.start, item.end)

    def update(self, item_id: str, change_key: str | None, apply: Callable[[CalendarItem], None]) -> CalendarItem:
        item = self.find(item_id)
        if change_key and change_key != item.change_key:
            raise StaleChangeKey(item_id)
        apply(item)
        item.change_key = new_change_key()
        item.modified = datetime.now(UTC)
        self._tell(ChangeKind.MODIFIED, item)
        return item

    def delete(self, item_id: str) -> CalendarItem:
        item = self.find(item_id)
        del self.mailboxes[item.mailbox][item.id]
        self._tell(ChangeKind.DELETED, item)
        return item

    def view(self, mailbox: str, start: datetime, end: datetime) -> list[Occurrence]:
        """Everything overlapping [start, end): singles as they are, series expanded into occurrences."""
        found: list[Occurrence] = []
        for item in self.mailboxes[mailbox].values():
            if item.recurrence is None:
                if item.start < end and item.end > start:
                    found.append(Occurrence(item, item.start, item.end))
                continue
            for number, occurrence_start in enumerate(item.recurrence.starts(item.start), start=1):
                if occurrence_start >= end:
                    break
                occurrence_end = occurrence_start + item.duration
                if occurrence_end > start:
                    found.append(Occurrence(item, occurrence_start, occurrence_end, number))
        return sorted(found, key=lambda o: (o.start, o.id))

    def _tell(self, kind: ChangeKind, item: CalendarItem) -> None:
        change = Change(kind, item.mailbox, item.id, item.change_key, datetime.now(UTC))
        for listener in self.listeners:
            listener(change)
