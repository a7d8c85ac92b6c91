"""Postgres adapter for Outlook/Exchange busy time: the fold of exchange.freebusy and the check bookings make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from spacesync.booking_service.domain import RequestedSlot
from spacesync.common.db.pool import Conn
from spacesync.common.events.freebusy import FreeBusyState


@dataclass(frozen=True)
class OutlookBusy:
    """An Outlook meeting that a requested slot overlaps."""

    slot: int
    """Index of the slot in the request."""
    space_id: UUID
    space_name: str
    start: datetime
    end: datetime


async def busy_overlaps(conn: Conn, slots: Sequence[tuple[int, RequestedSlot]]) -> list[OutlookBusy]:
    """The Outlook busy periods the (index, slot) pairs overlap, in request order.

    Locks the spaces' pictures (shared) until the transaction ends: a newer picture is folded either before
    this check (and seen by it) or after the booking commits, never in between. Locks are taken in space id
    order, like the fold takes them, so the two never deadlock.
    """
    if not slots:
        return []
    await conn.execute("SELECT 1 FROM outlook_pictures WHERE space_id = ANY($1::uuid[]) ORDER BY space_id FOR SHARE",
                       list({slot.space_id for _, slot in slots}))
    rows = await conn.fetch(
        "SELECT r.slot, b.space_id, sp.name, lower(b.during) AS start, upper(b.during) AS end"
        "  FROM unnest($1::int[], $2::uuid[], $3::timestamptz[], $4::timestamptz[])"
        "       AS r(slot, space_id, start_at, end_at)"
        "  JOIN outlook_busy b ON b.space_id = r.space_id AND b.during && tstzrange(r.start_at, r.end_at)"
        "  JOIN spaces sp ON sp.id = b.space_id"
        " ORDER BY r.slot, lower(b.during)",
        [index for index, _ in slots], [s.space_id for _, s in slots], [s.start for _, s in slots],
        [s.end for _, s in slots])
    return [OutlookBusy(r["slot"], r["space_id"], r["name"], r["start"], r["end"]) for r in rows]


async def fold_picture(conn: Conn, picture: FreeBusyState) -> bool:
    """Replaces the space's busy set when the picture's sequence is higher; False when it is stale, repeated or of
    a space we do not know. A space id that is no UUID raises DataError (the consumer dead-letters it)."""
    space_id = await conn.fetchval(
        "UPDATE outlook_pictures SET sequence = $2, mailbox = $3, window_start = $4, window_end = $5,"
        " observed_at = $6, folded_at = now() WHERE space_id = $1::uuid AND sequence < $2 RETURNING space_id",
        picture.space_id, picture.sequence, picture.mailbox, picture.window_start, picture.window_end,
        picture.observed_at)
    if space_id is None:
        return False
    # Only the difference is written: a picture usually differs from the last one by a meeting or two, and
    # bookings into the room wait for this transaction.
    await conn.execute(
        "WITH new AS ("
        "   SELECT tstzrange(b.start_at, b.end_at) AS during, b.status, b.organizer"
        "     FROM unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[])"
        "          AS b(start_at, end_at, status, organizer)),"
        " gone AS ("
        "   DELETE FROM outlook_busy o WHERE o.space_id = $1 AND NOT EXISTS ("
        "     SELECT 1 FROM new WHERE (new.during, new.status) = (o.during, o.status)"
        "        AND new.organizer IS NOT DISTINCT FROM o.organizer))"
        " INSERT INTO outlook_busy (space_id, during, status, organizer)"
        " SELECT $1, new.during, new.status, new.organizer FROM new WHERE NOT EXISTS ("
        "   SELECT 1 FROM outlook_busy o WHERE o.space_id = $1 AND (o.during, o.status) = (new.during, new.status)"
        "      AND o.organizer IS NOT DISTINCT FROM new.organizer)",
        space_id, [b.start for b in picture.busy], [b.end for b in picture.busy],
        [b.status.value for b in picture.busy], [b.organizer for b in picture.busy])
    return True


async def picture(conn: Conn, space_id: UUID, since: datetime, *, limit: int,
                  ) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The space's picture and its first `limit` busy periods that end after `since` (admin view)."""
    row = await conn.fetchrow("SELECT * FROM outlook_pictures WHERE space_id = $1", space_id)
    assert row is not None  # created with the space
    busy = await conn.fetch(
        "SELECT lower(during) AS start, upper(during) AS end, status, organizer FROM outlook_busy"
        " WHERE space_id = $1 AND during && tstzrange($2, NULL) ORDER BY lower(during) LIMIT $3",
        space_id, since, limit)
    return row, busy
