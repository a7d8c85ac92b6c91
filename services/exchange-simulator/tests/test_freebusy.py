"""Free/busy (GetServerTimeZones + GetUserAvailability) through real exchangelib."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from ews_helpers import PASSWORD, SEED, AccountFactory, requests_seen
from exchangelib import IMPERSONATION, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorMailboxDataArrayTooBig,
    ErrorMailRecipientNotFound,
    ErrorNoFreeBusyAccess,
    ErrorTimeIntervalTooBig,
)
from exchangelib.properties import FreeBusyView, FreeBusyViewOptions, MailboxData, TimeWindow, TimeZone
from exchangelib.services import GetUserAvailability
from lxml import etree

from spacesync.exchange_simulator.calendar import CalendarItem as StoredItem
from spacesync.exchange_simulator.calendar import FreeBusy, Person, Recurrence
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.ews.soap import SOAP, M, T
from spacesync.exchange_simulator.seed import Seed

ROOM1, ROOM2, ROOM3 = "room1@example.org", "room2@example.org", "room3@example.org"
BERLIN = EWSTimeZone("Europe/Berlin")
EXTRA_ROOMS = [f"r{number}@example.org" for number in range(250)]


@pytest.fixture
def seed() -> Seed:
    """The shared test seed plus 250 more rooms, for the batching test."""
    extra = [{"smtp": smtp, "name": f"Room {smtp}", "kind": "room"} for smtp in EXTRA_ROOMS]
    return Seed.model_validate({**SEED, "mailboxes": [*SEED["mailboxes"], *extra]})


def _store(simulator: EmbeddedSimulator, mailbox: str, *items: StoredItem) -> list[str]:
    """Creates items as Outlook would, on the simulator's loop (its state is only touched there)."""

    async def create() -> list[str]:
        return [simulator.state.calendars.create(mailbox, item).id for item in items]

    created: list[str] = simulator.call(create())
    return created


def _item(start: dt.datetime, minutes: int = 30, free_busy: FreeBusy = FreeBusy.BUSY, **fields: Any) -> StoredItem:
    begin = start.astimezone(dt.UTC)
    return StoredItem(id="", change_key="", mailbox="", start=begin, end=begin + dt.timedelta(minutes=minutes),
                      free_busy=free_busy, origin="outlook", **fields)


def _berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))


def _day(zone: EWSTimeZone = BERLIN, year: int = 2031, month: int = 3, day: int = 10,
         days: int = 1) -> tuple[EWSDateTime, EWSDateTime]:
    start = EWSDateTime(year, month, day, tzinfo=zone)
    return start, start + dt.timedelta(days=days)  # local midnight `days` later, however long the days are


def _free_busy(room: Any, mailboxes: list[str], window: tuple[EWSDateTime, EWSDateTime], **options: Any) -> list[Any]:
    start, end = window
    return list(room.protocol.get_free_busy_info(
        accounts=[(mailbox, "Room", False) for mailbox in mailboxes], start=start, end=end, **options))


def _local(value: dt.datetime) -> str:
    return value.replace(tzinfo=None).isoformat()


def _events(view: FreeBusyView) -> list[tuple[str, str, str]]:
    return [(_local(event.start), _local(event.end), event.busy_type) for event in view.calendar_events or []]


def test_each_busy_type_is_listed_and_free_is_not(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM1, *(
        _item(_berlin(2031, 3, 10, hour), free_busy=status, subject=f"{status.value} meeting")
        for hour, status in [(8, FreeBusy.FREE), (9, FreeBusy.TENTATIVE), (10, FreeBusy.BUSY), (11, FreeBusy.OOF),
                             (12, FreeBusy.WORKING_ELSEWHERE)]))
    [view] = _free_busy(account(), [ROOM1], _day())
    assert view.view_type == "DetailedMerged"
    assert _events(view) == [
        ("2031-03-10T09:00:00", "2031-03-10T09:30:00", "Tentative"),
        ("2031-03-10T10:00:00", "2031-03-10T10:30:00", "Busy"),
        ("2031-03-10T11:00:00", "2031-03-10T11:30:00", "OOF"),
        ("2031-03-10T12:00:00", "2031-03-10T12:30:00", "WorkingElsewhere"),
    ]
    assert [event.details.subject for event in view.calendar_events] == [
        "Tentative meeting", "Busy meeting", "OOF meeting", "WorkingElsewhere meeting"]
    # 48 half hours; WorkingElsewhere has no digit of its own and merges as Busy.
    assert view.merged == "0" * 18 + "10203020" + "0" * 22


