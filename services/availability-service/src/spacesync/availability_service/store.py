"""Postgres adapter: folds catalog, bookings and busy pictures into the availability schema (one statement per
kind per batch, the version/sequence guard in SQL), and reads what a slot grid needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spacesync.availability_service.domain import Booked, Busy, SpaceLayout, closed_because
from spacesync.availability_service.reading import BookingReading
from spacesync.common.db.pool import Conn
from spacesync.common.events.catalog import CategoryState, LocationState, OpeningHours, SpaceState
from spacesync.common.events.freebusy import FreeBusyState

# Every table of the view (a rebuild is compared with the live schema on these).
VIEW_TABLES = ("locations", "categories", "spaces", "bookings", "booked_slots", "busy_pictures", "busy_periods")


# The batch's bookings travel by COPY (binary, no per-value work in the driver: asyncpg's array encoding checks
# each element against an ABC, ~1/3 of the fold's client CPU); the temporary table lives as long as the session.
_INCOMING = ("CREATE TEMPORARY TABLE IF NOT EXISTS incoming_bookings"
             " (source text NOT NULL, booking_id text NOT NULL, version bigint NOT NULL) ON COMMIT DELETE ROWS")
_APPLY = (
    "INSERT INTO bookings (source, booking_id, version) SELECT source, booking_id, version FROM incoming_bookings"
    " ON CONFLICT (source, booking_id) DO UPDATE SET version = EXCLUDED.version"
    " WHERE bookings.version < EXCLUDED.version"
    " RETURNING source, booking_id, xmax = 0 AS fresh")
_SLOT_COLUMNS = ("source", "booking_id", "slot_id", "space_id", "start_at", "end_at", "patron", "nickname")


async def fold_bookings(conn: Conn, bookings: list[tuple[str, BookingReading]]) -> int:
    """Stores bookings (source, newest state in the batch; one per booking) newer than the stored version and
    replaces their booked slots. Returns how many were newer. Runs in the caller's transaction."""
    await conn.execute(_INCOMING)
    await conn.copy_records_to_table(
        "incoming_bookings", records=[(source, b.booking_id, b.version) for source, b in bookings])
    applied = await conn.fetch(_APPLY)
    replaced = [(row[0], row[1]) for row in applied if not row[2]]
    if replaced:  # a booking seen for the first time has no slots to remove
        await conn.execute(
            "DELETE FROM booked_slots b USING unnest($1::text[], $2::text[]) AS r(source, booking_id)"
            " WHERE b.source = r.source AND b.booking_id = r.booking_id",
            [source for source, _ in replaced], [booking_id for _, booking_id in replaced])
    keys = {(row[0], row[1]) for row in applied}
    rows = [(source, booking.booking_id, slot.slot_id, slot.space_id, slot.start, slot.end,
             f"{booking.patron.first_name} {booking.patron.last_name}", booking.public_nickname)
            for source, booking in bookings if (source, booking.booking_id) in keys
            for slot in booking.confirmed_slots()]
    if rows:
        await conn.copy_records_to_table("booked_slots", records=rows, columns=_SLOT_COLUMNS)
    return len(applied)


async def fold_location(conn: Conn, location: LocationState) -> bool:
    return await _applied(conn, (
        "INSERT INTO locations (location_id, version, timezone, active) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (location_id) DO UPDATE SET version = EXCLUDED.version, timezone = EXCLUDED.timezone,"
        "   active = EXCLUDED.active WHERE locations.version < EXCLUDED.version RETURNING true"),
        location.location_id, location.version, location.timezone, location.active)


async def fold_category(conn: Conn, category: CategoryState) -> bool:
    return await _applied(conn, (
        "INSERT INTO categories (category_id, version, location_id, public_nicknames, active)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (category_id) DO UPDATE SET version = EXCLUDED.version, location_id = EXCLUDED.location_id,"
        "   public_nicknames = EXCLUDED.public_nicknames, active = EXCLUDED.active"
        " WHERE categories.version < EXCLUDED.version RETURNING true"),
        category.category_id, category.version, category.location_id, category.public_nicknames, category.active)


async def fold_space(conn: Conn, space: SpaceState) -> bool:
    return await _applied(conn, (
        "INSERT INTO spaces (space_id, version, location_id, category_id, name, slot_minutes, opening_hours, active)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (space_id) DO UPDATE SET version = EXCLUDED.version, location_id = EXCLUDED.location_id,"
        "   category_id = EXCLUDED.category_id, name = EXCLUDED.name, slot_minutes = EXCLUDED.slot_minutes,"
        "   opening_hours = EXCLUDED.opening_hours, active = EXCLUDED.active"
        " WHERE spaces.version < EXCLUDED.version RETURNING true"),
        space.space_id, space.version, space.location_id, space.category_id, space.name, space.slot_minutes,
        space.opening_hours.model_dump(mode="json"), space.active)


