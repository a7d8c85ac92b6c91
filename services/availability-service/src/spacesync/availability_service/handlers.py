"""Kafka handlers: each folds a batch of one topic (bookings in a few transactions at once, the rest in one); the
newest version (or sequence) of each aggregate in the batch goes to the store, whose SQL guard drops anything not
newer than what is stored. The offsets are committed once the handler returned."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally

from pydantic import BaseModel

from spacesync.availability_service import metrics, store
from spacesync.availability_service.reading import READERS as READERS  # what the folds read (app, rebuild)
from spacesync.availability_service.reading import BookingReading
from spacesync.common.db import Database
from spacesync.common.events import (
    CategoryState,
    CloudEvent,
    FreeBusyState,
    ImportRequest,
    LocationState,
    SpaceState,
    Topic,
)

Batch = list[tuple[CloudEvent, BaseModel]]


AGE_SAMPLES = 64  # per batch: a histogram observation costs as much as a tenth of a fold per event


def observe(topic: Topic, events: Batch, changed: int) -> None:
    now = time.time()
    age = metrics.EVENT_AGE.labels(topic.value)
    for event, _ in events[::max(1, len(events) // AGE_SAMPLES)]:
        age.observe(max(0.0, now - event.time.timestamp()))
    for ce_type, count in Tally(event.type for event, _ in events).items():
        metrics.FOLDED.labels(ce_type).inc(count)
    metrics.STALE.labels(topic.value).inc(len(events) - changed)


class BookingFold:
    """Folds the batch's bookings in `connections` transactions at once, each a disjoint share of the bookings,
    so Postgres works on them on several cores. A failed share fails the batch, which is then folded again:
    the shares that committed are stale the second time, so this changes nothing."""

    def __init__(self, db: Database, connections: int = 1) -> None:
        self._db = db
        self._connections = connections

    async def __call__(self, events: Batch) -> None:
        newest: dict[tuple[str, str], BookingReading] = {}
        for event, data in events:
            if not isinstance(data, BookingReading):
                raise TypeError(f"{event.type} on booking.events does not carry a booking state")
            key = (event.source, data.booking_id)
            if key not in newest or newest[key].version < data.version:
                newest[key] = data
        shares: list[list[tuple[str, BookingReading]]] = [[] for _ in range(self._connections)]
        for (source, booking_id), booking in newest.items():
            shares[hash(booking_id) % self._connections].append((source, booking))
        changed = await asyncio.gather(*(self._fold(share) for share in shares if share))
        observe(Topic.BOOKING_EVENTS, events, sum(changed))

    async def _fold(self, bookings: list[tuple[str, BookingReading]]) -> int:
        async with self._db.acquire() as conn, conn.transaction():
            return await store.fold_bookings(conn, bookings)


class CatalogFold:
    """Catalog changes are few: one statement per event, in one transaction per batch."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, events: Batch) -> None:
        changed = 0
        async with self._db.acquire() as conn, conn.transaction():
            for event, data in events:
                if isinstance(data, LocationState):
                    changed += await store.fold_location(conn, data)
                elif isinstance(data, CategoryState):
                    changed += await store.fold_category(conn, data)
                elif isinstance(data, SpaceState):
                    changed += await store.fold_space(conn, data)
                elif not isinstance(data, ImportRequest):  # an import changes no slot
                    raise TypeError(f"{event.type} is not a catalog event")
        observe(Topic.CATALOG_EVENTS, events, changed)


class FreeBusyFold:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, events: Batch) -> None:
        newest: dict[str, FreeBusyState] = {}
        for event, data in events:
            if not isinstance(data, FreeBusyState):
                raise TypeError(f"{event.type} on exchange.freebusy does not carry a busy picture")
            if data.space_id not in newest or newest[data.space_id].sequence < data.sequence:
                newest[data.space_id] = data
        changed = 0
        async with self._db.acquire() as conn, conn.transaction():
            for picture in newest.values():
                changed += await store.fold_busy_picture(conn, picture)
        observe(Topic.EXCHANGE_FREEBUSY, events, changed)


def folds(db: Database, connections: int = 1) -> dict[Topic, BookingFold | CatalogFold | FreeBusyFold]:
    """The handler of each topic: the live service and the rebuild fold with the same code."""
    return {Topic.CATALOG_EVENTS: CatalogFold(db), Topic.BOOKING_EVENTS: BookingFold(db, connections),
            Topic.EXCHANGE_FREEBUSY: FreeBusyFold(db)}
