"""Calendars as JSON: the admin API's item view and the state file (`save_state` / `load_state`).

The state file holds every calendar item with all its fields, so a simulator restarted with the same file serves
the same items under the same ids and change keys. Faults, counters and subscriptions are not kept (a restarted
Exchange has none of those either). The file is written to a temporary file beside it and renamed, so a crash
never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from spacesync.exchange_simulator.calendar import (
    CalendarItem,
    ExtendedKey,
    FreeBusy,
    Occurrence,
    Person,
    Recurrence,
    decode_id,
)
from spacesync.exchange_simulator.state import SimulatorState

log = logging.getLogger(__name__)

FORMAT = "spacesync-exchange-simulator-state"
VERSION = 1
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ExtendedPropertyView(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    property_set: str = Field(alias="set")  # DistinguishedPropertySetId (e.g. PublicStrings) or a PropertySetId
    name: str  # PropertyName, or the PropertyTag
    type: str  # PropertyType, e.g. String
    value: str | list[str]


class PersonView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    smtp: str


class RecurrenceView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: Literal["daily", "weekly"]
    interval: int = Field(ge=1)
    weekdays: list[Weekday] = Field(default_factory=list)
    count: int | None = Field(default=None, ge=1)
    until: date | None = None
    time_zone: str = "UTC"

    @classmethod
    def of(cls, recurrence: Recurrence) -> RecurrenceView:
        return cls(pattern=recurrence.pattern, interval=recurrence.interval,
                   weekdays=[WEEKDAYS[day] for day in recurrence.weekdays],
                   count=recurrence.count, until=recurrence.until, time_zone=recurrence.time_zone)

    def recurrence(self) -> Recurrence:
        return Recurrence(pattern=self.pattern, interval=self.interval,
                          weekdays=tuple(WEEKDAYS.index(day) for day in self.weekdays),
                          count=self.count, until=self.until, time_zone=self.time_zone)


class ItemView(BaseModel):
    """One calendar item with every field the simulator holds (times in UTC)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    change_key: str
    mailbox: str
    origin: Literal["ews", "outlook"]
    subject: str
    body: str
    body_type: str
    start: AwareDatetime
    end: AwareDatetime
    start_time_zone: str | None
    end_time_zone: str | None
    is_all_day: bool
    free_busy: FreeBusy
    location: str
    organizer: PersonView | None
    sensitivity: str
    importance: str
    reminder_is_set: bool
    reminder_minutes: int
    categories: list[str]
    extended_properties: list[ExtendedPropertyView]
    recurrence: RecurrenceView | None
    uid: str
    created: AwareDatetime
    modified: AwareDatetime

    @classmethod
    def of(cls, item: CalendarItem) -> ItemView:
        return cls(
            id=item.id, change_key=item.change_key, mailbox=item.mailbox, origin=item.origin, subject=item.subject,
            body=item.body, body_type=item.body_type, start=_utc(item.start), end=_utc(item.end),
            start_time_zone=item.start_time_zone, end_time_zone=item.end_time_zone, is_all_day=item.is_all_day,
            free_busy=item.free_busy, location=item.location,
            organizer=PersonView(name=item.organizer.name, smtp=item.organizer.smtp) if item.organizer else None,
            sensitivity=item.sensitivity, importance=item.importance, reminder_is_set=item.reminder_is_set,
            reminder_minutes=item.reminder_minutes, categories=list(item.categories),
            extended_properties=[
                ExtendedPropertyView(property_set=key.property_set, name=key.name, type=key.type,
                                     value=value if isinstance(value, str) else list(value))
                for key, value in item.extended.items()
            ],
            recurrence=RecurrenceView.of(item.recurrence) if item.recurrence else None,
            uid=item.uid, created=_utc(item.created), modified=_utc(item.modified),
        )

    def item(self) -> CalendarItem:
        return CalendarItem(
            id=self.id, change_key=self.change_key, mailbox=self.mailbox, subject=self.subject, body=self.body,
            body_type=self.body_type, start=_utc(self.start), end=_utc(self.end),
            start_time_zone=self.start_time_zone, end_time_zone=self.end_time_zone, is_all_day=self.is_all_day,
            free_busy=self.free_busy, location=self.location,
            organizer=Person(self.organizer.name, self.organizer.smtp) if self.organizer else None,
            sensitivity=self.sensitivity, importance=self.importance, reminder_is_set=self.reminder_is_set,
            reminder_minutes=self.reminder_minutes, categories=tuple(self.categories),
            extended={
                ExtendedKey(p.property_set, p.name, p.type): p.value if isinstance(p.value, str) else tuple(p.value)
                for p in self.extended_properties
            },
            recurrence=self.recurrence.recurrence() if self.recurrence else None,
            uid=self.uid, created=_utc(self.created), modified=_utc(self.modified), origin=self.origin,
        )

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def occurrence_json(occurrence: Occurrence) -> dict[str, Any]:
    """A calendar-view entry: a single item, or one occurrence of a series (index from 1)."""
    return {
        "id": occurrence.id,
        "item_id": occurrence.item.id,
        "type": occurrence.calendar_item_type,
        "index": occurrence.index,
        "start": iso(occurrence.start),
        "end": iso(occurrence.end),
        "subject": occurrence.item.subject,
        "free_busy": occurrence.item.free_busy.value,
        "origin": occurrence.item.origin,
    }


def iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class _StateDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["spacesync-exchange-simulator-state"]
    version: Literal[1]
    saved_at: AwareDatetime
    mailboxes: dict[str, list[ItemView]]


class StateFileError(ValueError):
    """The state file cannot be read or written; the message names the file and the problem."""


def is_state_file(path: Path) -> bool:
    """Whether the file looks like a state file (so overwriting it loses nothing else)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return FORMAT.encode() in head


def state_json(state: SimulatorState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": iso(datetime.now(UTC)),
        "mailboxes": {smtp: [ItemView.of(item).as_json() for item in state.calendars.items(smtp)]
                      for smtp in state.calendars.mailboxes},
    }


def save_state(state: SimulatorState, path: Path) -> int:
    """Writes every calendar to `path` (atomically); returns how many items it wrote."""
    document = state_json(state)
    text = json.dumps(document, ensure_ascii=False, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise StateFileError(f"state file {path}: cannot write: {error.strerror or error}") from None
    written = sum(len(items) for items in document["mailboxes"].values())
    log.info("saved %d calendar items to %s", written, path)
    return written


def load_state(state: SimulatorState, path: Path) -> int | None:
    """Replaces the calendars with the file's (no notifications: nothing changed, the server restarted).

    Returns how many items it loaded, or None when the file does not exist. Mailboxes the seed no longer has are
    skipped (logged). A file that is not a valid state file raises StateFileError and changes nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateFileError(f"state file {path}: cannot read: {error}") from None
    try:
        document = _StateDocument.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
                             for e in error.errors()[:5])
        raise StateFileError(f"state file {path}: not a simulator state file: {problems}") from None
    restored: dict[str, list[CalendarItem]] = {}
    for smtp, views in document.mailboxes.items():
        if smtp not in state.calendars.mailboxes:
            log.warning("state file %s: skipping %d items of %s, a mailbox the seed does not have",
                        path, len(views), smtp)
            continue
        for view in views:
            if view.mailbox != smtp:
                raise StateFileError(f"state file {path}: item {view.id} of {view.mailbox} is listed under {smtp}")
        restored[smtp] = [view.item() for view in views]
    for smtp, items in state.calendars.mailboxes.items():
        items.clear()
        items.update({item.id: item for item in restored.get(smtp, [])})
    _advance_counter(state, restored)
    loaded = sum(len(items) for items in restored.values())
    log.info("loaded %d calendar items from %s", loaded, path)
    return loaded


def _advance_counter(state: SimulatorState, restored: dict[str, list[CalendarItem]]) -> None:
    # Item ids carry Calendars' running number: new items must not start from 1 again.
    highest = 0
    for items in restored.values():
        for item in items:
            parts = decode_id(item.id)
            if parts and len(parts) >= 3 and parts[2].isdigit():
                highest = max(highest, int(parts[2]))
    state.calendars._counter = max(state.calendars._counter, highest)