async def fold_busy_picture(conn: Conn, picture: FreeBusyState) -> bool:
    """Replaces the space's busy picture when this one has a higher sequence."""
    applied = await _applied(conn, (
        "INSERT INTO busy_pictures (space_id, sequence, location_id, mailbox, window_start, window_end, observed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (space_id) DO UPDATE SET sequence = EXCLUDED.sequence, location_id = EXCLUDED.location_id,"
        "   mailbox = EXCLUDED.mailbox, window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,"
        "   observed_at = EXCLUDED.observed_at WHERE busy_pictures.sequence < EXCLUDED.sequence RETURNING true"),
        picture.space_id, picture.sequence, picture.location_id, picture.mailbox, picture.window_start,
        picture.window_end, picture.observed_at)
    if not applied:
        return False
    await conn.execute("DELETE FROM busy_periods WHERE space_id = $1", picture.space_id)
    if picture.busy:
        await conn.execute(
            "INSERT INTO busy_periods (space_id, start_at, end_at, status, organizer)"
            " SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[])",
            picture.space_id, [p.start for p in picture.busy], [p.end for p in picture.busy],
            [p.status.value for p in picture.busy], [p.organizer for p in picture.busy])
    return True


async def _applied(conn: Conn, sql: str, *args: object) -> bool:
    return bool(await conn.fetchval(sql, *args))


# -- reading ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpaceRow:
    location_id: str
    layout: SpaceLayout


_SPACES = (
    "SELECT s.space_id, s.location_id, s.name, s.slot_minutes, s.opening_hours, s.active,"
    "       l.timezone, l.active AS location_active, coalesce(c.active, true) AS category_active"
    "  FROM spaces s JOIN locations l USING (location_id) LEFT JOIN categories c USING (category_id)")


async def space(conn: Conn, space_id: str) -> SpaceRow | None:
    """A space whose location is known (a space is laid out in its location's time zone)."""
    row = await conn.fetchrow(_SPACES + " WHERE s.space_id = $1", space_id)
    return _space_row(row) if row is not None else None


async def location_timezone(conn: Conn, location_id: str) -> str | None:
    zone: str | None = await conn.fetchval("SELECT timezone FROM locations WHERE location_id = $1", location_id)
    return zone


async def spaces_of_location(conn: Conn, location_id: str) -> list[SpaceRow]:
    rows = await conn.fetch(_SPACES + " WHERE s.location_id = $1 ORDER BY s.name, s.space_id", location_id)
    return [_space_row(row) for row in rows]


def _space_row(r: Any) -> SpaceRow:  # an asyncpg Record of _SPACES
    return SpaceRow(r["location_id"], SpaceLayout(
        space_id=r["space_id"], name=r["name"], timezone=r["timezone"], slot_minutes=r["slot_minutes"],
        opening_hours=_opening_hours(r["opening_hours"]),
        closed_because=closed_because(space_active=r["active"], category_active=r["category_active"],
                                      location_active=r["location_active"])))


_HOURS_CACHE: dict[str, OpeningHours] = {}


def _opening_hours(raw: object) -> OpeningHours:
    """Parsed once per distinct value: a location's spaces mostly share their hours."""
    key = repr(raw)
    hours = _HOURS_CACHE.get(key)
    if hours is None:
        if len(_HOURS_CACHE) > 10_000:
            _HOURS_CACHE.clear()
        hours = _HOURS_CACHE[key] = OpeningHours.model_validate(raw)
    return hours


def _overlapping(table: str, columns: str) -> str:
    """Rows of `table` for spaces $1 overlapping [$2, $3): those starting at most a day before $2 through the
    (space_id, start_at) index, longer ones through the partial index."""
    select = f"SELECT space_id, start_at, end_at, {columns} FROM {table} WHERE space_id = ANY($1::text[])"
    start, end = "$2::timestamptz", "$3::timestamptz"
    return (f"{select} AND start_at < {end} AND start_at >= {start} - {LONG} AND end_at > {start}"
            f" UNION ALL {select} AND end_at - start_at > {LONG} AND start_at < {start} - {LONG}"
            f" AND end_at > {start} ORDER BY start_at")


LONG = "interval '1 day'"  # as in the partial indexes of the migration
_BOOKED = _overlapping("booked_slots", "source, booking_id, patron, nickname")
_BUSY = _overlapping("busy_periods", "organizer")


async def booked_between(conn: Conn, space_ids: list[str], start: datetime, end: datetime,
                         ) -> dict[str, list[Booked]]:
    found: dict[str, list[Booked]] = {}
    for r in await conn.fetch(_BOOKED, space_ids, start, end):
        found.setdefault(r["space_id"], []).append(Booked(r["start_at"], r["end_at"], r["source"], r["booking_id"],
                                                          r["patron"], r["nickname"]))
    return found


async def busy_between(conn: Conn, space_ids: list[str], start: datetime, end: datetime) -> dict[str, list[Busy]]:
    found: dict[str, list[Busy]] = {}
    for r in await conn.fetch(_BUSY, space_ids, start, end):
        found.setdefault(r["space_id"], []).append(Busy(r["start_at"], r["end_at"], r["organizer"]))
    return found