def test_merged_digits_take_the_strongest_status_and_follow_the_interval(account: AccountFactory,
                                                                          simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM1,
           _item(_berlin(2031, 3, 10, 9), minutes=120, free_busy=FreeBusy.TENTATIVE),
           _item(_berlin(2031, 3, 10, 9, 30), minutes=45, free_busy=FreeBusy.OOF),
           _item(_berlin(2031, 3, 10, 10, 15), minutes=10, free_busy=FreeBusy.BUSY))
    [hourly] = _free_busy(account(), [ROOM1], _day(), merged_free_busy_interval=60)
    assert hourly.merged == "0" * 9 + "33" + "0" * 13
    [quarterly] = _free_busy(account(), [ROOM1], _day(), merged_free_busy_interval=15)
    assert quarterly.merged[36:44] == "11333211"


def test_views_decide_what_is_sent(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM1, _item(_berlin(2031, 3, 10, 10), subject="Standup", location="Room 1"))
    room = account()
    [merged_only] = _free_busy(room, [ROOM1], _day(), requested_view="MergedOnly")
    assert (merged_only.view_type, merged_only.calendar_events) == ("MergedOnly", None)
    assert merged_only.merged[20] == "2"
    [plain] = _free_busy(room, [ROOM1], _day(), requested_view="FreeBusy")
    assert (plain.view_type, plain.merged) == ("FreeBusy", None)
    assert [event.details for event in plain.calendar_events] == [None]
    [detailed] = _free_busy(room, [ROOM1], _day(), requested_view="Detailed")
    assert (detailed.view_type, detailed.merged) == ("Detailed", None)
    details = detailed.calendar_events[0].details
    assert (details.subject, details.location, details.is_recurring, details.is_meeting) == (
        "Standup", "Room 1", False, False)


def test_recurring_weekly_series_gives_one_event_per_occurrence(account: AccountFactory,
                                                                 simulator: EmbeddedSimulator) -> None:
    # Mondays 10:00 Berlin time; Berlin switches to summer time on 30 March 2031.
    weekly = Recurrence("weekly", weekdays=(0,), count=6, time_zone="Europe/Berlin")
    [series_id] = _store(simulator, ROOM1, _item(_berlin(2031, 3, 3, 10), minutes=60, subject="Weekly",
                                                 recurrence=weekly, organizer=Person("Alice", "alice@example.org")))
    [view] = _free_busy(account(), [ROOM1], _day(month=3, day=1, days=31))
    assert _events(view) == [(f"2031-03-{day:02d}T10:00:00", f"2031-03-{day:02d}T11:00:00", "Busy")
                             for day in (3, 10, 17, 24, 31)]
    assert {(e.details.id, e.details.is_recurring, e.details.is_meeting) for e in view.calendar_events} == {
        (series_id, True, True)}


# Each zone's 2031 daylight saving change falls inside its four-day window (India has none).
ZONE_WINDOWS = [
    pytest.param("Europe/Berlin", (2031, 3, 28), id="berlin-spring"),
    pytest.param("Europe/Berlin", (2031, 10, 24), id="berlin-autumn"),
    pytest.param("America/New_York", (2031, 3, 7), id="new-york"),
    pytest.param("Australia/Sydney", (2031, 4, 4), id="sydney"),
    pytest.param("Asia/Kolkata", (2031, 3, 28), id="kolkata"),
    pytest.param("UTC", (2031, 3, 28), id="utc"),
]


