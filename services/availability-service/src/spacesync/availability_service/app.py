"""Composition root: wires Postgres, the three Kafka folds (FastStream), consumer lag and the HTTP views."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from spacesync.availability_service.api import SlotViews, admin_router, public_router
from spacesync.availability_service.handlers import READERS, folds
from spacesync.availability_service.lag import watch_lag
from spacesync.availability_service.settings import AvailabilitySettings
from spacesync.common.db import Database, migrate_service
from spacesync.common.events import Topic
from spacesync.common.http import HealthChecks, health_router, install_problem_handlers, require_admin
from spacesync.common.http.metrics import instrument_http
from spacesync.common.kafka import BrokerConnection, create_broker, subscribe_event_batches
from spacesync.common.loop_lag import watch_event_loop

SERVICE = "availability-service"
PACKAGE = "spacesync.availability_service"
MIGRATIONS_PREFIX = "availability"
DESCRIPTIONS = {
    Topic.CATALOG_EVENTS: "Locations (time zone), categories and spaces (opening hours, slot length)",
    Topic.BOOKING_EVENTS: "Bookings of every source: their confirmed slots are booked",
    Topic.EXCHANGE_FREEBUSY: "Busy pictures of paired rooms: 'BUSY in Outlook'",
}


def create_app(settings: AvailabilitySettings) -> FastAPI:
    dsn = settings.postgres.dsn.get_secret_value()
    db = Database(dsn, settings.schema_name, min_size=settings.postgres.pool_min_size,
                  max_size=settings.postgres.pool_max_size)
    broker = create_broker(settings.kafka, service=SERVICE)
    for topic, handler in folds(db, settings.fold_connections).items():
        subscribe_event_batches(broker, settings.kafka, topic, group_id=settings.consumer_group, handler=handler,
                                max_records=settings.fold_batch_records, description=DESCRIPTIONS[topic],
                                readers=READERS,
                                consumers=settings.fold_consumers if topic is Topic.BOOKING_EVENTS else 1)
    kafka = BrokerConnection(broker, settings.kafka, create_topics=settings.create_topics)
    topics = [settings.kafka.topic(topic.value) for topic in DESCRIPTIONS]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate_service(dsn, settings.schema_name, PACKAGE, MIGRATIONS_PREFIX)
        await db.open()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("kafka-connect", kafka.run()), ("event-loop-lag", watch_event_loop()),
            ("consumer-lag", watch_lag(settings.kafka, settings.consumer_group, topics,
                                       settings.lag_interval_seconds)))]
        try:
            yield
        finally:
            await broker.stop()  # the batch in flight finishes and commits
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
            await db.close()

    app = FastAPI(title="Spacesync availability-service", version="0.1.0", lifespan=lifespan,
                  description="Slot views folded from the catalog, bookings and Exchange busy time.")
    install_problem_handlers(app)
    app.state.db = db
    app.state.kafka = kafka
    views = SlotViews(db, settings.max_days)
    app.state.views = views
    app.include_router(public_router(views))
    app.include_router(admin_router(views, require_admin(settings.admin_token)))

    async def postgres_ok() -> None:
        async with db.acquire() as conn:
            await conn.fetchval("SELECT 1")

    app.include_router(health_router(HealthChecks(required={"postgres": postgres_ok, "kafka": kafka.check})))
    instrument_http(app)
    return app
