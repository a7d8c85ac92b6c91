"""Calendar items through real exchangelib: create, update, get, views, extended properties, delete, errors."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from ews_helpers import AUTH_TYPES, AccountFactory, requests_seen
from exchangelib import IMPERSONATION, CalendarItem, EWSDateTime, EWSTimeZone, ExtendedProperty
from exchangelib.errors import ErrorAccessDenied, ErrorIrresolvableConflict, ErrorItemNotFound
from exchangelib.fields import MONDAY, WEDNESDAY, FieldPath
from exchangelib.items import SEND_TO_NONE
from exchangelib.recurrence import NumberedPattern, WeeklyPattern
from exchangelib.recurrence import Recurrence as Recurrence_

from spacesync.exchange_simulator.calendar import CalendarItem as StoredItem
from spacesync.exchange_simulator.calendar import FreeBusy, Person, Recurrence
from spacesync.exchange_simulator.embedded import EmbeddedSimulator

UTC = EWSTimeZone("UTC")
BERLIN = EWSTimeZone("Europe/Berlin")


class SlotId(ExtendedProperty):  # type: ignore[misc]  # exchangelib is untyped
    distinguished_property_set_id = "PublicStrings"
    property_name = "X-Spacesync-Slot-Id"
    property_type = "String"


@pytest.fixture(autouse=True, scope="module")
def _register_slot_id() -> object:
    CalendarItem.register("slot_id", SlotId)
    yield
    CalendarItem.deregister("slot_id")


def at(hour: int, day: int = 10, zone: EWSTimeZone = UTC) -> EWSDateTime:
    return EWSDateTime(2031, 3, day, hour, 0, tzinfo=zone)


def _booking(account: object, subject: str = "Booking 42", start: EWSDateTime | None = None) -> CalendarItem:
    item = CalendarItem(
        folder=account.calendar, subject=subject, body="Patron: Ada Lovelace", start=start or at(9),  # type: ignore[attr-defined]
        end=(start or at(9)) + dt.timedelta(hours=1), legacy_free_busy_status="Busy", location="Room 1",
    )
    item.slot_id = "slot-1"
    item.save(send_meeting_invitations=SEND_TO_NONE)
    return item


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_create_update_get_delete(account: AccountFactory, auth: str) -> None:
    room = account(auth=auth)
    item = _booking(room, start=at(10, zone=BERLIN))
    first_key = item.changekey
    fetched = room.calendar.get(id=item.id)
    assert (fetched.subject, fetched.legacy_free_busy_status, fetched.location) == ("Booking 42", "Busy", "Room 1")
    assert fetched.start == at(9)  # 10:00 Berlin is 09:00 UTC in March
    assert fetched.organizer.email_address == "room1@example.org"
    assert fetched.slot_id == "slot-1"

    item.subject = "Booking 42 (moved)"
    item.end = item.end + dt.timedelta(hours=1)
    item.save(update_fields=["subject", "end"], send_meeting_invitations=SEND_TO_NONE)
    assert item.changekey != first_key
    fetched = room.calendar.get(id=item.id)
    assert fetched.subject == "Booking 42 (moved)"
    assert fetched.end - fetched.start == dt.timedelta(hours=2)

    item.delete(send_meeting_cancellations=SEND_TO_NONE)
    with pytest.raises(ErrorItemNotFound):
        room.calendar.get(id=fetched.id)


def test_stale_change_key_and_missing_item(account: AccountFactory) -> None:
    room = account()
    item = _booking(room)
    stale = CalendarItem(account=room, folder=room.calendar, id=item.id, changekey=item.changekey,
                         subject="first writer")
    stale.save(update_fields=["subject"])
    late = CalendarItem(account=room, folder=room.calendar, id=item.id, changekey=item.changekey, subject="second")
    with pytest.raises(ErrorIrresolvableConflict):
        late.save(update_fields=["subject"])
    item.delete()
    with pytest.raises(ErrorItemNotFound):
        stale.save(update_fields=["subject"])
    with pytest.raises(ErrorItemNotFound):
        stale.delete()


def test_view_expands_recurring_outlook_meetings(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    async def outlook_meeting() -> None:
        simulator.state.calendars.create("room1@example.org", StoredItem(
            id="", change_key="", mailbox="room1@example.org", subject="Staff meeting",
            start=dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC), end=dt.datetime(2031, 3, 3, 10, tzinfo=dt.UTC),
            free_busy=FreeBusy.OOF, organizer=Person("Alice Organizer", "alice@example.org"), origin="outlook",
            recurrence=Recurrence("weekly", count=4, time_zone="Europe/Berlin"),
        ))

    simulator.call(outlook_meeting())
    room = account()
    _booking(room, start=at(12, day=10))
    view = list(room.calendar.view(start=at(0, day=1), end=at(0, day=31)))
    staff = [v for v in view if v.subject == "Staff meeting"]
    assert [v.start.day for v in staff] == [3, 10, 17, 24]
    assert all(v.type == "Occurrence" and v.legacy_free_busy_status == "OOF" for v in staff)
    assert all(v.organizer.name == "Alice Organizer" for v in staff)
    assert len(view) == 5
    # The last occurrence is after the DST change (30 March): still 10:00 in Berlin.
    assert staff[-1].start.astimezone(BERLIN).hour == 10
    only = list(room.calendar.view(start=at(0, day=1), end=at(0, day=31)).only("subject", "start", "end",
                                                                                  "legacy_free_busy_status"))
    assert len(only) == 5


def test_find_item_gives_the_organizer_s_name_only(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    async def outlook_meeting() -> None:
        simulator.state.calendars.create("room1@example.org", StoredItem(
            id="", change_key="", mailbox="room1@example.org", subject="Staff meeting",
            start=dt.datetime(2031, 3, 5, 9, tzinfo=dt.UTC), end=dt.datetime(2031, 3, 5, 10, tzinfo=dt.UTC),
            free_busy=FreeBusy.BUSY, organizer=Person("Alice Organizer", "alice@example.org"), origin="outlook"))

    simulator.call(outlook_meeting())
    room = account()
    # exchangelib fetches a mailbox field with GetItem; a non-complex copy of the field asks FindItem for it.
    organizer = copy.copy(CalendarItem.get_field_by_fieldname("organizer"))
    organizer.is_complex = False
    query = room.calendar.view(start=at(0, day=5), end=at(0, day=6)).only("subject")
    query.only_fields = (*query.only_fields, FieldPath(field=organizer))
    [found] = list(query)
    assert (found.organizer.name, found.organizer.email_address) == ("Alice Organizer", None)
    assert requests_seen(simulator.state, "GetItem") == 0
    assert room.calendar.get(id=found.id).organizer.email_address == "alice@example.org"  # GetItem: the address too


def test_filter_on_extended_property(account: AccountFactory) -> None:
    room = account()
    _booking(room)
    other = _booking(room, subject="Other", start=at(14))
    other.slot_id = "slot-2"
    other.save(update_fields=["slot_id"])
    found = list(room.calendar.filter(slot_id="slot-2"))
    assert [f.subject for f in found] == ["Other"]
    assert room.calendar.filter(slot_id="slot-9").exists() is False
    assert room.calendar.filter(slot_id="slot-1").count() == 1


def test_paging_through_many_items(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    room = account()
    for hour in range(8, 20):
        _booking(room, subject=f"B{hour}", start=at(hour))
    assert room.calendar.all().count() == 12
    paged = room.calendar.all().only("subject")
    paged.page_size = 5
    assert sorted(item.subject for item in paged) == sorted(f"B{hour}" for hour in range(8, 20))
    assert requests_seen(simulator.state, operation="FindItem") >= 4  # 1 count + 3 pages of 5


def test_rights_on_items(account: AccountFactory) -> None:
    writer = account()
    item = _booking(writer)
    reader = account(user="DOMAIN\\reader")
    assert reader.calendar.get(id=item.id).subject == "Booking 42"
    with pytest.raises(ErrorAccessDenied):
        _booking(reader)
    with pytest.raises(ErrorAccessDenied):
        CalendarItem(account=reader, folder=reader.calendar, id=item.id, changekey=item.changekey).delete()


def test_impersonation_writes_as_the_room(account: AccountFactory) -> None:
    room = account("room2@example.org", user="imp@example.org", access=IMPERSONATION)
    item = _booking(room)
    assert room.calendar.get(id=item.id).organizer.email_address == "room2@example.org"


def test_recurring_series_created_through_ews(account: AccountFactory) -> None:
    room = account()
    series = CalendarItem(
        folder=room.calendar, subject="Weekly class", start=at(10, day=3, zone=BERLIN),
        end=at(11, day=3, zone=BERLIN), legacy_free_busy_status="Busy",
        recurrence=Recurrence_(pattern=WeeklyPattern(interval=1, weekdays=[MONDAY, WEDNESDAY]),
                               boundary=NumberedPattern(start=dt.date(2031, 3, 3), number=4)),
    )
    series.save(send_meeting_invitations=SEND_TO_NONE)
    view = list(room.calendar.view(start=at(0, day=1), end=at(0, day=31)))
    assert [(v.start.astimezone(BERLIN).day, v.start.astimezone(BERLIN).hour) for v in view] == [
        (3, 10), (5, 10), (10, 10), (12, 10)]
    master = room.calendar.get(id=series.id)
    assert master.type == "RecurringMaster"
    assert master.recurrence.boundary.number == 4
