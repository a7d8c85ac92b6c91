"""Booking use cases: one transaction each, rules from the domain, the event written with the change."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from spacesync.booking_service import booking_store as store
from spacesync.booking_service import outlook_store
from spacesync.booking_service.api.models import BookingCreate, BookingPatch, BookingView
from spacesync.booking_service.catalog_store import space_rules
from spacesync.booking_service.domain import (
    RequestedSlot,
    Violation,
    check_history,
    check_slots,
    nickname_allowed,
)
from spacesync.common.db import Database
from spacesync.common.db.pool import Conn


class BookingError(Exception):
    """An outcome the caller must hear about (the API answers each with a problem+json)."""


class BookingNotFound(BookingError):
    pass


class InvalidBooking(BookingError):
    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.reason}" for v in violations))
        self.violations = violations


class SlotConflict(BookingError):
    def __init__(self, conflicts: list[store.Conflict]) -> None:
        super().__init__("requested time is already booked")
        self.conflicts = conflicts


class BusyInOutlook(BookingError):
    """A new or moved slot overlaps a meeting that holds the room busy in Outlook/Exchange."""

    def __init__(self, busy: list[outlook_store.OutlookBusy]) -> None:
        super().__init__("requested time is busy in Outlook")
        self.busy = busy


class BookingClosed(BookingError):
    """The booking is cancelled, or what was asked for already took place."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VersionMismatch(BookingError):
    def __init__(self, current: int) -> None:
        super().__init__(f"the booking is at version {current}")
        self.current = current


