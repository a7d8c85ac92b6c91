"""Which slots belong in which resource calendar, and what to do about each one. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from spacesync.common.events.booking import BookingSlot, BookingState
from spacesync.common.events.sync import SlotSyncState
from spacesync.common.exchange import Appointment, ItemRef

# Bookings changed just before the pairing are pushed too: booking-service stamps updated_at at the start of its
# transaction, so one that committed just after the pairing can carry a slightly earlier time.
PAIRING_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class SpacePairing:
    """What the writer knows of a space from catalog.events."""

    space_id: str
    name: str
    location_id: str
    category_id: str
    resource: str | None
    paired_at: datetime | None
    import_requested_at: datetime | None


@dataclass(frozen=True)
class SlotRecord:
    """The writer's own record of one slot: where its appointment is, and how the last attempt went."""

    slot_id: str
    state: SlotSyncState
    mailbox: str | None = None
    location_id: str | None = None
    item: ItemRef | None = None
    fingerprint: str | None = None
    create_intent: str | None = None
    """Mailbox of a CreateItem that was sent but whose answer was never recorded (a crash, a timeout)."""
    attempts: int = 0
    last_error: str | None = None


class Why(StrEnum):
    """Why a slot belongs in its room's calendar."""

    ADOPTED = "adopted"
    """The writer already wrote it (or may have): it follows its booking."""
    CHANGED = "changed"
    """The booking was made or changed after the space was paired."""
    IMPORTED = "imported"
    """'Run the Import' asked for the space's existing future bookings."""


@dataclass(frozen=True)
class Target:
    mailbox: str
    location_id: str
    appointment: Appointment
    fingerprint: str
    why: Why = Why.CHANGED


def wanted(booking: BookingState, slot: BookingSlot, space: SpacePairing | None, record: SlotRecord | None, *,
           grace: timedelta = PAIRING_GRACE) -> Why | None:
    """Whether (and why) the slot belongs in its space's resource calendar; None when it does not.

    Only bookings made or changed since the space was paired are pushed; older ones only through 'Run the
    Import' (future slots at the time of the request). A slot already in Exchange stays adopted: it follows its
    booking's changes, and moves along when the space is paired with another resource."""
    if slot not in booking.confirmed_slots() or space is None or space.resource is None or space.paired_at is None:
        return None
    if record is not None and (record.item is not None or record.create_intent is not None):
        return Why.ADOPTED
    if booking.updated_at >= space.paired_at - grace:
        return Why.CHANGED
    requested = space.import_requested_at
    if requested is not None and requested >= space.paired_at and slot.end > requested:
        return Why.IMPORTED
    return None


class Step(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    DELETE_STAMPED = "delete_stamped"
    """No ItemId is known, but a create may have reached Exchange: find it by its stamp and delete it."""
    FORGET = "forget"
    """Nothing was ever written: just mark the slot removed."""


@dataclass(frozen=True)
class Action:
    step: Step
    mailbox: str | None = None
    location_id: str | None = None
    lookup_first: bool = False
    """CREATE only: look for an appointment already stamped with the slot id before creating one."""


def _may_exist(record: SlotRecord | None, target: Target, *, trust_records: bool) -> bool:
    """Whether an appointment stamped with this slot could already be in Exchange without us knowing its id.

    Yes for one whose create may have reached Exchange (an intent recorded, a crash, a lost answer), and for a
    slot of a previous pairing or an import (the room may hold it). A slot this database never saw may be there
    too when the database is newer than the calendars (a restore, a replay into a new database) - unless the
    operator trusts the records (`trust_records`: then a booking changed since the pairing is created at once,
    one Exchange call instead of two). Only a slot whose removal was recorded is known to be absent."""
    if record is None:
        return not (trust_records and target.why is Why.CHANGED)
    return record.create_intent is not None or record.state is not SlotSyncState.REMOVED


def plan(record: SlotRecord | None, target: Target | None, *, trust_records: bool = False) -> list[Action]:
    """The Exchange steps that take a slot from its record to its target, in order."""
    unsure = _unsure_mailbox(record)
    if target is None:
        if record is None or record.state is SlotSyncState.REMOVED:
            return []
        if record.item is not None:
            return [Action(Step.DELETE, record.mailbox, record.location_id)]
        if unsure is not None:
            return [Action(Step.DELETE_STAMPED, unsure, record.location_id)]
        return [Action(Step.FORGET)]
    create = Action(Step.CREATE, target.mailbox, target.location_id,
                    lookup_first=_may_exist(record, target, trust_records=trust_records))
    if record is None or record.item is None:
        if record is not None and unsure is not None and not _same_mailbox(unsure, target.mailbox):
            return [Action(Step.DELETE_STAMPED, unsure, record.location_id), create]
        return [create]
    if not _same_mailbox(record.mailbox, target.mailbox):
        return [Action(Step.DELETE, record.mailbox, record.location_id), create]
    if record.state is SlotSyncState.SYNCED and record.fingerprint == target.fingerprint:
        return []
    return [Action(Step.UPDATE, target.mailbox, target.location_id)]


def _unsure_mailbox(record: SlotRecord | None) -> str | None:
    """The mailbox that may hold an appointment of this slot whose ItemId was never recorded: a create that was
    sent (the intent), or a transient failure mid-way (an answer lost, an adopted item not yet updated)."""
    if record is None or record.item is not None:
        return None
    if record.create_intent is not None:
        return record.create_intent
    return record.mailbox if record.state is SlotSyncState.PENDING else None


def _same_mailbox(a: str | None, b: str | None) -> bool:
    return (a or "").lower() == (b or "").lower()


def retry_delay(attempts: int, *, back_off: float | None = None, base: float = 0.5, cap: float = 30.0,
                rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: the server's own back-off when it gave one, else exponential with full
    jitter (so a fleet of slots does not retry in lock step after an outage). The cap keeps an outage of
    minutes draining within seconds of its end."""
    if back_off is not None and back_off > 0:
        return min(back_off, 300.0)
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
