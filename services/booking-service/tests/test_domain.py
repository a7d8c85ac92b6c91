"""Booking rules (pure): grid, opening hours in the location's zone, past, overlap, maximum length."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from spacesync.booking_service.domain import RequestedSlot, SpaceRules, check_slots, nickname_allowed
from spacesync.common.events import OpeningHours

ROOM = uuid.UUID(int=1)
WEEKDAY = [{"open": "08:00", "close": "22:00"}]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def rules(**overrides: object) -> dict[uuid.UUID, SpaceRules]:
    values: dict[str, object] = dict(
        space_id=ROOM, name="Room 101", timezone="America/New_York", slot_minutes=30, max_booking_minutes=120,
        opening_hours=OpeningHours.model_validate({d: WEEKDAY for d in OpeningHours.WEEKDAYS[:5]}),
        bookable=True, public_nicknames=False)
    values.update(overrides)
    return {ROOM: SpaceRules(**values)}  # type: ignore[arg-type]


def slot(start: str, end: str, space: uuid.UUID = ROOM) -> RequestedSlot:
    return RequestedSlot(space, datetime.fromisoformat(start), datetime.fromisoformat(end))


def reasons(*slots: RequestedSlot, space_rules: dict[uuid.UUID, SpaceRules] | None = None,
            changed: list[int] | None = None) -> list[str]:
    found = check_slots(list(slots), space_rules or rules(), NOW, changed=changed)
    return [f"{v.field}: {v.reason}" for v in found]


def test_aligned_slot_inside_local_opening_hours_is_accepted() -> None:
    # 09:00-10:00 in New York on Tuesday 24 November is 14:00-15:00 UTC.
    assert reasons(slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:00:00+00:00")) == []


def test_hours_are_checked_in_the_locations_zone_not_utc() -> None:
    # 07:00 in New York: before opening, although 12:00 UTC looks fine.
    [reason] = reasons(slot("2026-11-24T12:00:00+00:00", "2026-11-24T13:00:00+00:00"))
    assert "07:00-08:00 is outside the opening hours of 'Room 101' on tuesday (08:00-22:00" in reason


def test_closed_day() -> None:
    [reason] = reasons(slot("2026-11-28T15:00:00+00:00", "2026-11-28T16:00:00+00:00"))
    assert reason == "slots.0.start: 'Room 101' is closed on saturdays"


@pytest.mark.parametrize(("start", "end"), [
    ("2026-11-24T14:10:00+00:00", "2026-11-24T15:10:00+00:00"),  # start off the grid
    ("2026-11-24T14:00:00+00:00", "2026-11-24T14:45:00+00:00"),  # length off the grid
])
def test_slots_must_sit_on_the_grid(start: str, end: str) -> None:
    [reason] = reasons(slot(start, end))
    assert "30-minute grid of 'Room 101' (from 08:00 local time)" in reason


def test_grid_counts_from_the_opening_time() -> None:
    hours = OpeningHours.model_validate({"tuesday": [{"open": "08:15", "close": "12:15"}]})
    space = rules(opening_hours=hours, slot_minutes=60, timezone="UTC")
    assert reasons(slot("2026-11-24T09:15:00+00:00", "2026-11-24T10:15:00+00:00"), space_rules=space) == []
    assert reasons(slot("2026-11-24T09:00:00+00:00", "2026-11-24T10:00:00+00:00"), space_rules=space)


def test_past_slots_are_refused() -> None:
    [reason] = reasons(slot("2026-11-23T11:00:00+00:00", "2026-11-23T11:30:00+00:00"))
    assert reason == "slots.0.start: 2026-11-23T11:00Z is in the past"


def test_unknown_and_unbookable_spaces() -> None:
    other = uuid.UUID(int=2)
    [reason] = reasons(slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:00:00+00:00", other))
    assert reason == f"slots.0.space_id: unknown space {other}"
    [reason] = reasons(slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:00:00+00:00"),
                       space_rules=rules(bookable=False))
    assert reason == "slots.0.space_id: space 'Room 101' is not bookable"


def test_end_must_follow_start() -> None:
    [reason] = reasons(slot("2026-11-24T15:00:00+00:00", "2026-11-24T14:00:00+00:00"))
    assert reason == "slots.0.end: must be after start"


def test_overlapping_slots_in_one_request() -> None:
    [reason] = reasons(slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:00:00+00:00"),
                       slot("2026-11-24T14:30:00+00:00", "2026-11-24T15:30:00+00:00"))
    assert reason == "slots.1: overlaps slots.0 in the same space"


def test_back_to_back_slots_count_as_one_booking_for_the_maximum() -> None:
    first = slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:30:00+00:00")
    second = slot("2026-11-24T15:30:00+00:00", "2026-11-24T16:30:00+00:00")
    [reason] = reasons(first, second)
    assert reason == ("slots.1.end: 150 minutes in a row in 'Room 101' exceeds the maximum booking length "
                      "of 120 minutes")
    later = slot("2026-11-24T17:00:00+00:00", "2026-11-24T18:00:00+00:00")
    assert reasons(first, later) == []


def test_only_changed_slots_must_be_in_the_future() -> None:
    past = slot("2026-11-23T09:00:00+00:00", "2026-11-23T09:30:00+00:00")
    future = slot("2026-11-24T14:00:00+00:00", "2026-11-24T15:00:00+00:00")
    assert reasons(past, future, changed=[1]) == []
    assert reasons(past, future, changed=[0, 1])


def test_daylight_saving_day_uses_local_wall_clock() -> None:
    # London moves to BST on Sunday 29 March 2026: 09:00 local is 08:00 UTC that day.
    hours = OpeningHours.model_validate({"sunday": [{"open": "09:00", "close": "17:00"}]})
    space = rules(opening_hours=hours, timezone="Europe/London")
    dst_now = datetime(2026, 3, 1, tzinfo=UTC)
    ok = check_slots([slot("2026-03-29T08:00:00+00:00", "2026-03-29T09:00:00+00:00")], space, dst_now)
    early = check_slots([slot("2026-03-29T07:30:00+00:00", "2026-03-29T08:30:00+00:00")], space, dst_now)
    assert ok == []
    assert "08:30-09:30 is outside the opening hours" in early[0].reason


def test_closing_at_midnight() -> None:
    hours = OpeningHours.model_validate({"tuesday": [{"open": "20:00", "close": "24:00"}]})
    space = rules(opening_hours=hours, timezone="UTC")
    assert reasons(slot("2026-11-24T23:00:00+00:00", "2026-11-25T00:00:00+00:00"), space_rules=space) == []
    [reason] = reasons(slot("2026-11-24T23:30:00+00:00", "2026-11-25T00:30:00+00:00"), space_rules=space)
    assert "must end on the same day it starts" in reason


def test_whole_minutes_only() -> None:
    start = datetime(2026, 11, 24, 14, 0, 30, tzinfo=UTC)
    found = check_slots([RequestedSlot(ROOM, start, start + timedelta(minutes=30))], rules(), NOW)
    assert found[0].reason == "times must be whole minutes"


def test_nickname_needs_a_category_with_public_nicknames() -> None:
    assert not nickname_allowed(rules().values())
    assert nickname_allowed(rules(public_nicknames=True).values())
