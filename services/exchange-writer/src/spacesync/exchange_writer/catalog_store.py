"""Postgres adapter: folds catalog.events and booking.events into the writer's schema and says which bookings
need a pass. Every fold is idempotent: an event at or below the stored version changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from spacesync.common.db.pool import Conn
from spacesync.common.events.booking import BookingState
from spacesync.common.events.catalog import CategoryState, ExchangeConnection, LocationState, SpaceState

_MARK_DIRTY = "UPDATE bookings SET generation = generation + 1, next_attempt_at = now()"


async def fold_bookings(conn: Conn, bookings: list[tuple[str, BookingState, datetime]]) -> int:
    """Stores the bookings (source, state, event time; one per booking) that are newer than what is stored;
    each stored one needs a pass. Returns how many were newer."""
    rows = await conn.fetch(
        "INSERT INTO bookings (source, booking_id, version, state, event_time)"
        " SELECT source, booking_id, version, state::jsonb, event_time"
        "   FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[])"
        "        AS b(source, booking_id, version, state, event_time)"
        " ON CONFLICT (source, booking_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state,"
        "   event_time = EXCLUDED.event_time, generation = bookings.generation + 1, next_attempt_at = now()"
        " WHERE bookings.version < EXCLUDED.version RETURNING true",
        [source for source, _, _ in bookings], [b.booking_id for _, b, _ in bookings],
        [b.version for _, b, _ in bookings], [b.model_dump_json() for _, b, _ in bookings],
        [at for _, _, at in bookings])
    return len(rows)


async def fold_location(conn: Conn, location: LocationState) -> ExchangeConnection | None:
    """Stores a newer location. When its Exchange connection changed, slots that failed or wait there get
    another try now, and the previous connection is returned (its cached protocol is to be dropped)."""
    applied, previous = await _store_if_newer(conn, "locations", "location_id", location.location_id,
                                              location.version, location)
    if not applied:
        return None
    old = LocationState.model_validate(previous).exchange if previous is not None else None
    if old is not None and location.exchange is None:
        await conn.execute("UPDATE locations SET retired_exchange = $2 WHERE location_id = $1",
                           location.location_id, old.model_dump(mode="json"))
    elif location.exchange is not None:
        await conn.execute("UPDATE locations SET retired_exchange = NULL WHERE location_id = $1",
                           location.location_id)
    unchanged = old.same_connection(location.exchange) if old is not None else location.exchange is None
    if unchanged:
        return None
    await conn.execute(
        _MARK_DIRTY + " WHERE (source, booking_id) IN (SELECT DISTINCT source, booking_id FROM slots"
        "  WHERE location_id = $1 AND state IN ('pending', 'failed'))", location.location_id)
    return old


async def fold_category(conn: Conn, category: CategoryState) -> bool:
    applied, _ = await _store_if_newer(conn, "categories", "category_id", category.category_id,
                                        category.version, category)
    return applied


async def fold_space(conn: Conn, space: SpaceState) -> bool:
    """Stores a newer space; when its pairing changed, every booking with a slot there gets a pass."""
    applied, previous = await _store_if_newer(conn, "spaces", "space_id", space.space_id, space.version, space)
    if not applied:
        return False
    old = SpaceState.model_validate(previous) if previous is not None else None
    if old is None or (old.exchange_resource, old.paired_at, old.name) != (
            space.exchange_resource, space.paired_at, space.name):
        await mark_space_dirty(conn, space.space_id)
    elif space.exchange_resource is not None:  # 'Save & Test' again: failed slots get another try
        await conn.execute(
            _MARK_DIRTY + " WHERE (source, booking_id) IN (SELECT DISTINCT source, booking_id FROM slots"
            "  WHERE space_id = $1 AND state = 'failed')", space.space_id)
    return True


async def _store_if_newer(conn: Conn, table: str, key: str, entity_id: str, version: int,
                          entity: BaseModel) -> tuple[bool, Any]:
    """Replaces the row when `version` is higher than the stored one; returns (replaced, previous state or None)."""
    previous = await conn.fetchrow(f"SELECT version, state FROM {table} WHERE {key} = $1 FOR UPDATE", entity_id)
    if previous is not None and previous["version"] >= version:
        return False, None
    await conn.execute(
        f"INSERT INTO {table} ({key}, version, state) VALUES ($1, $2, $3) ON CONFLICT ({key})"
        " DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state",
        entity_id, version, entity.model_dump(mode="json"))
    return True, previous["state"] if previous is not None else None


async def request_import(conn: Conn, space_id: str, requested_at: datetime) -> bool:
    """'Run the Import': the space's slots that are still in the future at `requested_at` get pushed."""
    updated = await conn.fetchval(
        "UPDATE spaces SET import_requested_at = greatest(import_requested_at, $2) WHERE space_id = $1"
        " RETURNING true", space_id, requested_at)
    if updated:
        await mark_space_dirty(conn, space_id)
    return bool(updated)


async def mark_space_dirty(conn: Conn, space_id: str) -> None:
    await conn.execute(
        _MARK_DIRTY + " WHERE state -> 'slots' @> $1::jsonb"
        " OR (source, booking_id) IN (SELECT source, booking_id FROM slots WHERE space_id = $2)",
        [{"space_id": space_id}], space_id)
