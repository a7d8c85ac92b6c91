"""Kafka handlers: fold booking.events and catalog.events into the writer's schema, then wake the engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from pydantic import BaseModel

from spacesync.common.db import Database
from spacesync.common.events import (
    BookingState,
    CategoryState,
    CloudEvent,
    ExchangeConnection,
    ImportRequest,
    InvalidEvent,
    LocationState,
    SpaceState,
)
from spacesync.common.exchange import ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError
from spacesync.exchange_writer import catalog_store

log = logging.getLogger(__name__)


class BookingFold:
    def __init__(self, db: Database, wake: Callable[[], None]) -> None:
        self._db = db
        self._wake = wake

    async def __call__(self, event: CloudEvent, data: BaseModel) -> None:
        if not isinstance(data, BookingState):
            raise InvalidEvent(f"{event.type} does not carry a booking state")
        async with self._db.acquire() as conn, conn.transaction():
            applied = await catalog_store.fold_booking(conn, event.source, data, event.time)
        if applied:
            self._wake()
        else:
            log.debug("stale or repeated booking event ignored",
                      extra={"booking_id": data.booking_id, "version": data.version, "source": event.source})


class CatalogFold:
    def __init__(self, db: Database, wake: Callable[[], None], gateway: ExchangeGateway,
                 secrets: SecretBox) -> None:
        self._db = db
        self._wake = wake
        self._gateway = gateway
        self._secrets = secrets

    async def __call__(self, event: CloudEvent, data: BaseModel) -> None:
        async with self._db.acquire() as conn, conn.transaction():
            if isinstance(data, LocationState):
                previous = await catalog_store.fold_location(conn, data)
                if previous is not None:
                    self._forget(previous)
            elif isinstance(data, CategoryState):
                await catalog_store.fold_category(conn, data)
            elif isinstance(data, SpaceState):
                await catalog_store.fold_space(conn, data)
            elif isinstance(data, ImportRequest):
                if not await catalog_store.request_import(conn, data.space_id, data.requested_at):
                    log.warning("import requested for a space the writer does not know",
                                extra={"space_id": data.space_id, "request_id": data.request_id})
            else:
                raise InvalidEvent(f"{event.type} is not a catalog event")
        self._wake()

    def _forget(self, previous: ExchangeConnection) -> None:
        """Old credentials are dropped from the gateway's cache (exchangelib caches protocols per process)."""
        with contextlib.suppress(SecretError, ValueError):
            self._gateway.forget(ExchangeServer.from_connection(previous, self._secrets))
