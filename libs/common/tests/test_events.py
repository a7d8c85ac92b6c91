"""Event contracts and CloudEvents headers: what a consumer accepts, and the reason it gives when it does not."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from spacesync.common.events import (
    EVENT_TYPES,
    BookingState,
    CloudEvent,
    InvalidEvent,
    OpeningHours,
    SpaceState,
    Topic,
    parse_event,
)


def booking_payload(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "booking_id": "b-1", "version": 1, "status": "confirmed",
        "patron": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
        "slots": [{"slot_id": "s-1", "space_id": "room-1", "start": "2026-12-01T10:00:00+01:00",
                   "end": "2026-12-01T11:00:00+01:00", "status": "confirmed"}],
        "created_at": "2026-11-30T09:00:00Z", "updated_at": "2026-11-30T09:00:00Z",
    }
    payload.update(overrides)
    return payload


def headers(**overrides: str) -> dict[str, str]:
    event = CloudEvent(source="/panel/7", type="booking.created", subject="b-1")
    return {**event.to_headers(), **overrides}


def test_cloudevent_headers_round_trip() -> None:
    event = CloudEvent(source="/spacesync/booking-service", type="booking.updated", subject="b-9",
                       time=datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    encoded = event.to_headers()
    assert encoded["ce_specversion"] == "1.0"
    assert encoded["ce_time"] == "2026-11-01T12:00:00Z"
    assert encoded["content-type"] == "application/json"
    assert CloudEvent.from_headers([(k, v.encode()) for k, v in encoded.items()]) == event


def test_valid_event_from_another_producer_is_parsed_and_times_become_utc() -> None:
    event, data = parse_event(headers(), orjson.dumps(booking_payload()), topic=Topic.BOOKING_EVENTS)
    assert event.source == "/panel/7"
    assert isinstance(data, BookingState)
    assert data.slots[0].start == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_unknown_fields_are_ignored_so_producers_can_add_fields() -> None:
    _, data = parse_event(headers(), orjson.dumps(booking_payload(room_colour="blue")))
    assert isinstance(data, BookingState)


@pytest.mark.parametrize(("header_overrides", "value", "reason"), [
    ({"ce_id": ""}, booking_payload(), "missing CloudEvents header(s): ce_id"),
    ({"ce_specversion": "0.3"}, booking_payload(), "unsupported ce_specversion"),
    ({"ce_type": "booking.exploded"}, booking_payload(), "unknown ce_type 'booking.exploded'"),
    ({"content-type": "application/xml"}, booking_payload(), "unsupported content-type"),
    ({"ce_time": "yesterday"}, booking_payload(), "invalid CloudEvents header: time"),
    ({"ce_subject": "b-2"}, booking_payload(), "ce_subject 'b-2' does not match booking_id 'b-1'"),
    ({}, booking_payload(version=0), "version: Input should be greater than or equal to 1"),
    ({}, booking_payload(slots=[]), "slots: List should have at least 1 item"),
    ({}, booking_payload(patron={"first_name": "A", "last_name": "B", "email": "nope"}), "patron.email"),
])
def test_invalid_events_name_what_is_wrong(header_overrides: dict[str, str], value: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(headers(**header_overrides), orjson.dumps(value))
    assert reason in caught.value.reason


def test_naive_times_are_rejected_rather_than_guessed() -> None:
    slot = {"slot_id": "s-1", "space_id": "r", "start": "2026-12-01T10:00:00", "end": "2026-12-01T11:00:00",
            "status": "confirmed"}
    with pytest.raises(InvalidEvent, match=r"slots\.0\.start: Input should have timezone info"):
        parse_event(headers(), orjson.dumps(booking_payload(slots=[slot])))


def test_non_json_and_empty_values_are_invalid() -> None:
    with pytest.raises(InvalidEvent, match="not JSON"):
        parse_event(headers(), b"{not json")
    with pytest.raises(InvalidEvent, match="empty value"):
        parse_event(headers(), b"")


def test_event_on_the_wrong_topic_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match=r"belongs on booking\.events, not exchange\.sync"):
        parse_event(headers(), orjson.dumps(booking_payload()), topic=Topic.EXCHANGE_SYNC)


def test_every_event_type_has_a_key_field_in_its_model() -> None:
    for event_type in EVENT_TYPES.values():
        assert event_type.key in event_type.model.model_fields, event_type.ce_type


def test_opening_hours_reject_overlaps_and_inverted_intervals() -> None:
    OpeningHours.model_validate({"monday": [{"open": "08:00", "close": "12:00"}, {"open": "13:00", "close": "24:00"}]})
    with pytest.raises(ValidationError, match="overlap"):
        OpeningHours.model_validate({"monday": [{"open": "08:00", "close": "12:00"},
                                                {"open": "11:00", "close": "14:00"}]})
    with pytest.raises(ValidationError, match="must be after it opens"):
        OpeningHours.model_validate({"friday": [{"open": "18:00", "close": "09:00"}]})
    with pytest.raises(ValidationError, match="not a local time"):
        OpeningHours.model_validate({"friday": [{"open": "9am", "close": "25:00"}]})


def test_space_time_zone_must_be_iana() -> None:
    from spacesync.common.events import LocationState

    with pytest.raises(ValidationError, match="unknown IANA time zone 'Mars/Olympus'"):
        LocationState(location_id="l", version=1, name="L", timezone="Mars/Olympus",
                      updated_at=datetime.now(UTC))
    assert SpaceState.model_fields["slot_minutes"].description


def test_header_details_the_fast_reader_keeps() -> None:
    good = [(k, v.encode()) for k, v in CloudEvent(source="/s", type="booking.created", subject="b-1").to_headers(
        ).items() if k != "content-type"]
    with_charset = CloudEvent.from_headers([*good, ("content-type", b"application/json; charset=utf-8")])
    assert with_charset.datacontenttype == "application/json"
    assert CloudEvent.from_headers([*good, ("x-trace", None)]).subject == "b-1"  # not ours: no value is fine
    with pytest.raises(InvalidEvent, match="header 'x-trace' is not UTF-8"):
        CloudEvent.from_headers([*good, ("x-trace", b"\xff")])
    with pytest.raises(InvalidEvent, match="header 'content-type' has no value"):
        CloudEvent.from_headers([*good, ("content-type", None)])
    with pytest.raises(InvalidEvent, match="unsupported content-type 'text/plain'"):
        CloudEvent.from_headers([*good, ("content-type", b"text/plain; charset=utf-8")])