class BookingService:
    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._clock = clock

    async def create(self, request: BookingCreate) -> BookingView:
        slots = [RequestedSlot(s.space_id, s.start, s.end) for s in request.slots]
        try:
            async with self._db.acquire() as conn, conn.transaction():
                rules = await space_rules(conn, {s.space_id for s in slots})
                violations = check_slots(slots, rules, self._clock())
                if request.public_nickname and not violations and not nickname_allowed(rules.values()):
                    violations.append(_nickname_violation())
                if violations:
                    raise InvalidBooking(violations)
                await _refuse_outlook_busy(conn, list(enumerate(slots)))
                event, view = await store.insert_booking(conn, request.patron, request.public_nickname, slots)
                await store.emit(conn, "booking.created", event)
        except asyncpg.ExclusionViolationError:
            raise await self._conflict(slots, None) from None
        return view

    async def get(self, booking_id: UUID) -> BookingView:
        async with self._db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if await conn.fetchval("SELECT 1 FROM bookings WHERE id = $1", booking_id) is None:
                raise BookingNotFound
            return (await store.state(conn, booking_id))[1]

    async def change(self, booking_id: UUID, patch: BookingPatch, if_match: int | None) -> BookingView:
        desired: list[RequestedSlot] = []
        try:
            async with self._db.acquire() as conn, conn.transaction():
                row, existing = await self._open(conn, booking_id, if_match)
                slots_changed = False
                if patch.slots is not None:
                    desired = [RequestedSlot(s.space_id, s.start, s.end, s.slot_id) for s in patch.slots]
                    slots_changed = await self._check_slots(conn, existing, desired)
                patron = patch.patron.model_dump(exclude_none=True, mode="json") if patch.patron else {}
                patron = {k: v for k, v in patron.items() if row[k] != v}
                nickname = (patch.public_nickname if "public_nickname" in patch.model_fields_set
                            else row["public_nickname"])
                nickname_changed = nickname != row["public_nickname"]
                if nickname and (nickname_changed or slots_changed):
                    await self._check_nickname(conn, desired if patch.slots is not None else existing)
                if not (slots_changed or patron or nickname_changed):
                    return (await store.state(conn, booking_id))[1]
                if slots_changed:
                    await store.apply_slot_changes(conn, booking_id, existing, desired)
                await store.bump_version(conn, booking_id, patron=patron, nickname=(nickname_changed, nickname))
                event, view = await store.state(conn, booking_id)
                await store.emit(conn, "booking.updated", event)
        except asyncpg.ExclusionViolationError:
            raise await self._conflict(desired, booking_id) from None
        return view

    async def cancel(self, booking_id: UUID, if_match: int | None, slot_id: UUID | None = None) -> BookingView:
        """Cancels one slot, or every slot that has not ended yet; with no confirmed slot left the booking is
        cancelled. Slots that already took place stay as they were."""
        now = self._clock()
        async with self._db.acquire() as conn, conn.transaction():
            _, existing = await self._open(conn, booking_id, if_match)
            if slot_id is not None and slot_id not in {r["id"] for r in existing}:
                raise BookingNotFound
            targets = [r for r in existing if r["status"] == "confirmed" and slot_id in (None, r["id"])]
            if slot_id is not None and not targets:
                return (await store.state(conn, booking_id))[1]  # already cancelled: nothing changes
            future = [r["id"] for r in targets if r["during"].upper > now]
            if not future:
                raise BookingClosed("It already took place and can no longer be cancelled.")
            remaining = [r for r in existing if r["status"] == "confirmed" and r["id"] not in future]
            await store.cancel_slots(conn, booking_id, future)
            await store.bump_version(conn, booking_id, status=None if remaining else "cancelled")
            event, view = await store.state(conn, booking_id)
            await store.emit(conn, "booking.updated" if remaining else "booking.cancelled", event)
        return view

    async def _open(self, conn: Conn, booking_id: UUID, if_match: int | None,
                    ) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
        row = await store.lock_booking(conn, booking_id)
        if row is None:
            raise BookingNotFound
        if if_match is not None and if_match != row["version"]:
            raise VersionMismatch(row["version"])
        if row["status"] == "cancelled":
            raise BookingClosed("The booking is cancelled and can no longer change.")
        return row, await store.load_slots(conn, booking_id)

    async def _check_slots(self, conn: Conn, existing: list[asyncpg.Record], desired: list[RequestedSlot]) -> bool:
        """Validates the new list of slots; True when it differs from the booking's current slots."""
        current = {row["id"]: row for row in existing}
        ids = [s.slot_id for s in desired if s.slot_id]
        unknown = [Violation(f"slots.{i}.slot_id", f"slot {s.slot_id} is not part of this booking")
                   for i, s in enumerate(desired) if s.slot_id and s.slot_id not in current]
        if unknown or len(ids) != len(set(ids)):
            raise InvalidBooking(unknown or [Violation("slots", "a slot_id appears more than once")])
        changed = [i for i, s in enumerate(desired) if s.slot_id is None or _moved(current[s.slot_id], s)]
        dropped = [row for row in existing if row["status"] == "confirmed" and row["id"] not in ids]
        now = self._clock()
        violations = check_history(
            [(i, current[desired[i].slot_id]["during"].upper) for i in changed if desired[i].slot_id]
            + [(None, row["during"].upper) for row in dropped], now)
        violations += check_slots(desired, await space_rules(conn, {s.space_id for s in desired}), now,
                                  changed=changed)
        if violations:
            raise InvalidBooking(violations)
        # Only new and moved slots: a slot that stays where it was keeps its time even when an Outlook meeting
        # was booked over it later, so the booking's other details can still change.
        await _refuse_outlook_busy(conn, [(i, desired[i]) for i in changed])
        return bool(changed or dropped)

    async def _check_nickname(self, conn: Conn, slots: Sequence[RequestedSlot | asyncpg.Record]) -> None:
        spaces = {s.space_id if isinstance(s, RequestedSlot) else s["space_id"] for s in slots
                  if isinstance(s, RequestedSlot) or s["status"] == "confirmed"}
        if not nickname_allowed((await space_rules(conn, spaces)).values()):
            raise InvalidBooking([_nickname_violation()])

    async def _conflict(self, slots: list[RequestedSlot], booking_id: UUID | None) -> SlotConflict:
        async with self._db.acquire() as conn:
            return SlotConflict(await store.conflicts(conn, slots, booking_id))


async def _refuse_outlook_busy(conn: Conn, slots: list[tuple[int, RequestedSlot]]) -> None:
    """In the booking's transaction, which holds the spaces' busy pictures until it commits."""
    busy = await outlook_store.busy_overlaps(conn, slots)
    if busy:
        raise BusyInOutlook(busy)


def _moved(row: asyncpg.Record | Any, slot: RequestedSlot) -> bool:
    return bool((row["space_id"], row["during"].lower, row["during"].upper, row["status"]) != (
        slot.space_id, slot.start, slot.end, "confirmed"))


def _nickname_violation() -> Violation:
    return Violation("public_nickname", "public nicknames are not enabled for the category of these spaces")
