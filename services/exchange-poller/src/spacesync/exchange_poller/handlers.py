"""Kafka handler: folds catalog.events (locations' Exchange settings, spaces' pairings) into the poller's schema,
then tells the engine. Categories and import requests are not the poller's concern."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from spacesync.common.db import Database
from spacesync.common.events import CategoryState, CloudEvent, ImportRequest, LocationState, SpaceState
from spacesync.exchange_poller import store


class CatalogFold:
    def __init__(self, db: Database, changed: Callable[[], None]) -> None:
        self._db = db
        self._changed = changed

    async def __call__(self, events: list[tuple[CloudEvent, BaseModel]]) -> None:
        applied = False
        async with self._db.acquire() as conn, conn.transaction():
            for event, data in events:
                if isinstance(data, LocationState):
                    applied |= await store.fold_location(conn, data)
                elif isinstance(data, SpaceState):
                    applied |= await store.fold_space(conn, data)
                elif not isinstance(data, CategoryState | ImportRequest):
                    raise TypeError(f"{event.type} is not a catalog event")
        if applied:
            self._changed()
