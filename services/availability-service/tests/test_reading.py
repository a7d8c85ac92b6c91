"""The fast booking reader refuses what the contract (BookingState) refuses and reads the same values (no infra)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from spacesync.availability_service.reading import BookingReading
from spacesync.common.events.booking import BookingState


def booking(**changes: Any) -> dict[str, Any]:
    slot = {"slot_id": "s-1", "space_id": "room-1", "start": "2026-12-01T10:00:00+01:00",
            "end": "2026-12-01T11:00:00+01:00", "status": "confirmed"}
    data = {"booking_id": " b-1 ", "version": 2, "status": "confirmed",
            "patron": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
            "public_nickname": "Owl", "slots": [slot, {**slot, "slot_id": "s-2", "status": "cancelled"}],
            "created_at": "2026-11-01T09:00:00Z", "updated_at": "2026-11-02T09:00:00Z"}
    return {**data, **changes}


def slot(**changes: Any) -> dict[str, Any]:
    return {**booking()["slots"][0], **changes}


def test_reads_the_values_the_contract_reads() -> None:
    raw = orjson.dumps(booking())
    read, contract = BookingReading.model_validate_json(raw), BookingState.model_validate_json(raw)
    assert (read.booking_id, read.version, read.status, read.public_nickname) == (
        contract.booking_id, contract.version, contract.status, contract.public_nickname)
    assert [(s.slot_id, s.space_id, s.start, s.end) for s in read.confirmed_slots()] == [
        (s.slot_id, s.space_id, s.start, s.end) for s in contract.confirmed_slots()]  # same instants
    assert read.booking_id == "b-1"


@pytest.mark.parametrize(("data", "reason"), [
    (booking(slots=[slot(end="2026-12-01T10:00:00+01:00")]), "end must be after start"),
    (booking(slots=[slot(), slot()]), "slot ids must be unique"),
    (booking(slots=[slot(start="0001-01-01T00:00:00+01:00")]), "date is out of range"),
    (booking(updated_at="9999-12-31T23:00:00-05:00"), "date is out of range"),
    (booking(slots=[slot(start="2026-12-01T10:00:00")]), "timezone"),
    (booking(slots=[]), "at least 1 item"),
    (booking(version=0), "greater than or equal to 1"),
    (booking(booking_id="b\x001"), "should match pattern"),
    (booking(patron={"first_name": "Ada"}), "last_name"),
])
def test_refuses_what_the_contract_refuses(data: dict[str, Any], reason: str) -> None:
    raw = orjson.dumps(data)
    with pytest.raises(ValidationError, match=reason):
        BookingState.model_validate_json(raw)
    with pytest.raises(ValidationError, match=reason):
        BookingReading.model_validate_json(raw)
