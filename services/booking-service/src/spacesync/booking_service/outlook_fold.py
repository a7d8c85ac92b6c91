"""Kafka handler: folds exchange.freebusy, the Outlook/Exchange busy time that bookings may not overlap."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from spacesync.booking_service import outlook_store
from spacesync.booking_service.domain import newest_pictures
from spacesync.common.db import Database
from spacesync.common.events import CloudEvent, FreeBusyState

log = logging.getLogger(__name__)


class OutlookBusyFold:
    """Folds a batch of busy pictures in one transaction (stale or repeated sequences change nothing)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, events: list[tuple[CloudEvent, BaseModel]]) -> None:
        pictures = []
        for event, data in events:
            if not isinstance(data, FreeBusyState):
                raise TypeError(f"{event.type} on exchange.freebusy does not carry a busy picture")
            pictures.append(data)
        applied = 0
        async with self._db.acquire() as conn, conn.transaction():
            for picture in newest_pictures(pictures):
                applied += await outlook_store.fold_picture(conn, picture)
        log.debug("exchange.freebusy folded", extra={"events": len(events), "applied": applied})
