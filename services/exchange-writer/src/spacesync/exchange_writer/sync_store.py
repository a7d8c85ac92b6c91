"""Postgres adapter for the sync engine: claiming bookings that need a pass, their slot records, outcomes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from spacesync.common.db.pool import Conn
from spacesync.common.events.booking import BookingState
from spacesync.common.events.catalog import CategoryState, ExchangeConnection, LocationState, SpaceState
from spacesync.common.events.sync import BookingSyncState, SlotSyncState
from spacesync.common.exchange import ItemRef
from spacesync.common.outbox import OutboxEvent, add_to_outbox
from spacesync.exchange_writer.plan import SlotRecord, SpacePairing

BookingKey = tuple[str, str]
"""(ce_source, booking id): booking ids are unique per source."""


class LeaseLost(Exception):
    """Another replica holds the booking now (this pass outlived its lease): nothing more is recorded."""


@dataclass(frozen=True)
class Claim:
    source: str
    booking_id: str
    generation: int

    @property
    def key(self) -> BookingKey:
        return (self.source, self.booking_id)


@dataclass(frozen=True)
class BookingWork:
    """Everything one pass over a booking needs, read in one transaction."""

    claim: Claim
    booking: BookingState
    event_time: datetime
    records: dict[str, SlotRecord]
    record_spaces: dict[str, str]
    spaces: dict[str, SpacePairing]
    locations: dict[str, LocationState]
    categories: dict[str, CategoryState]
    sync_sequence: int
    published_fingerprint: str | None
    retired_connections: dict[str, ExchangeConnection]
    """Per location: the Exchange connection it had before it was disconnected (for removals)."""


async def claim(conn: Conn, owner: str, limit: int, lease: timedelta, *,
                exclude: list[BookingKey]) -> list[Claim]:
    """Leases bookings due for a pass, oldest first; replicas skip each other's rows, and this replica's passes
    in flight (`exclude`) are not claimed twice."""
    rows = await conn.fetch(
        "UPDATE bookings b SET lease_owner = $1, lease_until = now() + $2::interval"
        "  FROM (SELECT source, booking_id FROM bookings"
        "         WHERE generation <> processed_generation AND next_attempt_at <= now()"
        "           AND (lease_until IS NULL OR lease_until < now())"
        "           AND NOT (source, booking_id) = ANY(SELECT * FROM unnest($4::text[], $5::text[]))"
        "         ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) due"
        " WHERE b.source = due.source AND b.booking_id = due.booking_id"
        " RETURNING b.source, b.booking_id, b.generation",
        owner, lease, limit, [k[0] for k in exclude], [k[1] for k in exclude])
    return [Claim(r["source"], r["booking_id"], r["generation"]) for r in rows]


async def renew_leases(conn: Conn, owner: str, keys: list[BookingKey], lease: timedelta) -> None:
    await conn.execute(
        "UPDATE bookings SET lease_until = now() + $2::interval WHERE lease_owner = $1"
        " AND (source, booking_id) = ANY(SELECT * FROM unnest($3::text[], $4::text[]))",
        owner, lease, [k[0] for k in keys], [k[1] for k in keys])


async def hold_lease(conn: Conn, work: Claim, owner: str) -> None:
    """Inside a transaction: locks the booking row while this replica still holds its lease; else LeaseLost.
    Fences every record a pass writes, so a pass that outlived its lease cannot overwrite its successor's."""
    held = await conn.fetchval(
        "SELECT true FROM bookings WHERE source = $1 AND booking_id = $2 AND lease_owner = $3"
        " AND lease_until > now() FOR UPDATE", work.source, work.booking_id, owner)
    if not held:
        raise LeaseLost(f"{work.source} {work.booking_id}")


async def release_earlier_runs(conn: Conn, instance_id: str, owner: str) -> int:
    """Leases an earlier run of this instance held (it crashed or was killed): free now, not in a lease time."""
    result = await conn.execute(
        "UPDATE bookings SET lease_owner = NULL, lease_until = NULL"
        " WHERE starts_with(lease_owner, $1 || '/') AND lease_owner <> $2", instance_id, owner)
    return int(result.split()[-1])


async def release_leases_at_stop(conn: Conn, owner: str, settle: timedelta) -> None:
    """This run's leases at shutdown, due again once a call cut off in a worker thread can no longer land."""
    await conn.execute(
        "UPDATE bookings SET lease_owner = NULL, lease_until = NULL,"
        " next_attempt_at = greatest(next_attempt_at, now() + $2::interval) WHERE lease_owner = $1", owner, settle)


