"""Booking use cases: one transaction each, rules from the domain, the event written with the change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from spacesync.booking_service import booking_store as store
from spacesync.booking_service.api.models import BookingCreate, BookingPatch, BookingView
from spacesync.booking_service.catalog_store import space_rules
from spacesync.booking_service.domain import RequestedSlot, Violation, check_slots, nickname_allowed
from spacesync.common.db import Database

BOOKINGS = Counter("spacesync_bookings_total", "Booking requests by operation and outcome",
                   ["operation", "outcome"])


class BookingNotFound(Exception):
    pass


class InvalidBooking(Exception):
    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.reason}" for v in violations))
        self.violations = violations


class SlotConflict(Exception):
    def __init__(self, conflicts: list[store.Conflict]) -> None:
        super().__init__("requested time is already booked")
        self.conflicts = conflicts


class BookingClosed(Exception):
    """The booking is cancelled; it cannot change any more."""


class VersionMismatch(Exception):
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
                event, view = await store.insert_booking(conn, request.patron, request.public_nickname, slots)
                await store.emit(conn, "booking.created", event)
        except asyncpg.ExclusionViolationError:
            raise await self._conflict("create", slots, None) from None
        except InvalidBooking:
            BOOKINGS.labels("create", "invalid").inc()
            raise
        BOOKINGS.labels("create", "created").inc()
        return view

    async def get(self, booking_id: UUID) -> BookingView:
        async with self._db.acquire() as conn:
            if await conn.fetchval("SELECT 1 FROM bookings WHERE id = $1", booking_id) is None:
                raise BookingNotFound
            return (await store.state(conn, booking_id))[1]

    async def change(self, booking_id: UUID, patch: BookingPatch, if_match: int | None) -> BookingView:
        desired: list[RequestedSlot] = []
        try:
            async with self._db.acquire() as conn, conn.transaction():
                row, existing = await self._open(conn, booking_id, if_match)
                changed_slots = False
                if patch.slots is not None:
                    desired = [RequestedSlot(s.space_id, s.start, s.end, s.slot_id) for s in patch.slots]
                    changed_slots = await self._check_changed_slots(conn, existing, desired, patch)
                    await store.apply_slot_changes(conn, booking_id, existing, desired)
                patron = patch.patron.model_dump(exclude_none=True, mode="json") if patch.patron else {}
                patron = {k: v for k, v in patron.items() if row[k] != v}
                nickname = patch.public_nickname if patch.public_nickname != row["public_nickname"] else None
                if nickname and patch.slots is None:
                    rules = await space_rules(conn, {r["space_id"] for r in existing if r["status"] == "confirmed"})
                    if not nickname_allowed(rules.values()):
                        raise InvalidBooking([_nickname_violation()])
                if not (changed_slots or patron or nickname):
                    return (await store.state(conn, booking_id))[1]
                await store.bump_version(conn, booking_id, patron=patron, nickname=nickname)
                event, view = await store.state(conn, booking_id)
                await store.emit(conn, "booking.updated", event)
        except asyncpg.ExclusionViolationError:
            raise await self._conflict("update", desired, booking_id) from None
        except InvalidBooking:
            BOOKINGS.labels("update", "invalid").inc()
            raise
        BOOKINGS.labels("update", "updated").inc()
        return view

    async def cancel(self, booking_id: UUID, if_match: int | None, slot_id: UUID | None = None) -> BookingView:
        """Cancels one slot, or the whole booking; cancelling the last confirmed slot cancels the booking."""
        async with self._db.acquire() as conn, conn.transaction():
            _, existing = await self._open(conn, booking_id, if_match)
            confirmed = {r["id"] for r in existing if r["status"] == "confirmed"}
            if slot_id is not None and slot_id not in {r["id"] for r in existing}:
                raise BookingNotFound
            if slot_id is not None and slot_id not in confirmed:
                return (await store.state(conn, booking_id))[1]  # already cancelled: nothing changes
            whole = slot_id is None or confirmed == {slot_id}
            await store.cancel_slots(conn, booking_id, None if whole else [slot_id])  # type: ignore[list-item]
            await store.bump_version(conn, booking_id, status="cancelled" if whole else None)
            event, view = await store.state(conn, booking_id)
            await store.emit(conn, "booking.cancelled" if whole else "booking.updated", event)
        BOOKINGS.labels("cancel", "cancelled").inc()
        return view

    async def _open(self, conn: asyncpg.Connection[Any], booking_id: UUID,
                    if_match: int | None) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
        row = await store.lock_booking(conn, booking_id)
        if row is None:
            raise BookingNotFound
        if if_match is not None and if_match != row["version"]:
            raise VersionMismatch(row["version"])
        if row["status"] == "cancelled":
            raise BookingClosed
        return row, await store.load_slots(conn, booking_id)

    async def _check_changed_slots(self, conn: asyncpg.Connection[Any], existing: list[asyncpg.Record],
                                   desired: list[RequestedSlot], patch: BookingPatch) -> bool:
        current = {row["id"]: row for row in existing}
        unknown = [Violation(f"slots.{i}.slot_id", f"slot {s.slot_id} is not part of this booking")
                   for i, s in enumerate(desired) if s.slot_id and s.slot_id not in current]
        repeated = len({s.slot_id for s in desired if s.slot_id}) != len([s for s in desired if s.slot_id])
        if unknown or repeated:
            raise InvalidBooking(unknown or [Violation("slots", "a slot_id appears more than once")])
        changed = [i for i, s in enumerate(desired) if s.slot_id is None or (
            current[s.slot_id]["space_id"], current[s.slot_id]["during"].lower,
            current[s.slot_id]["during"].upper, current[s.slot_id]["status"]) != (
            s.space_id, s.start, s.end, "confirmed")]
        rules = await space_rules(conn, {s.space_id for s in desired})
        violations = check_slots(desired, rules, self._clock(), changed=changed)
        if patch.public_nickname and not violations and not nickname_allowed(rules.values()):
            violations.append(_nickname_violation())
        if violations:
            raise InvalidBooking(violations)
        dropped = {r["id"] for r in existing if r["status"] == "confirmed"} - {s.slot_id for s in desired}
        return bool(changed or dropped)

    async def _conflict(self, operation: str, slots: list[RequestedSlot], booking_id: UUID | None) -> SlotConflict:
        BOOKINGS.labels(operation, "conflict").inc()
        async with self._db.acquire() as conn:
            return SlotConflict(await store.conflicts(conn, slots, booking_id))


def _nickname_violation() -> Violation:
    return Violation("public_nickname", "public nicknames are not enabled for the category of these spaces")