@pytest.mark.parametrize(("zone_name", "first_day"), ZONE_WINDOWS)
def test_times_are_local_to_the_requested_zone_across_dst(account: AccountFactory, simulator: EmbeddedSimulator,
                                                          zone_name: str, first_day: tuple[int, int, int]) -> None:
    zone = ZoneInfo(zone_name)
    window_start = dt.datetime(*first_day, tzinfo=zone)
    # An hour-long item every five hours, stored in UTC, across the whole window.
    starts = [(window_start + dt.timedelta(hours=1 + 5 * n)).astimezone(dt.UTC) for n in range(19)]
    _store(simulator, ROOM2, *(_item(start, minutes=60) for start in starts))
    window = _day(EWSTimeZone(zone_name), *first_day, days=4)
    [view] = _free_busy(account(), [ROOM2], window)
    expected = [(_local(start.astimezone(zone)), _local((start + dt.timedelta(hours=1)).astimezone(zone)), "Busy")
                for start in starts]
    assert _events(view) == expected
    # exchangelib attaches the requested zone: the absolute instants are right too.
    assert [event.start for event in view.calendar_events] == starts


def test_an_event_across_the_change_keeps_its_length(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    # 00:30-02:30 UTC on 30 March 2031: 01:30 winter time to 04:30 summer time in Berlin.
    _store(simulator, ROOM1, _item(dt.datetime(2031, 3, 30, 0, 30, tzinfo=dt.UTC), minutes=120))
    [view] = _free_busy(account(), [ROOM1], _day(day=30))
    assert _events(view) == [("2031-03-30T01:30:00", "2031-03-30T04:30:00", "Busy")]
    # That day has 23 hours (46 half hours); the two hours of the event are slots 3-6.
    assert view.merged == "000" + "2222" + "0" * 39


def test_unknown_mailbox_is_an_error_object_among_the_answers(account: AccountFactory,
                                                               simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM2, _item(_berlin(2031, 3, 10, 10)))
    answers = _free_busy(account(), [ROOM1, "nobody@example.org", ROOM2], _day())
    assert isinstance(answers[0], FreeBusyView)
    assert isinstance(answers[1], ErrorMailRecipientNotFound)
    assert "nobody@example.org" in str(answers[1])
    assert isinstance(answers[2], FreeBusyView)
    assert _events(answers[2]) == [("2031-03-10T10:00:00", "2031-03-10T10:30:00", "Busy")]


@pytest.mark.parametrize(("user", "details"), [
    ("DOMAIN\\writer", True),
    ("DOMAIN\\reader", True),
    ("DOMAIN\\fbonly", False),
])
def test_details_need_read_access(account: AccountFactory, simulator: EmbeddedSimulator, user: str,
                                  details: bool) -> None:
    _store(simulator, ROOM1, _item(_berlin(2031, 3, 10, 10), subject="Board meeting", location="Room 1",
                                   reminder_is_set=True, sensitivity="Private"))
    [view] = _free_busy(account(user=user), [ROOM1], _day())
    assert _events(view) == [("2031-03-10T10:00:00", "2031-03-10T10:30:00", "Busy")]
    event = view.calendar_events[0]
    if details:
        assert view.view_type == "DetailedMerged"
        assert (event.details.subject, event.details.location) == ("Board meeting", "Room 1")
        assert (event.details.is_reminder_set, event.details.is_private, event.details.is_exception) == (
            True, True, False)
    else:
        assert view.view_type == "FreeBusyMerged"  # Exchange says which view it gave
        assert event.details is None
    assert view.merged[20] == "2"


def test_no_free_busy_permission_is_raised_by_exchangelib(account: AccountFactory,
                                                          simulator: EmbeddedSimulator) -> None:
    # Per mailbox, Exchange answers ErrorNoFreeBusyAccess; exchangelib yields the answers before it and then
    # raises it (only ErrorMailRecipientNotFound is handed back as an object).
    answers = account(user="DOMAIN\\mixed").protocol.get_free_busy_info(
        accounts=[(ROOM1, "Room", False), (ROOM2, "Room", False), (ROOM3, "Room", False)],
        start=_day()[0], end=_day()[1])
    first, second = next(answers), next(answers)
    assert (first.view_type, second.view_type) == ("DetailedMerged", "FreeBusyMerged")
    with pytest.raises(ErrorNoFreeBusyAccess):
        next(answers)
    with pytest.raises(ErrorNoFreeBusyAccess):
        _free_busy(account(user="DOMAIN\\nobody"), [ROOM1], _day())


def test_impersonation_account_sees_free_busy_like_any_user(account: AccountFactory,
                                                            simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM2, _item(_berlin(2031, 3, 10, 10), subject="Secret"))
    room = account(ROOM1, user="imp@example.org", access=IMPERSONATION)
    [view] = _free_busy(room, [ROOM2], _day())
    assert view.view_type == "FreeBusyMerged"
    assert [event.details for event in view.calendar_events] == [None]
    with pytest.raises(ErrorNoFreeBusyAccess):
        _free_busy(room, [ROOM3], _day())  # its rights name room3 "none"


def test_250_mailboxes_take_three_requests_answered_in_order(account: AccountFactory,
                                                             simulator: EmbeddedSimulator) -> None:
    async def fill() -> None:
        for number, smtp in enumerate(EXTRA_ROOMS):
            simulator.state.calendars.create(smtp, _item(_berlin(2031, 3, 10, 8 + number % 10), subject=smtp))

    simulator.call(fill())
    answers = _free_busy(account(), EXTRA_ROOMS, _day())
    assert requests_seen(simulator.state, operation="GetUserAvailabilityRequest") == 3
    assert len(answers) == 250
    assert [view.calendar_events[0].details.subject for view in answers] == EXTRA_ROOMS
    assert [view.calendar_events[0].start.hour for view in answers] == [8 + n % 10 for n in range(250)]


def test_more_than_100_mailboxes_in_one_request_is_refused(account: AccountFactory) -> None:
    room = account()
    start, end = _day()
    definition = next(iter(room.protocol.get_timezones(timezones=[BERLIN], return_full_timezone_data=True)))
    service = GetUserAvailability(protocol=room.protocol, chunk_size=150)
    with pytest.raises(ErrorMailboxDataArrayTooBig):
        list(service.call(
            tzinfo=BERLIN,
            mailbox_data=[MailboxData(email=smtp, attendee_type="Room", exclude_conflicts=False)
                          for smtp in EXTRA_ROOMS[:101]],
            timezone=TimeZone.from_server_timezone(tz_definition=definition, for_year=2031),
            free_busy_view_options=FreeBusyViewOptions(time_window=TimeWindow(start=start, end=end),
                                                       merged_free_busy_interval=30, requested_view="Detailed"),
        ))


def test_too_long_a_window_is_refused(account: AccountFactory) -> None:
    with pytest.raises(ErrorTimeIntervalTooBig):
        _free_busy(account(), [ROOM1], _day(days=70))


def _availability_request(options: str, zone: str = "") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="{SOAP}" xmlns:m="{M}" xmlns:t="{T}">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body><m:GetUserAvailabilityRequest>{zone}
    <m:MailboxDataArray><t:MailboxData><t:Email><t:Address>{ROOM1}</t:Address></t:Email>
      <t:AttendeeType>Room</t:AttendeeType></t:MailboxData></m:MailboxDataArray>
    <t:FreeBusyViewOptions>{options}</t:FreeBusyViewOptions>
  </m:GetUserAvailabilityRequest></s:Body>
</s:Envelope>"""


def _post(simulator: EmbeddedSimulator, body: str) -> tuple[int, etree._Element]:
    answer = requests.post(simulator.ews_url, data=body.encode(), auth=("DOMAIN\\writer", PASSWORD), timeout=10,
                           headers={"Content-Type": "text/xml; charset=utf-8"})
    return answer.status_code, etree.fromstring(answer.content)


WINDOW = ("<t:TimeWindow><t:StartTime>2031-03-10T00:00:00</t:StartTime>"
          "<t:EndTime>2031-03-11T00:00:00</t:EndTime></t:TimeWindow>")


@pytest.mark.parametrize(("options", "code"), [
    pytest.param(WINDOW + "<t:RequestedView>None</t:RequestedView>", "ErrorInvalidFreeBusyViewType", id="view"),
    pytest.param(WINDOW + "<t:MergedFreeBusyIntervalInMinutes>2</t:MergedFreeBusyIntervalInMinutes>"
                 "<t:RequestedView>MergedOnly</t:RequestedView>", "ErrorInvalidMergedFreeBusyInterval",
                 id="interval"),
    pytest.param(WINDOW.replace("2031-03-11", "2031-03-09") + "<t:RequestedView>Detailed</t:RequestedView>",
                 "ErrorInvalidTimeInterval", id="backwards"),
])
def test_request_wide_problems_are_soap_faults(simulator: EmbeddedSimulator, options: str, code: str) -> None:
    status, root = _post(simulator, _availability_request(options))
    assert status == 500
    assert root.findtext(".//{*}ResponseCode") == code


def test_naive_window_times_are_read_in_the_request_zone(simulator: EmbeddedSimulator) -> None:
    _store(simulator, ROOM1, _item(dt.datetime(2031, 3, 10, 23, 30, tzinfo=dt.UTC)))
    tokyo = ("<t:TimeZone><t:Bias>-540</t:Bias>"
             "<t:StandardTime><t:Bias>0</t:Bias><t:Time>00:00:00</t:Time><t:DayOrder>1</t:DayOrder>"
             "<t:Month>0</t:Month><t:DayOfWeek>Sunday</t:DayOfWeek></t:StandardTime>"
             "<t:DaylightTime><t:Bias>0</t:Bias><t:Time>00:00:00</t:Time><t:DayOrder>1</t:DayOrder>"
             "<t:Month>0</t:Month><t:DayOfWeek>Sunday</t:DayOfWeek></t:DaylightTime></t:TimeZone>")
    window = WINDOW.replace("2031-03-10T00", "2031-03-11T00").replace("2031-03-11T00:00:00</t:End",
                                                                      "2031-03-12T00:00:00</t:End")
    status, root = _post(simulator, _availability_request(window + "<t:RequestedView>FreeBusy</t:RequestedView>",
                                                          zone=tokyo))
    assert status == 200
    assert [e.text for e in root.iter(f"{{{T}}}StartTime", f"{{{T}}}EndTime")] == [
        "2031-03-11T08:30:00", "2031-03-11T09:00:00"]


def test_server_time_zones_round_trip_through_exchangelib(account: AccountFactory) -> None:
    protocol = account().protocol
    every = list(protocol.get_timezones(return_full_timezone_data=True))
    ids = {zone.id for zone in every}
    assert len(every) == len(ids) >= 139
    assert {"UTC", "W. Europe Standard Time", "GMT Standard Time", "Eastern Standard Time", "Pacific Standard Time",
            "Central Standard Time", "Mountain Standard Time", "AUS Eastern Standard Time", "Romance Standard Time",
            "Central Europe Standard Time", "Tokyo Standard Time", "India Standard Time",
            "China Standard Time"} <= ids
    for zone, offsets in [("Europe/Berlin", (-60, -60)), ("America/New_York", (300, -60)),
                          ("Asia/Tokyo", (-540, 0))]:
        [definition] = protocol.get_timezones(timezones=[EWSTimeZone(zone)], return_full_timezone_data=True)
        converted = TimeZone.from_server_timezone(tz_definition=definition, for_year=2031)
        assert (converted.bias, converted.daylight_time.bias) == offsets
        assert converted.to_server_timezone(timezones=every, for_year=2031) is not None
    names = list(protocol.get_timezones(timezones=[BERLIN], return_full_timezone_data=False))
    assert [(zone.id, zone.periods) for zone in names] == [("W. Europe Standard Time", None)]
