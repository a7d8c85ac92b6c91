"""Booking rules, pure: no I/O. Given the spaces' rules and the clock, which requested slots are invalid."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from spacesync.common.events.catalog import OpeningHours, clock_minutes
from spacesync.common.events.freebusy import FreeBusyState

MINUTES_PER_DAY = 24 * 60
BOOKING_HORIZON = timedelta(days=730)  # how far ahead a slot may be booked


@dataclass(frozen=True)
class SpaceRules:
    space_id: UUID
    name: str
    timezone: str
    slot_minutes: int
    max_booking_minutes: int
    opening_hours: OpeningHours
    bookable: bool
    """Space, its category and its location are all active."""
    public_nicknames: bool


@dataclass(frozen=True)
class RequestedSlot:
    space_id: UUID
    start: datetime
    end: datetime
    slot_id: UUID | None = None


@dataclass(frozen=True)
class Violation:
    field: str
    reason: str


def check_slots(
    slots: Sequence[RequestedSlot],
    spaces: Mapping[UUID, SpaceRules],
    now: datetime,
    *,
    changed: Iterable[int] | None = None,
) -> list[Violation]:
    """Every rule a set of slots of one booking must meet.

    `changed` names the slots that are new or moved (all when None): only they must lie in the future,
    inside opening hours and on the slot grid; overlap and maximum length are checked across all slots.
    """
    violations: list[Violation] = []
    to_check = range(len(slots)) if changed is None else changed
    for index in to_check:
        slot = slots[index]
        space = spaces.get(slot.space_id)
        if space is None:
            violations.append(Violation(f"slots.{index}.space_id", f"unknown space {slot.space_id}"))
        elif not space.bookable:
            violations.append(Violation(f"slots.{index}.space_id", f"space {space.name!r} is not bookable"))
        elif slot.end <= slot.start:
            violations.append(Violation(f"slots.{index}.end", "must be after start"))
        elif slot.start < now:
            violations.append(Violation(f"slots.{index}.start", f"{_utc(slot.start)} is in the past"))
        elif slot.end > now + BOOKING_HORIZON:
            violations.append(Violation(f"slots.{index}.end", f"is more than {BOOKING_HORIZON.days} days ahead"))
        else:
            violations.extend(_check_hours_and_grid(index, slot, space))
    if violations:
        return violations
    violations.extend(_check_overlaps(slots))
    violations.extend(_check_max_length(slots, spaces))
    return violations


def _check_hours_and_grid(index: int, slot: RequestedSlot, space: SpaceRules) -> list[Violation]:
    zone = ZoneInfo(space.timezone)
    local_start, local_end = slot.start.astimezone(zone), slot.end.astimezone(zone)
    start_minute = _minute_of_day(local_start.time())
    end_minute = _minute_of_day(local_end.time())
    if local_end.date() == local_start.date() + timedelta(days=1) and end_minute == 0:
        end_minute = MINUTES_PER_DAY
    elif local_end.date() != local_start.date():
        return [Violation(f"slots.{index}.end", f"must end on the same day it starts ({space.timezone})")]
    if local_start.second or local_start.microsecond or local_end.second or local_end.microsecond:
        return [Violation(f"slots.{index}.start", "times must be whole minutes")]
    day = OpeningHours.WEEKDAYS[local_start.weekday()]
    intervals = space.opening_hours.on_weekday(local_start.weekday())
    if not intervals:
        return [Violation(f"slots.{index}.start", f"{space.name!r} is closed on {day}s")]
    for interval in intervals:
        opens, closes = clock_minutes(interval.open), clock_minutes(interval.close)
        if opens <= start_minute and end_minute <= closes:
            if (start_minute - opens) % space.slot_minutes or (end_minute - start_minute) % space.slot_minutes:
                return [Violation(
                    f"slots.{index}.start",
                    f"must start and end on the {space.slot_minutes}-minute grid of {space.name!r} "
                    f"(from {interval.open} local time)")]
            return []
    hours = ", ".join(f"{i.open}-{i.close}" for i in intervals)
    return [Violation(
        f"slots.{index}.start",
        f"{local_start:%H:%M}-{local_end:%H:%M} is outside the opening hours of {space.name!r} on "
        f"{day} ({hours}, {space.timezone})")]


def _check_overlaps(slots: Sequence[RequestedSlot]) -> list[Violation]:
    by_space: dict[UUID, list[int]] = defaultdict(list)
    for index, slot in enumerate(slots):
        by_space[slot.space_id].append(index)
    violations = []
    for indexes in by_space.values():
        ordered = sorted(indexes, key=lambda i: slots[i].start)
        for before, after in itertools.pairwise(ordered):
            if slots[after].start < slots[before].end:
                violations.append(Violation(f"slots.{after}", f"overlaps slots.{before} in the same space"))
    return violations


def _check_max_length(slots: Sequence[RequestedSlot], spaces: Mapping[UUID, SpaceRules]) -> list[Violation]:
    """Back-to-back slots in one space count as one continuous booking."""
    by_space: dict[UUID, list[int]] = defaultdict(list)
    for index, slot in enumerate(slots):
        by_space[slot.space_id].append(index)
    violations = []
    for space_id, indexes in by_space.items():
        space = spaces[space_id]
        limit = timedelta(minutes=space.max_booking_minutes)
        ordered = sorted(indexes, key=lambda i: slots[i].start)
        run_start = slots[ordered[0]].start
        for position, index in enumerate(ordered):
            if position and slots[index].start != slots[ordered[position - 1]].end:
                run_start = slots[index].start
            length = slots[index].end - run_start
            if length > limit:
                violations.append(Violation(
                    f"slots.{index}.end",
                    f"{int(length.total_seconds() // 60)} minutes in a row in {space.name!r} exceeds the "
                    f"maximum booking length of {space.max_booking_minutes} minutes"))
    return violations


def _minute_of_day(value: time) -> int:
    return value.hour * 60 + value.minute


def _utc(value: datetime) -> str:
    return value.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%MZ")


def check_history(removed: Iterable[tuple[int | None, datetime]], now: datetime) -> list[Violation]:
    """Slots that have already ended are history: they are not cancelled or moved.

    `removed` holds (index in the request or None, end) of each slot the change would cancel or move.
    """
    return [Violation(f"slots.{index}" if index is not None else "slots",
                      f"a slot that ended at {_utc(end)} already took place and cannot change")
            for index, end in removed if end <= now]


def nickname_allowed(spaces: Iterable[SpaceRules]) -> bool:
    """A public nickname is kept only when a booked space's category has public nicknames on."""
    return any(space.public_nicknames for space in spaces)


def newest_pictures(pictures: Iterable[FreeBusyState]) -> list[FreeBusyState]:
    """Of several busy pictures, the one with the highest sequence per space (each replaces the space's whole busy
    set, so the others would be overwritten anyway), in space id order: the order bookings lock them in."""
    newest: dict[str, FreeBusyState] = {}
    for picture in pictures:
        key = _lock_key(picture.space_id)
        if key not in newest or picture.sequence > newest[key].sequence:
            newest[key] = picture
    return [newest[key] for key in sorted(newest)]


def _lock_key(space_id: str) -> str:
    """The canonical form (lowercase hex sorts like Postgres sorts uuids); a space id that is no UUID as it is."""
    try:
        return str(UUID(space_id))
    except ValueError:
        return space_id
