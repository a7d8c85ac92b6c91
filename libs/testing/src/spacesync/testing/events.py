"""Booking events as another producer would publish them: builders for tests of the services that fold them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus


def new_id() -> str:
    return str(uuid.uuid4())


def booking(*slots: tuple[str, datetime, int], version: int = 1, status: BookingStatus = BookingStatus.CONFIRMED,
            booking_id: str | None = None, nickname: str | None = None, updated_at: datetime | None = None,
            slot_ids: list[str] | None = None, cancelled: set[int] | None = None) -> BookingState:
    """A booking with slots (space id, start, minutes); slot ids are stable when given."""
    now = updated_at or datetime.now(UTC)
    ids = slot_ids or [new_id() for _ in slots]
    return BookingState(
        booking_id=booking_id or new_id(), version=version, status=status, public_nickname=nickname,
        patron=Patron(first_name="Ada", last_name="Lovelace", email="ada@example.org"),
        slots=[BookingSlot(slot_id=ids[i], space_id=space_id, start=start, end=start + timedelta(minutes=minutes),
                           status=SlotStatus.CANCELLED if status is BookingStatus.CANCELLED or i in (cancelled or ())
                           else SlotStatus.CONFIRMED)
               for i, (space_id, start, minutes) in enumerate(slots)],
        created_at=now, updated_at=now)


def changed(previous: BookingState, *slots: tuple[str, datetime, int], **extra: Any) -> BookingState:
    """The next version of a booking: same id and slot ids, new slots/status."""
    return booking(*slots, version=previous.version + 1, booking_id=previous.booking_id,
                   slot_ids=[s.slot_id for s in previous.slots], nickname=previous.public_nickname, **extra)
