"""'Run the Import' preview, pure: which future slots of a space are already in its resource calendar, which would
be created, and which would land on time someone booked in Outlook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from spacesync.common.exchange import BUSY_STATUSES, CalendarEntry, slot_stamp


@dataclass(frozen=True)
class SlotToImport:
    slot_id: UUID
    booking_id: UUID
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Collision:
    slot: SlotToImport
    appointment: CalendarEntry


@dataclass(frozen=True)
class ImportPlan:
    would_create: int
    """Slots whose appointment is not in the calendar yet (the ones in `collisions` included: the import writes
    them anyway, the collision tells the admin to move one of the two)."""
    already_there: int
    """Slots whose appointment (carrying our slot id stamp) is already in the calendar."""
    collisions: list[Collision]


def plan_import(slots: Sequence[SlotToImport], calendar: Sequence[CalendarEntry], source: str) -> ImportPlan:
    """`source`: booking-service's ce_source, part of the stamps the writer gives its bookings' appointments."""
    stamped = {entry.slot_id.lower() for entry in calendar if entry.slot_id}
    # Our own appointments (stamped) are never collisions, whichever slot they belong to: the writer moves or
    # removes them itself.
    outlook_busy = sorted((entry for entry in calendar if not entry.slot_id and entry.busy_status in BUSY_STATUSES),
                          key=lambda entry: entry.start)
    would_create = already_there = 0
    collisions: list[Collision] = []
    for slot in slots:
        if slot_stamp(source, str(slot.booking_id), str(slot.slot_id)).lower() in stamped:
            already_there += 1
            continue
        would_create += 1
        collisions += [Collision(slot, entry) for entry in outlook_busy
                       if entry.start < slot.end and slot.start < entry.end]
    return ImportPlan(would_create, already_there, collisions)

