"""The busy picture rules, without infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spacesync.common.events import BusyPeriod, ExchangeConnection, LocationState, OutlookBusyStatus, SpaceState
from spacesync.common.events.catalog import OpeningHours
from spacesync.exchange_poller.domain import (
    Meeting,
    NamePolicy,
    counted,
    digest,
    merged,
    next_sequence,
    organizer_name,
    picture,
    rooms,
    window,
)

T = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
ON = NamePolicy(populate=True, since=T)


def test_the_window_runs_from_the_start_of_yesterday_to_the_horizon() -> None:
    span = window(T, 120)
    assert span.start == datetime(2026, 3, 9, tzinfo=UTC)
    assert span.end == datetime(2026, 3, 10, tzinfo=UTC) + timedelta(days=120)
    assert window(T.replace(hour=23), 120) == span  # it moves once a day


@pytest.mark.parametrize(("status", "counts"), [("Busy", True), ("OOF", True), ("WorkingElsewhere", True),
                                                ("Tentative", False), ("Free", False), ("NoData", False)])
def test_only_busy_oof_and_working_elsewhere_count(status: str, counts: bool) -> None:
    assert (counted(T, T + timedelta(hours=1), status) is not None) is counts


def test_our_writers_stamped_appointments_never_count() -> None:
    assert counted(T, T + timedelta(hours=1), "Busy", stamp="/spacesync/booking/b/s") is None


def test_names_only_with_the_option_on_and_for_meetings_first_seen_after_it() -> None:
    assert organizer_name("Jane", T, NamePolicy(populate=False, since=T)) is None
    assert organizer_name("Jane", T - timedelta(seconds=1), ON) is None
    assert organizer_name("Jane", None, ON) is None
    assert organizer_name("Jane  Librarian", T, ON) == "Jane Librarian"
    assert organizer_name("jane@example.org", T, ON) is None  # password authentication: names, never addresses
    assert organizer_name("x" * 300, T, ON) == "x" * 200


def test_the_picture_is_sorted_and_named_per_item() -> None:
    later = Meeting(T + timedelta(days=1), T + timedelta(days=1, hours=1), OutlookBusyStatus.OOF, "b", "Bob")
    sooner = Meeting(T, T + timedelta(hours=1), OutlookBusyStatus.BUSY, "a", "Ann")
    busy = picture([later, sooner], {"a": T, "b": T - timedelta(days=1)}, ON)
    assert [(p.start, p.organizer) for p in busy] == [(T, "Ann"), (later.start, None)]


def test_the_digest_changes_with_what_a_reader_sees() -> None:
    meeting = Meeting(T, T + timedelta(hours=1), OutlookBusyStatus.BUSY, "a", "Ann")
    span = window(T, 120)
    plain = digest("r@x.org", span, picture([meeting], {"a": T}, NamePolicy()))
    assert plain == digest("r@x.org", span, picture([meeting], {"a": T}, NamePolicy()))
    assert plain != digest("r@x.org", span, picture([meeting], {"a": T}, ON))  # a name appears
    assert plain != digest("r@x.org", window(T + timedelta(days=1), 120), picture([meeting], {}, NamePolicy()))
    assert plain != digest(None, span, picture([meeting], {}, NamePolicy()))


def test_the_sequence_always_moves_on() -> None:
    epoch_ms = int(T.timestamp() * 1000)
    assert next_sequence(None, T) == epoch_ms
    assert next_sequence(epoch_ms + 5, T) == epoch_ms + 6  # a clock that went back
    assert next_sequence(7, T) == epoch_ms  # a rebuilt database


def test_rooms_are_the_paired_spaces_of_connected_locations() -> None:
    connection = ExchangeConnection(server="mail.example.org", username="svc", password_encrypted="tok")
    connected = LocationState(location_id="L1", version=1, name="Main", timezone="UTC", updated_at=T,
                              exchange=connection)
    disconnected = connected.model_copy(update={"location_id": "L2", "exchange": None})

    def space(space_id: str, location_id: str, mailbox: str | None) -> SpaceState:
        return SpaceState(space_id=space_id, location_id=location_id, category_id="C", version=1, name="Room",
                          slot_minutes=30, max_booking_minutes=60, opening_hours=OpeningHours(), updated_at=T,
                          exchange_resource=mailbox, paired_at=T if mailbox else None)

    found = rooms([connected, disconnected], [space("S1", "L1", "Room-1@x.org"), space("S2", "L1", None),
                                              space("S3", "L2", "room-3@x.org"), space("S4", "L9", "r@x.org")])
    assert list(found) == ["S1"]
    assert found["S1"].mailbox == "room-1@x.org"
    assert found["S1"].connection == connection


def test_merging_joins_touching_periods_of_the_same_status_and_organizer_only() -> None:
    def period(start: int, end: int, status: str = "Busy", organizer: str | None = None) -> BusyPeriod:
        return BusyPeriod(start=T + timedelta(minutes=start), end=T + timedelta(minutes=end),
                          status=OutlookBusyStatus(status), organizer=organizer)

    busy = [period(0, 15), period(15, 30), period(20, 40), period(40, 50, "OOF"), period(50, 60, organizer="Ada"),
            period(60, 70, organizer="Ada"), period(90, 100)]

    assert merged(busy) == [period(0, 40), period(40, 50, "OOF"), period(50, 70, organizer="Ada"), period(90, 100)]