async def load(conn: Conn, work: Claim) -> BookingWork:
    row = await conn.fetchrow("SELECT * FROM bookings WHERE source = $1 AND booking_id = $2",
                              work.source, work.booking_id)
    assert row is not None
    booking = BookingState.model_validate(row["state"])
    slot_rows = await conn.fetch("SELECT * FROM slots WHERE source = $1 AND booking_id = $2",
                                 work.source, work.booking_id)
    records = {r["slot_id"]: _record(r) for r in slot_rows}
    space_ids = {s.space_id for s in booking.slots} | {r["space_id"] for r in slot_rows}
    space_rows = await conn.fetch("SELECT * FROM spaces WHERE space_id = ANY($1::text[])", list(space_ids))
    spaces = {r["space_id"]: _pairing(r) for r in space_rows}
    location_ids = {s.location_id for s in spaces.values()} | {r["location_id"] for r in slot_rows
                                                                 if r["location_id"]}
    location_rows = await conn.fetch("SELECT * FROM locations WHERE location_id = ANY($1::text[])",
                                     list(location_ids))
    locations = {r["location_id"]: LocationState.model_validate(r["state"]) for r in location_rows}
    retired = {r["location_id"]: ExchangeConnection.model_validate(r["retired_exchange"]) for r in location_rows
               if r["retired_exchange"] is not None}
    categories = {r["category_id"]: CategoryState.model_validate(r["state"]) for r in await conn.fetch(
        "SELECT state, category_id FROM categories WHERE category_id = ANY($1::text[])",
        list({s.category_id for s in spaces.values()}))}
    return BookingWork(work, booking, row["event_time"], records, {r["slot_id"]: r["space_id"] for r in slot_rows},
                       spaces, locations, categories, row["sync_sequence"], row["published_fingerprint"], retired)


def _record(row: asyncpg.Record) -> SlotRecord:
    item = ItemRef(row["item_id"], row["change_key"] or "") if row["item_id"] else None
    return SlotRecord(slot_id=row["slot_id"], state=SlotSyncState(row["state"]), mailbox=row["mailbox"],
                      location_id=row["location_id"], item=item, fingerprint=row["fingerprint"],
                      create_intent=row["create_intent"], attempts=row["attempts"], last_error=row["last_error"])


def _pairing(row: asyncpg.Record) -> SpacePairing:
    space = SpaceState.model_validate(row["state"])
    return SpacePairing(space_id=space.space_id, name=space.name, location_id=space.location_id,
                        category_id=space.category_id, resource=space.exchange_resource,
                        paired_at=space.paired_at, import_requested_at=row["import_requested_at"])


async def save_records(conn: Conn, work: Claim, records: Iterable[tuple[str, SlotRecord]]) -> None:
    """Upserts slot records (space id, record); `synced_at` moves only when a slot becomes synced."""
    rows = [(work.source, work.booking_id, r.slot_id, space_id, r.state.value, r.mailbox, r.location_id,
             r.item.item_id if r.item else None, r.item.change_key if r.item else None, r.fingerprint,
             r.create_intent, r.attempts, r.last_error) for space_id, r in records]
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO slots (source, booking_id, slot_id, space_id, state, mailbox, location_id, item_id,"
        "  change_key, fingerprint, create_intent, attempts, last_error, synced_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
        "         CASE WHEN $5 = 'synced' THEN now() END)"
        " ON CONFLICT (source, booking_id, slot_id) DO UPDATE SET space_id = EXCLUDED.space_id,"
        "  state = EXCLUDED.state, mailbox = EXCLUDED.mailbox, location_id = EXCLUDED.location_id,"
        "  item_id = EXCLUDED.item_id, change_key = EXCLUDED.change_key, fingerprint = EXCLUDED.fingerprint,"
        "  create_intent = EXCLUDED.create_intent, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,"
        "  updated_at = now(), synced_at = CASE WHEN EXCLUDED.state = 'synced'"
        "    AND (slots.state <> 'synced' OR slots.change_key IS DISTINCT FROM EXCLUDED.change_key)"
        "    THEN now() ELSE slots.synced_at END", rows)


async def publish(conn: Conn, work: BookingWork, event_type: str, state: BookingSyncState,
                  fingerprint: str) -> None:
    await conn.execute(
        "UPDATE bookings SET sync_sequence = $3, published_fingerprint = $4 WHERE source = $1 AND booking_id = $2",
        work.claim.source, work.claim.booking_id, state.sequence, fingerprint)
    await add_to_outbox(conn, OutboxEvent(event_type, "booking", state))


async def finish(conn: Conn, work: Claim, owner: str, retry_at: datetime | None) -> None:
    """Releases the lease. Done (retry_at None): this generation is processed. Otherwise the booking is due
    again at retry_at, unless a newer change arrived meanwhile, which makes it due now."""
    await conn.execute(
        "UPDATE bookings SET lease_owner = NULL, lease_until = NULL,"
        " processed_generation = CASE WHEN $4::timestamptz IS NULL THEN $3 ELSE processed_generation END,"
        " next_attempt_at = CASE WHEN generation = $3 AND $4::timestamptz IS NOT NULL THEN $4 ELSE now() END"
        " WHERE source = $1 AND booking_id = $2 AND lease_owner = $5",
        work.source, work.booking_id, work.generation, retry_at, owner)


async def count_slots(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM slots GROUP BY state")
    counts: dict[str, Any] = {state.value: 0 for state in SlotSyncState}
    counts.update({r["state"]: r["n"] for r in rows})
    return counts


async def count_due(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM bookings WHERE generation <> processed_generation"))
