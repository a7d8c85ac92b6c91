"""Postgres adapter for Outlook/Exchange settings, pairings and the sync summary; changes emit catalog.events."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from spacesync.booking_service.catalog_store import emit, fetch_one, update
from spacesync.booking_service.import_plan import SlotToImport
from spacesync.common.db.pool import Conn
from spacesync.common.events.catalog import ExchangeConnection, ImportRequest
from spacesync.common.outbox import OutboxEvent, add_to_outbox

# locations.exchange_<field> for each ExchangeConnection field
_COLUMNS = tuple(f"exchange_{name}" for name in ExchangeConnection.model_fields)


async def lock_location(conn: Conn, location_id: UUID, *, exclusive: bool) -> asyncpg.Record | None:
    """The location row, locked: a pairing (shared) and a disconnect (exclusive) never cross."""
    mode = "UPDATE" if exclusive else "SHARE"
    return await conn.fetchrow(f"SELECT * FROM locations WHERE id = $1 FOR {mode}", location_id)


async def save_connection(conn: Conn, location_id: UUID, settings: ExchangeConnection | None) -> asyncpg.Record | None:
    """Stores (None: clears) the location's Exchange settings and emits location.upserted."""
    values = settings.model_dump() if settings else dict.fromkeys(ExchangeConnection.model_fields)
    row = await update(conn, "locations", location_id,
                       {column: values[name] for column, name in zip(_COLUMNS, ExchangeConnection.model_fields,
                                                                     strict=True)})
    if row is not None:
        await emit(conn, "location", row)
    return row


async def paired_space_names(conn: Conn, location_id: UUID) -> list[str]:
    rows = await conn.fetch("SELECT name FROM spaces WHERE location_id = $1 AND exchange_resource IS NOT NULL"
                            " ORDER BY name", location_id)
    return [row["name"] for row in rows]


async def save_pairing(conn: Conn, space_id: UUID, location_id: UUID,
                       resource: str | None) -> asyncpg.Record | None:
    """Pairs (resource None: unpairs) the space and emits space.paired / space.unpaired. None when the space is
    no longer in that location. Raises UniqueViolationError when another space has the resource."""
    # paired_at from the database clock, like the bookings' updated_at it is compared with; pairing again with
    # the same resource keeps it (and still emits space.paired: the writer retries the space's failed slots).
    row = await conn.fetchrow(
        "UPDATE spaces SET exchange_resource = $3, version = version + 1, updated_at = now(),"
        " paired_at = CASE WHEN $3::text IS NULL THEN NULL WHEN exchange_resource = $3 THEN paired_at"
        "  ELSE now() END"
        " WHERE id = $1 AND location_id = $2 RETURNING *",
        space_id, location_id, resource)
    if row is not None:
        await emit(conn, "space", row, "space.paired" if resource else "space.unpaired")
    return row


async def space_with_location(conn: Conn, space_id: UUID) -> tuple[asyncpg.Record, asyncpg.Record] | None:
    space = await fetch_one(conn, "spaces", space_id)
    if space is None:
        return None
    location = await fetch_one(conn, "locations", space["location_id"])
    assert location is not None  # foreign key
    return space, location


async def space_holding(conn: Conn, resource: str) -> asyncpg.Record | None:
    """The space (id, name) paired with this resource, if any."""
    return await conn.fetchrow("SELECT id, name FROM spaces WHERE exchange_resource = $1", resource)


async def request_import(conn: Conn, request: ImportRequest) -> None:
    await add_to_outbox(conn, OutboxEvent("space.import_requested", "space", request))


async def future_slots(conn: Conn, space_id: UUID, now: datetime) -> list[SlotToImport]:
    """The space's confirmed slots that have not ended, in time order."""
    rows = await conn.fetch(
        "SELECT id, booking_id, lower(during) AS start, upper(during) AS end FROM booking_slots"
        " WHERE space_id = $1 AND status = 'confirmed' AND during && tstzrange($2, NULL) ORDER BY lower(during), id",
        space_id, now)
    return [SlotToImport(row["id"], row["booking_id"], row["start"], row["end"]) for row in rows]


async def sync_counts(conn: Conn, space_id: UUID, now: datetime) -> dict[str, int]:
    """Future confirmed slots of the space per sync state ('not_reported' until the writer says something)."""
    rows = await conn.fetch(
        "SELECT coalesce(sync_state, 'not_reported') AS state, count(*) AS slots FROM booking_slots"
        " WHERE space_id = $1 AND status = 'confirmed' AND during && tstzrange($2, NULL) GROUP BY 1",
        space_id, now)
    return {row["state"]: row["slots"] for row in rows}


async def last_sync_error(conn: Conn, space_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, booking_id, sync_error, sync_attempts, synced_at FROM booking_slots"
        " WHERE space_id = $1 AND sync_error IS NOT NULL ORDER BY synced_at DESC NULLS LAST, id LIMIT 1", space_id)
