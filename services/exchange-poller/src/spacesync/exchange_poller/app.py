"""Composition root: wires Postgres, Kafka (FastStream), the Exchange gateway, the calendar watches, the poller
engine (one active instance: active.py) and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from spacesync.common.db import Database, migrate_service
from spacesync.common.db.leadership import Leadership
from spacesync.common.events import Topic
from spacesync.common.exchange import ExchangeGateway
from spacesync.common.exchange.notifications import CalendarWatch
from spacesync.common.http import HealthChecks, health_router, install_problem_handlers
from spacesync.common.kafka import BrokerConnection, BrokerSender, create_broker, subscribe_event_batches
from spacesync.common.loop_lag import watch_event_loop
from spacesync.common.outbox import OutboxRelay
from spacesync.common.secrets import SecretBox
from spacesync.exchange_poller.active import ActivePoller
from spacesync.exchange_poller.engine import Poller, PollerConfig
from spacesync.exchange_poller.handlers import CatalogFold
from spacesync.exchange_poller.settings import PollerSettings
from spacesync.exchange_poller.watches import Watches, WatchFactory

log = logging.getLogger(__name__)
SERVICE = "exchange-poller"
GAUGE_INTERVAL_SECONDS = 15.0


def watch_factory(gateway: ExchangeGateway, settings: PollerSettings) -> WatchFactory | None:
    if not settings.notifications:
        return None
    return lambda server, on_change: CalendarWatch(gateway, server, on_change, settings.watch)


def create_app(settings: PollerSettings) -> FastAPI:
    dsn = settings.postgres.dsn.get_secret_value()
    db = Database(dsn, settings.schema_name, min_size=settings.postgres.pool_min_size,
                  max_size=settings.postgres.pool_max_size)
    gateway = ExchangeGateway(settings.exchange)
    secrets = SecretBox(settings.secret_keys)
    config = PollerConfig(horizon_days=settings.horizon_days, reconcile_interval=settings.reconcile_interval_seconds,
                          poll_interval=settings.poll_interval_seconds, concurrency=settings.concurrency,
                          debounce=settings.debounce_seconds)

    def new_poller() -> Poller:
        """An engine for one term as the active instance."""
        poller: Poller

        def mailbox_changed(mailbox: str) -> None:
            poller.mailbox_changed(mailbox)

        poller = Poller(db, gateway, secrets, Watches(watch_factory(gateway, settings), mailbox_changed), config)
        return poller

    # The catalog consumer runs only while this instance is the active one: a broker of its own.
    catalog = create_broker(settings.kafka, service=SERVICE)
    active = ActivePoller(
        Leadership(dsn, settings.schema_name, f"exchange-poller:{settings.schema_name}",
                   retry_interval=settings.standby_retry_seconds),
        new_poller, catalog, settings.kafka, stop_timeout=settings.shutdown_grace_seconds)
    subscribe_event_batches(catalog, settings.kafka, Topic.CATALOG_EVENTS, group_id=settings.consumer_group,
                            handler=CatalogFold(db, lambda: active.poller.catalog_changed()),
                            description="Locations' Exchange settings and spaces' pairings: the rooms to watch")
    broker = create_broker(settings.kafka, service=SERVICE)  # the outbox relay's producer, on every instance
    kafka = BrokerConnection(broker, settings.kafka, create_topics=settings.create_topics)
    relay = OutboxRelay.for_service(settings, BrokerSender(broker), ready=lambda: kafka.connected)

    async def refresh_gauges() -> None:
        while True:
            if active.is_active:
                with contextlib.suppress(Exception):
                    active.poller.refresh_gauges()
            await asyncio.sleep(GAUGE_INTERVAL_SECONDS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate_service(dsn, settings.schema_name, "spacesync.exchange_poller", "poller")
        await db.open()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("kafka-connect", kafka.run()), ("outbox-relay", relay.run()), ("active-poller", active.run()),
            ("gauges", refresh_gauges()), ("event-loop-lag", watch_event_loop()))]
        try:
            yield
        finally:
            active.stop()  # reads in flight finish; their pictures commit with their outbox rows
            relay.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(tasks[1], tasks[2]), timeout=settings.shutdown_grace_seconds)
            for task in tasks:
                task.cancel()
            await broker.stop()
            await gateway.close()
            await db.close()

    app = FastAPI(title="Spacesync exchange-poller", version="0.1.0", lifespan=lifespan,
                  description="Reads the busy picture of paired resource calendars; publishes freebusy.changed.")
    install_problem_handlers(app)
    app.state.active = active
    app.state.relay = relay
    app.state.db = db
    app.state.kafka = kafka

    app.include_router(health_router(HealthChecks(required={"postgres": db.ping, "kafka": kafka.check})))
    return app
