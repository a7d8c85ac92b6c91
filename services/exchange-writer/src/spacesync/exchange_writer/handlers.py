"""Kafka handlers: fold booking.events and catalog.events into the writer's schema, then wake the engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from spacesync.common.db import Database
from spacesync.common.db.pool import Conn
from spacesync.common.events import (
    BookingState,
    CategoryState,
    CloudEvent,
    ExchangeConnection,
    ImportRequest,
    LocationState,
    SpaceState,
)
from spacesync.common.exchange import ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError
from spacesync.exchange_writer import catalog_store

log = logging.getLogger(__name__)


class BookingFold:
    """Folds a batch of booking events in one transaction: the newest version of each booking wins."""

    def __init__(self, db: Database, wake: Callable[[], None]) -> None:
        self._db = db
        self._wake = wake

    async def __call__(self, events: list[tuple[CloudEvent, BaseModel]]) -> None:
        newest: dict[tuple[str, str], tuple[BookingState, datetime]] = {}
        for event, data in events:
            if not isinstance(data, BookingState):
                raise TypeError(f"{event.type} on booking.events does not carry a booking state")
            key = (event.source, data.booking_id)
            if key not in newest or newest[key][0].version < data.version:
                newest[key] = (data, event.time)
        async with self._db.acquire() as conn, conn.transaction():
            applied = await catalog_store.fold_bookings(
                conn, [(source, booking, at) for (source, _), (booking, at) in newest.items()])
        if applied:
            self._wake()
        log.debug("booking events folded", extra={"events": len(events), "applied": applied})


class CatalogFold:
    def __init__(self, db: Database, wake: Callable[[], None], gateway: ExchangeGateway,
                 secrets: SecretBox) -> None:
        self._db = db
        self._wake = wake
        self._gateway = gateway
        self._secrets = secrets

    async def __call__(self, events: list[tuple[CloudEvent, BaseModel]]) -> None:
        retired: list[ExchangeConnection] = []
        async with self._db.acquire() as conn, conn.transaction():
            for event, data in events:
                previous = await self._fold(conn, event, data)
                if previous is not None:
                    retired.append(previous)
        for connection in retired:
            self._forget(connection)
        self._wake()

    async def _fold(self, conn: Conn, event: CloudEvent, data: BaseModel) -> ExchangeConnection | None:
        """Folds one catalog event; returns a location's previous Exchange connection when it changed."""
        if isinstance(data, LocationState):
            return await catalog_store.fold_location(conn, data)
        if isinstance(data, CategoryState):
            await catalog_store.fold_category(conn, data)
        elif isinstance(data, SpaceState):
            await catalog_store.fold_space(conn, data)
        elif isinstance(data, ImportRequest):
            if not await catalog_store.request_import(conn, data.space_id, data.requested_at):
                log.warning("import requested for a space the writer does not know",
                            extra={"space_id": data.space_id, "request_id": data.request_id})
        else:
            raise TypeError(f"{event.type} is not a catalog event")
        return None

    def _forget(self, previous: ExchangeConnection) -> None:
        """Old credentials are dropped from the gateway's cache (exchangelib caches protocols per process)."""
        with contextlib.suppress(SecretError, ValueError):
            self._gateway.forget(ExchangeServer.from_connection(previous, self._secrets))
