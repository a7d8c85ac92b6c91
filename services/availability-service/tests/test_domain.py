"""The slot grid: opening hours in the location's zone, slot length, states and their precedence (no infra)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from spacesync.availability_service.domain import (
    BUSY_IN_OUTLOOK,
    Booked,
    Busy,
    RangeError,
    SlotState,
    SpaceLayout,
    check_range,
    day_bounds,
    slot_grid,
    slot_times,
)
from spacesync.common.events.catalog import OpeningHours

WEEKDAYS_9_TO_12 = OpeningHours.model_validate(
    {day: [{"open": "09:00", "close": "12:00"}] for day in OpeningHours.WEEKDAYS[:5]})
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
MONDAY = date(2026, 7, 6)


def layout(zone: str = "Europe/London", minutes: int = 60, hours: OpeningHours = WEEKDAYS_9_TO_12,
           closed: str | None = None) -> SpaceLayout:
    return SpaceLayout("s1", "Room 1", zone, minutes, hours, closed)


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_slots_follow_opening_hours_in_the_location_zone() -> None:
    # London is UTC+1 in July: 09:00-12:00 local is 08:00-11:00 UTC
    assert slot_times(layout(), MONDAY, MONDAY) == [
        (utc(MONDAY, 8), utc(MONDAY, 9)), (utc(MONDAY, 9), utc(MONDAY, 10)), (utc(MONDAY, 10), utc(MONDAY, 11))]


def test_a_slot_that_does_not_fit_before_closing_is_left_out_and_closed_days_have_none() -> None:
    slots = slot_times(layout(minutes=50), MONDAY, MONDAY + timedelta(days=6))
    assert len(slots) == 5 * 3  # 09:00, 09:50, 10:40 (11:30 would end after 12:00); weekend closed
    assert slots[-1] == (utc(MONDAY + timedelta(days=4), 9, 40), utc(MONDAY + timedelta(days=4), 10, 30))


def test_open_until_midnight_and_the_skipped_hour_when_clocks_go_forward() -> None:
    hours = OpeningHours.model_validate({day: [{"open": "00:00", "close": "24:00"}] for day in OpeningHours.WEEKDAYS})
    spring = date(2026, 3, 29)  # Europe/London skips 01:00-02:00 local
    slots = slot_times(layout(hours=hours), spring, spring)
    assert len(slots) == 23
    assert slots[0] == (datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC))
    assert slots[-1][1] == datetime(2026, 3, 29, 23, tzinfo=UTC)  # 24:00 local (BST)
    assert len(slot_times(layout(hours=hours), date(2026, 10, 25), date(2026, 10, 25))) == 24  # repeated hour once


def test_states_and_their_precedence() -> None:
    booking = Booked(utc(MONDAY, 8), utc(MONDAY, 9), "/src", "b1", "Ada Lovelace", "Ada")
    meetings = [Busy(utc(MONDAY, 8, 30), utc(MONDAY, 9, 30), "Grace Hopper")]
    grid = slot_grid(layout(), MONDAY, MONDAY, [booking], meetings, now=LONG_AGO)
    assert [s.state for s in grid] == [SlotState.BOOKED, SlotState.BUSY_IN_OUTLOOK, SlotState.AVAILABLE]
    assert grid[0].booking == booking
    assert (grid[1].reason, grid[1].organizer) == (BUSY_IN_OUTLOOK, "Grace Hopper")
    assert [s.available for s in grid] == [False, False, True]


def test_a_booking_touching_a_slot_edge_does_not_take_it() -> None:
    booking = Booked(utc(MONDAY, 7), utc(MONDAY, 8), "/src", "b1", "Ada Lovelace", None)
    assert slot_grid(layout(), MONDAY, MONDAY, [booking], [], now=LONG_AGO)[0].state is SlotState.AVAILABLE


def test_closed_when_inactive_or_already_started() -> None:
    grid = slot_grid(layout(closed="space inactive"), MONDAY, MONDAY, [], [], now=LONG_AGO)
    assert {(s.state, s.reason) for s in grid} == {(SlotState.CLOSED, "space inactive")}
    grid = slot_grid(layout(), MONDAY, MONDAY, [], [], now=utc(MONDAY, 9))
    assert [(s.state, s.reason) for s in grid] == [
        (SlotState.CLOSED, "already started"), (SlotState.CLOSED, "already started"), (SlotState.AVAILABLE, None)]


def test_day_bounds_are_local_midnights() -> None:
    assert day_bounds("America/Chicago", MONDAY, MONDAY + timedelta(days=1)) == (
        datetime(2026, 7, 6, 5, tzinfo=UTC), datetime(2026, 7, 8, 5, tzinfo=UTC))


def test_date_ranges_are_bounded() -> None:
    check_range(MONDAY, MONDAY + timedelta(days=30), 31)
    with pytest.raises(RangeError, match="32 days asked for; at most 31"):
        check_range(MONDAY, MONDAY + timedelta(days=31), 31)
    with pytest.raises(RangeError, match="before start"):
        check_range(MONDAY, MONDAY - timedelta(days=1), 31)


@pytest.mark.parametrize("zone", ["Europe/London", "Asia/Kolkata", "Australia/Adelaide", "America/St_Johns"])
def test_days_without_a_clock_change_match_the_zone_conversion(zone: str) -> None:
    hours = OpeningHours.model_validate({day: [{"open": "07:30", "close": "23:45"}] for day in OpeningHours.WEEKDAYS})
    tz = ZoneInfo(zone)
    for day in (date(2026, 1, 15), date(2026, 7, 15)):
        expected = [(datetime.combine(day, time(7, 30), tz).astimezone(UTC) + timedelta(minutes=15 * n),
                     datetime.combine(day, time(7, 30), tz).astimezone(UTC) + timedelta(minutes=15 * (n + 1)))
                    for n in range(65)]
        assert slot_times(layout(zone, minutes=15, hours=hours), day, day) == expected


def test_overlaps_are_found_with_long_and_short_intervals_mixed() -> None:
    week = Busy(utc(MONDAY, 0) - timedelta(days=3), utc(MONDAY, 10, 30), "OOF")
    inside = Busy(utc(MONDAY, 9, 30), utc(MONDAY, 9, 45), "Inside")
    late = Busy(utc(MONDAY, 11, 15), utc(MONDAY, 11, 30), "Late")
    grid = slot_grid(layout("UTC"), MONDAY, MONDAY, [], [late, inside, week], now=LONG_AGO)
    assert [s.organizer for s in grid] == ["OOF", "OOF", "Late"]
    grid = slot_grid(layout("UTC"), MONDAY, MONDAY, [], [inside], now=LONG_AGO)
    assert [s.state for s in grid] == [SlotState.BUSY_IN_OUTLOOK, SlotState.AVAILABLE, SlotState.AVAILABLE]


def test_opening_intervals_given_afternoon_first_still_show_the_morning_booked() -> None:
    # The catalog keeps a day's intervals in the order the admin entered them (it only checks they do not overlap).
    hours = OpeningHours.model_validate({"monday": [{"open": "13:00", "close": "15:00"},
                                                    {"open": "08:00", "close": "10:00"}]})
    morning = Booked(utc(MONDAY, 8), utc(MONDAY, 9), "/src", "b1", "Ada Lovelace", None)
    meeting = Busy(utc(MONDAY, 9), utc(MONDAY, 10), None)
    grid = slot_grid(layout("UTC", hours=hours), MONDAY, MONDAY, [morning], [meeting], now=LONG_AGO)
    assert [(s.start.hour, s.state) for s in grid] == [
        (8, SlotState.BOOKED), (9, SlotState.BUSY_IN_OUTLOOK), (13, SlotState.AVAILABLE), (14, SlotState.AVAILABLE)]


@pytest.mark.parametrize("day", [date(9999, 12, 31), date(1, 1, 1)])
def test_dates_at_the_calendar_edges_are_refused_not_overflowed(day: date) -> None:
    # their local midnights do not exist as UTC datetimes (OverflowError, a 500) in zones away from UTC
    with pytest.raises(RangeError, match="between 0001-01-02 and 9999-12-30"):
        check_range(day, day, 31)
