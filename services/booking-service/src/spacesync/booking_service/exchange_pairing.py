"""A space's pairing with an Exchange resource mailbox: 'Save & Test', disconnect, and its sync state."""

from __future__ import annotations

import logging
from uuid import UUID

import asyncpg

from spacesync.booking_service import exchange_store as store
from spacesync.booking_service import outlook_store
from spacesync.booking_service.api.models import (
    OutlookBusyView,
    OutlookMeeting,
    Paired,
    PairingView,
    SyncError,
    SyncSummary,
)
from spacesync.booking_service.catalog_store import exchange_connection
from spacesync.booking_service.exchange_admin import CHECKS, ExchangeAdmin
from spacesync.booking_service.exchange_errors import CheckFailed, Conflict, NotFound
from spacesync.common.db import Database
from spacesync.common.events.catalog import ExchangeConnection
from spacesync.common.exchange import ExchangeError, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError

log = logging.getLogger(__name__)


class ExchangePairing(ExchangeAdmin):
    async def pair(self, space_id: UUID, resource: str) -> Paired:
        space, location, connection = await connected_space(self._db, space_id)
        async with self._db.acquire() as conn:
            holder = await store.space_holding(conn, resource)
        if holder is not None and holder["id"] != space_id:
            raise _in_use(resource, f"space {holder['name']!r}")
        try:
            await self._gateway.check_resource(server_for(location, connection, self._secrets), resource)
        except ExchangeError as error:
            CHECKS.labels("resource", error.problem.value).inc()
            log.info("exchange resource check failed", extra={"space_id": str(space_id), "resource": resource,
                                                              "problem": error.problem.value})
            raise CheckFailed("pairing", error) from None
        CHECKS.labels("resource", "ok").inc()
        message = (f"{space['name']} is paired with {resource}: the mailbox exists and {connection.username} may "
                   "write its calendar.")
        if space["exchange_resource"] == resource:
            message += " It already was; bookings that could not be written there are tried again."
        try:
            async with self._db.acquire() as conn, conn.transaction():
                locked = await store.lock_location(conn, location["id"], exclusive=False)
                if locked is None or exchange_connection(locked) is None:
                    raise _not_connected(location["name"])
                if await store.save_pairing(conn, space_id, location["id"], resource) is None:
                    raise Conflict("space-moved", "The space moved to another location meanwhile; try again.")
        except asyncpg.UniqueViolationError:
            raise _in_use(resource, "another space") from None
        log.info("space paired", extra={"space_id": str(space_id), "resource": resource})
        return Paired(message=message, pairing=await self.state(space_id))

    async def unpair(self, space_id: UUID) -> Paired:
        async with self._db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM spaces WHERE id = $1 FOR UPDATE", space_id)
            if row is None:
                raise NotFound(f"No space {space_id}.")
            if row["exchange_resource"] is None:
                raise NotFound(f"Space {row['name']!r} is not paired with an Exchange resource.")
            await store.save_pairing(conn, space_id, row["location_id"], None)
        log.info("space unpaired", extra={"space_id": str(space_id), "resource": row["exchange_resource"]})
        return Paired(message=f"{row['name']} is no longer paired with {row['exchange_resource']}; its "
                              "appointments are being removed from that calendar.",
                      pairing=await self.state(space_id))

    async def state(self, space_id: UUID) -> PairingView:
        now = self._clock()
        async with self._db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            found = await store.space_with_location(conn, space_id)
            if found is None:
                raise NotFound(f"No space {space_id}.")
            space, location = found
            counts = await store.sync_counts(conn, space_id, now)
            error = await store.last_sync_error(conn, space_id)
            picture, upcoming = await outlook_store.picture(conn, space_id, now, limit=100)
        summary = SyncSummary(
            future_slots=sum(counts.values()), not_reported=counts.get("not_reported", 0),
            pending=counts.get("pending", 0), synced=counts.get("synced", 0), failed=counts.get("failed", 0),
            removed=counts.get("removed", 0),
            last_error=SyncError(slot_id=error["id"], booking_id=error["booking_id"], error=error["sync_error"],
                                 attempts=error["sync_attempts"], at=error["synced_at"]) if error else None)
        return PairingView(space_id=space_id, location_connected=location["exchange_server"] is not None,
                           resource=space["exchange_resource"], paired_at=space["paired_at"], sync=summary,
                           outlook_busy=OutlookBusyView(
                               sequence=picture["sequence"], mailbox=picture["mailbox"],
                               window_start=picture["window_start"], window_end=picture["window_end"],
                               observed_at=picture["observed_at"],
                               upcoming=[OutlookMeeting(**meeting) for meeting in upcoming]))


async def connected_space(db: Database, space_id: UUID) -> tuple[asyncpg.Record, asyncpg.Record, ExchangeConnection]:
    """The space, its location and the location's Exchange settings; Conflict when it is not connected."""
    async with db.acquire() as conn:
        found = await store.space_with_location(conn, space_id)
    if found is None:
        raise NotFound(f"No space {space_id}.")
    space, location = found
    connection = exchange_connection(location)
    if connection is None:
        raise _not_connected(location["name"])
    return space, location, connection


def server_for(location: asyncpg.Record, connection: ExchangeConnection, secrets: SecretBox) -> ExchangeServer:
    try:
        return ExchangeServer.from_connection(connection, secrets)
    except SecretError:
        raise Conflict("exchange-password-unreadable", f"The stored Exchange password of {location['name']!r} "
                       "cannot be decrypted with the configured keys (SPACESYNC_SECRET_KEYS changed?): enter it "
                       "again in the location's Outlook/Exchange settings.") from None


def _not_connected(location_name: str) -> Conflict:
    return Conflict("exchange-not-connected", f"Location {location_name!r} is not connected to Outlook/Exchange: "
                                              "save its Outlook/Exchange settings first.")


def _in_use(resource: str, holder: str) -> Conflict:
    return Conflict("resource-in-use", f"{resource} is already paired with {holder}: one resource calendar "
                                       "belongs to one space.")
