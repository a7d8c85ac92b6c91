"""Composition root: wires Postgres, Kafka (FastStream), the outbox relay, the Exchange gateway and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from spacesync.booking_service.api.admin import admin_router
from spacesync.booking_service.api.auth import require_admin
from spacesync.booking_service.api.exchange import exchange_router
from spacesync.booking_service.api.public import public_router
from spacesync.booking_service.bookings import BookingService
from spacesync.booking_service.exchange_admin import ExchangeConnections
from spacesync.booking_service.exchange_import import ExchangeImport
from spacesync.booking_service.exchange_pairing import ExchangePairing
from spacesync.booking_service.outlook_fold import OutlookBusyFold
from spacesync.booking_service.settings import BookingServiceSettings
from spacesync.booking_service.sync_fold import SyncFold
from spacesync.common.db import Database, migrate_service
from spacesync.common.events import Topic
from spacesync.common.exchange import ExchangeGateway
from spacesync.common.http import HealthChecks, health_router, install_problem_handlers
from spacesync.common.http.metrics import instrument_http
from spacesync.common.kafka import BrokerConnection, BrokerSender, create_broker, subscribe_event_batches
from spacesync.common.loop_lag import watch_event_loop
from spacesync.common.outbox import OutboxRelay
from spacesync.common.secrets import SecretBox

log = logging.getLogger(__name__)
SERVICE = "booking-service"


def create_app(settings: BookingServiceSettings) -> FastAPI:
    """Builds the app; connections are opened in its lifespan (startup) and closed on shutdown."""
    dsn = settings.postgres.dsn.get_secret_value()
    db = Database(dsn, settings.schema_name, min_size=settings.postgres.pool_min_size,
                  max_size=settings.postgres.pool_max_size)
    broker = create_broker(settings.kafka, service=SERVICE)
    bookings = BookingService(db)
    secrets = SecretBox(settings.secret_keys)  # a bad key stops the service here, naming the variable
    gateway = ExchangeGateway(settings.exchange)
    subscribe_event_batches(broker, settings.kafka, Topic.EXCHANGE_SYNC, group_id=settings.consumer_group,
                            handler=SyncFold(db, settings.event_source),
                            description="Outlook/Exchange Sync IDs reported by the exchange-writer")
    subscribe_event_batches(broker, settings.kafka, Topic.EXCHANGE_FREEBUSY, group_id=settings.consumer_group,
                            handler=OutlookBusyFold(db),
                            description="Outlook/Exchange busy time of paired rooms: bookings over it are refused")
    kafka = BrokerConnection(broker, settings.kafka, create_topics=settings.create_topics)
    relay = OutboxRelay.for_service(settings, BrokerSender(broker), ready=lambda: kafka.connected)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate_service(dsn, settings.schema_name, "spacesync.booking_service", "booking")
        await db.open()
        connecting = asyncio.create_task(kafka.run(), name="kafka-connect")
        relaying = asyncio.create_task(relay.run(), name="outbox-relay")
        lag = asyncio.create_task(watch_event_loop(), name="event-loop-lag")
        try:
            yield
        finally:
            connecting.cancel()
            lag.cancel()
            relay.stop()  # finishes the batch in flight
            with contextlib.suppress(Exception):
                await asyncio.wait_for(relaying, timeout=settings.shutdown_grace_seconds)
            await broker.stop()
            try:
                await gateway.close()
            finally:
                await db.close()

    app = FastAPI(title="Spacesync booking-service", version="0.1.0", lifespan=lifespan,
                  description="Locations, spaces and bookings; every change is published on Kafka.")
    install_problem_handlers(app)
    app.state.relay = relay
    app.state.db = db
    app.include_router(public_router(db, bookings))
    admin = require_admin(settings.admin_token)
    app.include_router(admin_router(db, admin))
    app.include_router(exchange_router(ExchangeConnections(db, gateway, secrets), ExchangePairing(db, gateway, secrets),
                                       ExchangeImport(db, gateway, secrets, source=settings.event_source), admin))

    # Kafka is informational: while it is down bookings still succeed and wait in the outbox.
    app.include_router(health_router(HealthChecks(required={"postgres": db.ping},
                                                  informational={"kafka": kafka.check})))
    instrument_http(app)
    return app

