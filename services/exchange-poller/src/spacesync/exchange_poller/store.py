"""Postgres adapter: the catalog fold (idempotent by version), the rooms' picture records, first-seen times,
and the freebusy.changed outbox row written in the transaction that records the picture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from spacesync.common.db.pool import Conn
from spacesync.common.events import FreeBusyState, LocationState, SpaceState
from spacesync.common.outbox import OutboxEvent, add_to_outbox


async def fold_location(conn: Conn, location: LocationState) -> bool:
    return await _store_if_newer(conn, "locations", "location_id", location.location_id, location.version, location)


async def fold_space(conn: Conn, space: SpaceState) -> bool:
    """Stores a newer space. A new pairing (another mailbox, or the same one saved again) forgets when its
    meetings were first seen: organizer names then appear for the meetings already there."""
    previous = await conn.fetchval("SELECT state FROM spaces WHERE space_id = $1", space.space_id)
    if not await _store_if_newer(conn, "spaces", "space_id", space.space_id, space.version, space):
        return False
    old = SpaceState.model_validate(previous) if previous is not None else None
    if old is None or (old.exchange_resource, old.paired_at) != (space.exchange_resource, space.paired_at):
        await conn.execute("DELETE FROM first_seen WHERE space_id = $1", space.space_id)
        await conn.execute("UPDATE rooms SET items_digest = NULL WHERE space_id = $1", space.space_id)
    return True


async def _store_if_newer(conn: Conn, table: str, key: str, entity_id: str, version: int, entity: BaseModel) -> bool:
    stored = await conn.fetchval(
        f"INSERT INTO {table} ({key}, version, state) VALUES ($1, $2, $3) ON CONFLICT ({key})"
        f" DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state WHERE {table}.version < EXCLUDED.version"
        " RETURNING true", entity_id, version, entity.model_dump(mode="json"))
    return bool(stored)


async def catalog(conn: Conn) -> tuple[list[LocationState], list[SpaceState]]:
    locations = [LocationState.model_validate(r["state"]) for r in await conn.fetch("SELECT state FROM locations")]
    spaces = [SpaceState.model_validate(r["state"]) for r in await conn.fetch("SELECT state FROM spaces")]
    return locations, spaces


@dataclass(frozen=True)
class RoomRecord:
    """What was last published for a space (and how it was last read)."""

    location_id: str
    mailbox: str | None
    digest: str | None
    items_digest: str | None
    sequence: int
    last_error: str | None


async def room_records(conn: Conn) -> dict[str, RoomRecord]:
    rows = await conn.fetch("SELECT space_id, location_id, mailbox, digest, items_digest, sequence, last_error"
                            " FROM rooms")
    return {r["space_id"]: RoomRecord(r["location_id"], r["mailbox"], r["digest"], r["items_digest"], r["sequence"],
                                      r["last_error"]) for r in rows}


async def publish(conn: Conn, state: FreeBusyState, digest: str, items_digest: str | None, read_mode: str | None,
                  ) -> RoomRecord:
    """Records the new picture and adds its freebusy.changed to the outbox (the caller's transaction)."""
    await conn.execute(
        "INSERT INTO rooms (space_id, location_id, mailbox, digest, items_digest, sequence, observed_at, read_mode)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (space_id) DO UPDATE SET"
        " location_id = EXCLUDED.location_id, mailbox = EXCLUDED.mailbox, digest = EXCLUDED.digest,"
        " items_digest = EXCLUDED.items_digest, sequence = EXCLUDED.sequence, observed_at = EXCLUDED.observed_at,"
        " read_mode = EXCLUDED.read_mode, last_error = NULL, error_at = NULL",
        state.space_id, state.location_id, state.mailbox, digest, items_digest, state.sequence, state.observed_at,
        read_mode)
    await add_to_outbox(conn, OutboxEvent("freebusy.changed", "space", state))
    return RoomRecord(state.location_id, state.mailbox, digest, items_digest, state.sequence, None)


async def record_read(conn: Conn, space_id: str, location_id: str, *, items_digest: str | None,
                      read_mode: str, error: str | None, at: datetime) -> None:
    """A read that published nothing: its mode and error (or none) are kept for operators."""
    await conn.execute(
        "INSERT INTO rooms (space_id, location_id, items_digest, read_mode, last_error, error_at)"
        " VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::text IS NULL THEN NULL ELSE $6::timestamptz END)"
        " ON CONFLICT (space_id) DO UPDATE SET items_digest = coalesce(EXCLUDED.items_digest, rooms.items_digest),"
        " read_mode = EXCLUDED.read_mode, last_error = EXCLUDED.last_error, error_at = EXCLUDED.error_at",
        space_id, location_id, items_digest, read_mode, error, at)


async def first_seen(conn: Conn, space_id: str, item_ids: set[str], now: datetime) -> dict[str, datetime]:
    """When each of these items was first seen in the space's calendar (now for new ones); items no longer there
    are forgotten."""
    await conn.execute("DELETE FROM first_seen WHERE space_id = $1 AND NOT (item_id = ANY($2::text[]))",
                       space_id, list(item_ids))
    await conn.execute(
        "INSERT INTO first_seen (space_id, item_id, seen_at) SELECT $1, unnest($2::text[]), $3"
        " ON CONFLICT DO NOTHING", space_id, list(item_ids), now)
    rows = await conn.fetch("SELECT item_id, seen_at FROM first_seen WHERE space_id = $1", space_id)
    return {r["item_id"]: r["seen_at"] for r in rows}
