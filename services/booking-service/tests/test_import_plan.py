"""The 'Run the Import' comparison, pure: what is already in the calendar, what would be created, what collides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from spacesync.booking_service.import_plan import SlotToImport, plan_import
from spacesync.common.exchange import CalendarEntry, slot_stamp

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
SOURCE = "/spacesync/booking-service"


def stamp_of(slot: SlotToImport, source: str = SOURCE) -> str:
    return slot_stamp(source, str(slot.booking_id), str(slot.slot_id))


def slot(hour: int, minutes: int = 60) -> SlotToImport:
    start = T0 + timedelta(hours=hour)
    return SlotToImport(uuid.uuid4(), uuid.uuid4(), start, start + timedelta(minutes=minutes))


def entry(hour: float, minutes: int = 60, *, busy: str = "Busy", stamp: str | None = None,
          subject: str = "Team meeting") -> CalendarEntry:
    start = T0 + timedelta(hours=hour)
    return CalendarEntry(item_id=f"item-{hour}-{busy}", start=start, end=start + timedelta(minutes=minutes),
                         subject=subject, busy_status=busy, organizer="Alice Organizer", slot_id=stamp,
                         booking_id=None)


def test_empty_calendar_creates_every_slot() -> None:
    plan = plan_import([slot(0), slot(2)], [], SOURCE)
    assert (plan.would_create, plan.already_there, plan.collisions) == (2, 0, [])


def test_a_stamped_appointment_counts_as_already_there_and_never_collides() -> None:
    stamped, other = slot(0), slot(2)
    plan = plan_import([stamped, other], [entry(0, stamp=stamp_of(stamped))], SOURCE)
    assert (plan.would_create, plan.already_there, plan.collisions) == (1, 1, [])


def test_stamp_matches_whatever_the_letter_case_of_the_id() -> None:
    stamped = slot(0)
    plan = plan_import([stamped], [entry(5, stamp=stamp_of(stamped).upper())], SOURCE)
    assert plan.already_there == 1


def test_another_slots_stamped_appointment_is_ours_not_a_collision() -> None:
    mine = slot(0)
    same_slot_of_another_source = stamp_of(mine, "/kiosk/lobby")
    plan = plan_import([mine], [entry(0, stamp=str(uuid.uuid4())), entry(0, stamp=same_slot_of_another_source)],
                       SOURCE)
    assert (plan.would_create, plan.collisions) == (1, [])


def test_busy_oof_and_working_elsewhere_collide_free_and_tentative_do_not() -> None:
    first = slot(0)
    calendar = [entry(0, busy=status) for status in ("Busy", "OOF", "WorkingElsewhere", "Free", "Tentative")]
    plan = plan_import([first], calendar, SOURCE)
    assert [c.appointment.busy_status for c in plan.collisions] == ["Busy", "OOF", "WorkingElsewhere"]
    assert all(c.slot == first for c in plan.collisions)
    assert plan.would_create == 1  # a collision is still written: the admin is told to move one of the two


def test_overlap_is_half_open_back_to_back_is_no_collision() -> None:
    booked = slot(2)  # 11:00-12:00
    calendar = [entry(1), entry(3), entry(2.5, 15, subject="overlaps"), entry(1.5, 180, subject="covers")]
    plan = plan_import([booked], calendar, SOURCE)
    assert sorted(c.appointment.subject or "" for c in plan.collisions) == ["covers", "overlaps"]


def test_collisions_are_listed_per_slot_and_appointment_in_time_order() -> None:
    early, late = slot(0, 120), slot(4)
    calendar = [entry(4.5, 30, subject="late"), entry(1, subject="second"), entry(0, 30, subject="first")]
    plan = plan_import([early, late], calendar, SOURCE)
    assert [(c.slot, c.appointment.subject) for c in plan.collisions] == [
        (early, "first"), (early, "second"), (late, "late")]
