"""Postgres adapter for bookings: each change bumps the version and writes booking.* to the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg import Range

from spacesync.booking_service.api.models import BookingView, ExchangeSync, SlotView
from spacesync.booking_service.domain import RequestedSlot
from spacesync.common.db.pool import Conn
from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus
from spacesync.common.events.sync import BookingSyncState
from spacesync.common.outbox import OutboxEvent, add_to_outbox


@dataclass(frozen=True)
class Conflict:
    space_id: UUID
    space_name: str
    start: datetime
    end: datetime


async def insert_booking(
    conn: Conn, patron: Patron, nickname: str | None, slots: list[RequestedSlot],
) -> tuple[BookingState, BookingView]:
    """Inserts the booking and its slots (two statements) and returns its state without reading it back."""
    booking_id = uuid.uuid4()
    slot_ids = [uuid.uuid4() for _ in slots]
    created_at = await conn.fetchval(
        "WITH booking AS ("
        "   INSERT INTO bookings (id, status, first_name, last_name, email, public_nickname)"
        "   VALUES ($1, 'confirmed', $2, $3, $4, $5) RETURNING id, created_at),"
        " slots AS ("
        "   INSERT INTO booking_slots (id, booking_id, position, space_id, during, status)"
        "   SELECT s.id, $1, s.position - 1, s.space_id, tstzrange(s.start_at, s.end_at), 'confirmed'"
        "     FROM unnest($6::uuid[], $7::uuid[], $8::timestamptz[], $9::timestamptz[])"
        "          WITH ORDINALITY AS s(id, space_id, start_at, end_at, position))"
        " SELECT created_at FROM booking",
        booking_id, patron.first_name, patron.last_name, str(patron.email), nickname,
        slot_ids, [s.space_id for s in slots], [s.start for s in slots], [s.end for s in slots])
    row = {"id": booking_id, "status": "confirmed", "first_name": patron.first_name,
           "last_name": patron.last_name, "email": str(patron.email), "public_nickname": nickname, "version": 1,
           "created_at": created_at, "updated_at": created_at}
    slot_rows = [{"id": slot_id, "space_id": s.space_id, "during": Range(s.start, s.end), "status": "confirmed",
                  **NOT_SYNCED} for slot_id, s in zip(slot_ids, slots, strict=True)]
    return _views(row, slot_rows)


async def lock_booking(conn: Conn, booking_id: UUID) -> asyncpg.Record | None:
    """The booking row, locked: changes to one booking are serialised, so versions never skip or repeat."""
    return await conn.fetchrow("SELECT * FROM bookings WHERE id = $1 FOR UPDATE", booking_id)


async def load_slots(conn: Conn, booking_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM booking_slots WHERE booking_id = $1 ORDER BY position", booking_id)


async def apply_slot_changes(
    conn: Conn, booking_id: UUID, existing: list[asyncpg.Record], desired: list[RequestedSlot],
) -> None:
    """Moves kept slots, adds new ones and cancels confirmed slots left out of `desired`."""
    kept = {slot.slot_id for slot in desired if slot.slot_id}
    cancel = [row["id"] for row in existing if row["id"] not in kept and row["status"] == "confirmed"]
    if cancel:
        await conn.execute("UPDATE booking_slots SET status = 'cancelled', updated_at = now()"
                           " WHERE id = ANY($1::uuid[])", cancel)
    current = {row["id"]: row for row in existing}
    next_position = max((row["position"] for row in existing), default=-1) + 1
    for slot in desired:
        if slot.slot_id is None:
            await conn.execute(
                "INSERT INTO booking_slots (id, booking_id, position, space_id, during, status)"
                " VALUES ($1, $2, $3, $4, $5, 'confirmed')",
                uuid.uuid4(), booking_id, next_position, slot.space_id, Range(slot.start, slot.end))
            next_position += 1
            continue
        row = current[slot.slot_id]
        if (row["space_id"], row["during"].lower, row["during"].upper, row["status"]) != (
                slot.space_id, slot.start, slot.end, "confirmed"):
            await conn.execute(
                "UPDATE booking_slots SET space_id = $2, during = $3, status = 'confirmed', updated_at = now()"
                " WHERE id = $1", slot.slot_id, slot.space_id, Range(slot.start, slot.end))


async def bump_version(conn: Conn, booking_id: UUID, *, status: str | None = None,
                       patron: dict[str, str] | None = None,
                       nickname: tuple[bool, str | None] = (False, None)) -> None:
    """Next version; changes the status, patron fields and (when nickname[0]) the nickname that are given."""
    await conn.execute(
        "UPDATE bookings SET version = version + 1, updated_at = now(),"
        " status = coalesce($2, status), first_name = coalesce($3, first_name),"
        " last_name = coalesce($4, last_name), email = coalesce($5, email),"
        " public_nickname = CASE WHEN $6 THEN $7 ELSE public_nickname END WHERE id = $1",
        booking_id, status, (patron or {}).get("first_name"), (patron or {}).get("last_name"),
        (patron or {}).get("email"), nickname[0], nickname[1])


async def cancel_slots(conn: Conn, booking_id: UUID, slot_ids: list[UUID]) -> None:
    await conn.execute(
        "UPDATE booking_slots SET status = 'cancelled', updated_at = now()"
        " WHERE booking_id = $1 AND status = 'confirmed' AND id = ANY($2::uuid[])", booking_id, slot_ids)


async def state(conn: Conn, booking_id: UUID) -> tuple[BookingState, BookingView]:
    """The booking as the event carries it and as the API shows it (with each slot's Sync ID)."""
    row = await conn.fetchrow("SELECT * FROM bookings WHERE id = $1", booking_id)
    assert row is not None
    return _views(row, await load_slots(conn, booking_id))


Row = Mapping[str, Any] | asyncpg.Record
NOT_SYNCED = dict.fromkeys(("sync_item_id", "sync_change_key", "sync_state", "sync_mailbox", "sync_attempts",
                            "sync_error", "synced_at"))


def _views(row: Row, slots: Sequence[Row]) -> tuple[BookingState, BookingView]:
    patron = Patron(first_name=row["first_name"], last_name=row["last_name"], email=row["email"])
    event = BookingState(
        booking_id=str(row["id"]), version=row["version"], status=BookingStatus(row["status"]),
        patron=patron, public_nickname=row["public_nickname"], created_at=row["created_at"],
        updated_at=row["updated_at"],
        slots=[BookingSlot(slot_id=str(s["id"]), space_id=str(s["space_id"]), start=s["during"].lower,
                           end=s["during"].upper, status=SlotStatus(s["status"])) for s in slots])
    view = BookingView(
        id=row["id"], status=event.status, version=event.version, patron=patron,
        public_nickname=event.public_nickname, created_at=event.created_at, updated_at=event.updated_at,
        slots=[SlotView(slot_id=s["id"], space_id=s["space_id"], start=s["during"].lower,
                        end=s["during"].upper, status=SlotStatus(s["status"]),
                        exchange=_sync_view(s))
               for s in slots])
    return event, view


def _sync_view(slot: Row) -> ExchangeSync:
    return ExchangeSync(sync_id=slot["sync_item_id"], change_key=slot["sync_change_key"], state=slot["sync_state"],
                        mailbox=slot["sync_mailbox"], attempts=slot["sync_attempts"], error=slot["sync_error"],
                        synced_at=slot["synced_at"])


async def emit(conn: Conn, event_type: str, booking: BookingState) -> None:
    await add_to_outbox(conn, OutboxEvent(event_type, "booking", booking))


async def conflicts(conn: Conn, slots: list[RequestedSlot], exclude_booking: UUID | None) -> list[Conflict]:
    """Confirmed slots of other bookings that overlap the requested ones (to name them in a 409)."""
    rows = await conn.fetch(
        "SELECT DISTINCT s.space_id, sp.name, lower(s.during) AS start, upper(s.during) AS end"
        "  FROM booking_slots s JOIN spaces sp ON sp.id = s.space_id,"
        "       unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS r(space_id, start_at, end_at)"
        " WHERE s.status = 'confirmed' AND s.space_id = r.space_id"
        "   AND s.during && tstzrange(r.start_at, r.end_at)"
        "   AND ($4::uuid IS NULL OR s.booking_id <> $4) ORDER BY 3",
        [s.space_id for s in slots], [s.start for s in slots], [s.end for s in slots], exclude_booking)
    return [Conflict(r["space_id"], r["name"], r["start"], r["end"]) for r in rows]


async def fold_sync(conn: Conn, sync: BookingSyncState) -> bool:
    """Records the writer's outcome per slot; stale or repeated sequences change nothing."""
    try:
        booking_id = UUID(sync.booking_id)
    except ValueError:
        return False
    updated = await conn.fetchval(
        "UPDATE bookings SET sync_sequence = $2 WHERE id = $1 AND sync_sequence < $2 RETURNING id",
        booking_id, sync.sequence)
    if updated is None:
        return False
    await conn.executemany(
        "UPDATE booking_slots SET sync_state = $3, sync_item_id = $4, sync_change_key = $5, sync_error = $6,"
        " synced_at = $7, sync_mailbox = $8, sync_attempts = $9 WHERE id = $1 AND booking_id = $2",
        [(_uuid_or_none(slot.slot_id), booking_id, slot.state.value, slot.item_id, slot.change_key, slot.error,
          sync.observed_at, slot.mailbox, slot.attempts) for slot in sync.slots if _uuid_or_none(slot.slot_id)])
    return True


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None
