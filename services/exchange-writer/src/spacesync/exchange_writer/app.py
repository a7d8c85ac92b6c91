"""Composition root: wires Postgres, Kafka (FastStream), the Exchange gateway, the sync engine and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from spacesync.common.db import Database, migrate_service
from spacesync.common.events import Topic
from spacesync.common.exchange import ExchangeGateway
from spacesync.common.http import HealthChecks, health_router, install_problem_handlers
from spacesync.common.kafka import BrokerConnection, BrokerSender, create_broker, subscribe_event_batches
from spacesync.common.loop_lag import watch_event_loop
from spacesync.common.outbox import OutboxRelay
from spacesync.common.secrets import SecretBox
from spacesync.exchange_writer import metrics, sync_store
from spacesync.exchange_writer.engine import EngineSettings, SyncEngine
from spacesync.exchange_writer.handlers import BookingFold, CatalogFold
from spacesync.exchange_writer.settings import WriterSettings

log = logging.getLogger(__name__)
SERVICE = "exchange-writer"
GAUGE_INTERVAL_SECONDS = 15.0
SHUTDOWN_MARGIN_SECONDS = 5.0  # beyond the grace period: cancelled passes unwind, leases are released


def create_app(settings: WriterSettings) -> FastAPI:
    dsn = settings.postgres.dsn.get_secret_value()
    db = Database(dsn, settings.schema_name, min_size=settings.postgres.pool_min_size,
                  max_size=settings.postgres.pool_max_size)
    secrets = SecretBox(settings.secret_keys)
    gateway = ExchangeGateway(settings.exchange)
    engine = SyncEngine(db, gateway, secrets, EngineSettings(
        instance_id=settings.instance_id, concurrency=settings.concurrency,
        lease=timedelta(seconds=settings.lease_seconds),
        poll_interval=settings.poll_interval_seconds, shutdown_grace=settings.shutdown_grace_seconds,
        pairing_grace=timedelta(seconds=settings.pairing_grace_seconds),
        trust_records=settings.lookup_before_create == "unrecorded",
        call_timeout=timedelta(seconds=settings.exchange.timeout_seconds)))
    broker = create_broker(settings.kafka, service=SERVICE)
    # Catalog first in the same group: both are folded into Postgres, the engine works from there.
    subscribe_event_batches(broker, settings.kafka, Topic.CATALOG_EVENTS, group_id=settings.consumer_group,
                            handler=CatalogFold(db, engine.wake, gateway, secrets),
                            description="Locations' Exchange settings, spaces' pairings, import requests")
    subscribe_event_batches(broker, settings.kafka, Topic.BOOKING_EVENTS, group_id=settings.consumer_group,
                            handler=BookingFold(db, engine.wake),
                            description="Bookings of every source, written to the paired resource calendars")
    kafka = BrokerConnection(broker, settings.kafka, create_topics=settings.create_topics)
    relay = OutboxRelay.for_service(settings, BrokerSender(broker), ready=lambda: kafka.connected)

    async def refresh_gauges() -> None:
        while True:
            with contextlib.suppress(Exception):
                async with db.acquire() as conn:
                    for state, count in (await sync_store.count_slots(conn)).items():
                        metrics.SLOTS.labels(state).set(count)
                    metrics.DUE.set(await sync_store.count_due(conn))
            await asyncio.sleep(GAUGE_INTERVAL_SECONDS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate_service(dsn, settings.schema_name, "spacesync.exchange_writer", "writer")
        await db.open()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("kafka-connect", kafka.run()), ("outbox-relay", relay.run()), ("sync-engine", engine.run()),
            ("gauges", refresh_gauges()), ("event-loop-lag", watch_event_loop()))]
        try:
            yield
        finally:
            await broker.stop()  # no new events; offsets of folded ones are committed
            engine.stop()  # drains its passes within the grace period, then releases their bookings
            relay.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(tasks[1], tasks[2]),
                                       timeout=settings.shutdown_grace_seconds + SHUTDOWN_MARGIN_SECONDS)
            for task in tasks:
                task.cancel()
            await gateway.close()
            await db.close()

    app = FastAPI(title="Spacesync exchange-writer", version="0.1.0", lifespan=lifespan,
                  description="Writes bookings into the paired Exchange resource calendars; reports Sync IDs.")
    install_problem_handlers(app)
    app.state.engine = engine
    app.state.relay = relay
    app.state.db = db
    app.state.kafka = kafka

    app.include_router(health_router(HealthChecks(required={"postgres": db.ping, "kafka": kafka.check})))
    return app
