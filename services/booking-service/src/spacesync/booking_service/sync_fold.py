"""Kafka handler: folds exchange.sync so booking details show each slot's Sync ID or sync error."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from spacesync.booking_service import booking_store
from spacesync.common.db import Database
from spacesync.common.events import BookingSyncState, CloudEvent

log = logging.getLogger(__name__)


class SyncFold:
    """Folds a batch of outcomes in one transaction (stale or repeated sequences change nothing)."""

    def __init__(self, db: Database, own_source: str) -> None:
        self._db = db
        self._own_source = own_source

    async def __call__(self, events: list[tuple[CloudEvent, BaseModel]]) -> None:
        applied = 0
        async with self._db.acquire() as conn, conn.transaction():
            for event, data in events:
                if not isinstance(data, BookingSyncState):
                    raise TypeError(f"{event.type} on exchange.sync does not carry a booking sync state")
                if data.booking_source != self._own_source:
                    continue  # another producer's booking: its own service shows its Sync IDs
                applied += await booking_store.fold_sync(conn, data)
        log.debug("exchange.sync folded", extra={"events": len(events), "applied": applied})
