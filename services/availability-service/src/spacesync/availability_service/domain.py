"""The slot grid (pure, no I/O): a space's opening hours laid out in its location's time zone on its slot length,
each slot available, booked, 'BUSY in Outlook' or closed."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from spacesync.common.events.catalog import OpeningHours, clock_minutes

BUSY_IN_OUTLOOK = "BUSY in Outlook"


class SlotState(StrEnum):
    AVAILABLE = "available"
    BOOKED = "booked"
    BUSY_IN_OUTLOOK = "busy_in_outlook"
    CLOSED = "closed"


@dataclass(frozen=True)
class SpaceLayout:
    """What the grid of one space needs from the catalog. `closed_because` is set when the space, its category
    or its location is inactive: every slot is closed."""

    space_id: str
    name: str
    timezone: str
    slot_minutes: int
    opening_hours: OpeningHours
    closed_because: str | None = None


@dataclass(frozen=True)
class Booked:
    start: datetime
    end: datetime
    source: str
    booking_id: str
    patron: str
    nickname: str | None


@dataclass(frozen=True)
class Busy:
    start: datetime
    end: datetime
    organizer: str | None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, and a grid makes hundreds
class Slot:
    start: datetime
    end: datetime
    state: SlotState
    reason: str | None = None
    booking: Booked | None = None
    organizer: str | None = None

    @property
    def available(self) -> bool:
        return self.state is SlotState.AVAILABLE


def local_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_bounds(timezone: str, first: date, last: date) -> tuple[datetime, datetime]:
    """[start of `first`, end of `last`) in the zone, as UTC."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def slot_times(layout: SpaceLayout, first: date, last: date) -> list[tuple[datetime, datetime]]:
    """Slots of the local days first..last: from each opening on the slot length while a whole slot fits before
    closing, as UTC. No slot starts at a wall-clock time that does not exist (the hour skipped when clocks go
    forward; a slot ending there ends at the change); a repeated hour (clocks go back) is laid out once, at its
    first occurrence."""
    slots: list[tuple[datetime, datetime]] = []
    for day in local_days(first, last):
        # sorted: the catalog keeps a day's intervals in the order they were entered, and slots must ascend
        intervals = tuple(sorted((clock_minutes(i.open), clock_minutes(i.close))
                                 for i in layout.opening_hours.on_weekday(day.weekday())))
        slots += _day_slots(layout.timezone, layout.slot_minutes, intervals, day)
    return slots


@functools.lru_cache(maxsize=8192)
def _day_slots(timezone: str, step: int, intervals: tuple[tuple[int, int], ...], day: date,
               ) -> tuple[tuple[datetime, datetime], ...]:
    """One day's slots; cached, as the spaces of a location mostly share hours and slot length."""
    zone = ZoneInfo(timezone)
    midnight = datetime.combine(day, time())
    offset = midnight.replace(tzinfo=zone).utcoffset()
    steady = offset == (midnight + timedelta(days=1)).replace(tzinfo=zone).utcoffset()
    slots = []
    for opens, closes in intervals:
        for minute in range(opens, closes - step + 1, step):
            wall_start = midnight + timedelta(minutes=minute)
            wall_end = wall_start + timedelta(minutes=step)
            if steady and offset is not None:  # no clock change that day: plain arithmetic
                slots.append(((wall_start - offset).replace(tzinfo=UTC), (wall_end - offset).replace(tzinfo=UTC)))
                continue
            start = _utc(wall_start, zone)
            end = wall_end.replace(tzinfo=zone).astimezone(UTC)
            if start is not None and end > start:
                slots.append((start, end))
    return tuple(slots)


def _utc(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """A local wall-clock time as UTC, or None when it does not exist in the zone."""
    utc = wall.replace(tzinfo=zone).astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return utc


def slot_grid(layout: SpaceLayout, first: date, last: date, booked: list[Booked], busy: list[Busy],
              now: datetime) -> list[Slot]:
    """Every slot of the days with its state. Precedence: booked (who), then 'BUSY in Outlook', then closed
    (inactive, or the slot has already started), else available."""
    bookings = _Overlaps(booked)
    meetings = _Overlaps(busy)
    grid = []
    for start, end in slot_times(layout, first, last):
        booking = bookings.first(start, end)
        if booking is not None:
            grid.append(Slot(start, end, SlotState.BOOKED, "booked", booking=booking))
            continue
        meeting = meetings.first(start, end)
        if meeting is not None:
            grid.append(Slot(start, end, SlotState.BUSY_IN_OUTLOOK, BUSY_IN_OUTLOOK, organizer=meeting.organizer))
        elif layout.closed_because is not None:
            grid.append(Slot(start, end, SlotState.CLOSED, layout.closed_because))
        elif start <= now:
            grid.append(Slot(start, end, SlotState.CLOSED, "already started"))
        else:
            grid.append(Slot(start, end, SlotState.AVAILABLE))
    return grid


Interval = TypeVar("Interval", Booked, Busy)


class _Overlaps(Generic[Interval]):
    """The first interval (by start) overlapping each of a series of ascending slots, in one pass."""

    def __init__(self, intervals: list[Interval]) -> None:
        self._items: list[Interval] = sorted(intervals, key=lambda i: i.start)
        self._skip = 0  # intervals before this one end before every slot still to come

    def first(self, start: datetime, end: datetime) -> Interval | None:
        items = self._items
        while self._skip < len(items) and items[self._skip].end <= start:
            self._skip += 1
        for item in items[self._skip:]:
            if item.start >= end:
                return None
            if item.end > start:
                return item
        return None


def closed_because(*, space_active: bool, category_active: bool, location_active: bool) -> str | None:
    if not location_active:
        return "location inactive"
    if not category_active:
        return "category inactive"
    if not space_active:
        return "space inactive"
    return None


class RangeError(ValueError):
    pass


# A day's local midnights are UTC datetimes in every zone only a day inside the calendar's ends.
FIRST_DAY, LAST_DAY = date.min + timedelta(days=1), date.max - timedelta(days=1)


def check_range(first: date, last: date, max_days: int) -> None:
    """A date range a request may ask for; raises RangeError saying why not."""
    if first < FIRST_DAY or last > LAST_DAY:
        raise RangeError(f"dates must lie between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    if last < first:
        raise RangeError(f"end ({last.isoformat()}) is before start ({first.isoformat()})")
    days = (last - first).days + 1
    if days > max_days:
        raise RangeError(f"{days} days asked for; at most {max_days} per request")
