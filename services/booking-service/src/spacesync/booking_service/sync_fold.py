"""Kafka handler: folds exchange.sync so booking details show each slot's Sync ID or sync error."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from spacesync.booking_service import booking_store
from spacesync.common.db import Database
from spacesync.common.events import BookingSyncState, CloudEvent, InvalidEvent

log = logging.getLogger(__name__)


class SyncFold:
    def __init__(self, db: Database, own_source: str) -> None:
        self._db = db
        self._own_source = own_source

    async def __call__(self, event: CloudEvent, data: BaseModel) -> None:
        if not isinstance(data, BookingSyncState):
            raise InvalidEvent(f"{event.type} does not carry a booking sync state")
        if data.booking_source != self._own_source:
            return  # another producer's booking: its own service shows its Sync IDs
        async with self._db.acquire() as conn, conn.transaction():
            applied = await booking_store.fold_sync(conn, data)
        log.debug("exchange.sync folded", extra={"booking_id": data.booking_id, "applied": applied})
