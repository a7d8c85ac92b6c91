"""Two exchange-poller instances on one schema: one active, reading Exchange and consuming catalog.events; the other
a standby doing neither, which takes over within seconds when the active one stops, and publishes what Outlook
changed after the takeover."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import asyncpg
import pytest
from poller_helpers import PollerUnderTest, at, periods, poller_settings
from prometheus_client import REGISTRY

from spacesync.common.events import Topic
from spacesync.common.secrets import SecretBox, generate_key
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_poller.active import ActivePoller
from spacesync.exchange_poller.app import create_app
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import KafkaReader, run_app, wait_until
from spacesync.testing.exchange import SimulatorAdmin

pytestmark = pytest.mark.integration


def ews_requests_total(sim: EmbeddedSimulator) -> float:
    return sum(found.value for metric in sim.state.metrics.requests.collect() for found in metric.samples
               if found.name.endswith("_total"))


def active(poller: PollerUnderTest) -> ActivePoller:
    instance: ActivePoller = poller.running.app.state.active
    return instance


async def test_one_instance_polls_and_the_standby_takes_over_when_it_stops(
        postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings], simulator: EmbeddedSimulator) -> None:
    key = generate_key()
    # No notifications and no periodic reads for an hour: an idle active instance sends Exchange nothing, so any
    # request while it idles would be the standby's.
    settings = poller_settings(postgres_dsn, kafka_settings(), key, notifications=False, poll_interval_seconds=3600,
                               standby_retry_seconds=0.2)
    admin = SimulatorAdmin(simulator)
    async with contextlib.AsyncExitStack() as stack:
        first_stack = await stack.enter_async_context(contextlib.AsyncExitStack())
        first_app = await first_stack.enter_async_context(run_app(create_app(settings)))
        await wait_until(lambda: first_app.app.state.active.is_active and first_app.app.state.kafka.connected,
                         timeout=60, message="the first instance active, its topics created")
        reader = await stack.enter_async_context(KafkaReader(
            settings.kafka.bootstrap_servers, settings.kafka.topic(Topic.EXCHANGE_FREEBUSY.value)))
        first = PollerUnderTest(first_app, settings, simulator, admin, SecretBox(key), reader)
        second = PollerUnderTest(await stack.enter_async_context(run_app(create_app(settings))), settings,
                                 simulator, admin, SecretBox(key), reader, rooms_used=first.rooms_used)

        # Rooms published while both run: the active one's consumer gets every catalog event (a standby in the
        # group would have taken some partitions), and only the active engine reads them.
        places = [await first.place() for _ in range(3)]
        for place in places:
            await first.picture(place.space_id)
        assert not active(second).is_active
        assert second.poller.rooms == {}
        assert not second.poller.loaded.is_set()

        requests, tries = ews_requests_total(simulator), active(second).tries
        await wait_until(lambda: active(second).tries >= tries + 5, timeout=30,
                         message="the standby asked for the lock again")
        assert ews_requests_total(simulator) == requests  # the standby read nothing from Exchange
        assert not active(second).is_active
        assert (await second.running.client.get("/readyz")).status_code == 200  # a healthy standby is ready

        await first_stack.aclose()  # the active instance stops
        await wait_until(lambda: active(second).is_active and second.poller.loaded.is_set(), timeout=30,
                         message="the standby takes over")
        assert set(second.poller.rooms) == {place.space_id for place in places}  # from Postgres, at once
        assert REGISTRY.get_sample_value("spacesync_poller_active") == 1

        # Changes after the takeover: an Outlook meeting is read, a new pairing consumed.
        await admin.book_meeting(places[0].mailbox, at(2, 9), at(2, 10))
        assert periods(await second.picture(places[0].space_id)) == [(at(2, 9), at(2, 10), "Busy")]
        newer = await second.place()
        await admin.book_meeting(newer.mailbox, at(3, 11), at(3, 12))
        assert periods(await second.picture(newer.space_id)) == [(at(3, 11), at(3, 12), "Busy")]
    await admin.close()


async def test_an_instance_that_loses_its_lock_connection_stops_at_once_then_leads_afresh(
        postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings], simulator: EmbeddedSimulator) -> None:
    key = generate_key()
    settings = poller_settings(postgres_dsn, kafka_settings(), key, notifications=False, poll_interval_seconds=3600,
                               standby_retry_seconds=0.2)
    admin = SimulatorAdmin(simulator)
    async with run_app(create_app(settings)) as running:
        await wait_until(lambda: running.app.state.active.is_active and running.app.state.kafka.connected,
                         timeout=60, message="active, its topics created")
        async with KafkaReader(settings.kafka.bootstrap_servers,
                               settings.kafka.topic(Topic.EXCHANGE_FREEBUSY.value)) as reader:
            poller = PollerUnderTest(running, settings, simulator, admin, SecretBox(key), reader,
                                     rooms_used=list(range(10)))  # the simulator's first rooms: the other test's
            place = await poller.place()
            await poller.picture(place.space_id)
            engine = poller.poller

            await terminate_lock_holder(settings.postgres.dsn.get_secret_value(),
                                        f"exchange-poller:{settings.schema_name}")
            await wait_until(lambda: poller.poller is not engine, timeout=15,
                             message="the engine stopped and replaced")
            assert engine.loaded.is_set()  # the old one ran, and was stopped

            await wait_until(lambda: active(poller).is_active and place.space_id in poller.poller.rooms, timeout=30,
                             message="active again with a fresh engine")
            await admin.book_meeting(place.mailbox, at(4, 9), at(4, 10))
            assert periods(await poller.picture(place.space_id)) == [(at(4, 9), at(4, 10), "Busy")]
    await admin.close()


async def terminate_lock_holder(dsn: str, lock: str) -> None:
    """Ends the Postgres session holding the advisory lock (as a database restart or a network cut would)."""
    conn = await asyncpg.connect(dsn)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND objid = (hashtext($1)::bigint & 4294967295)::oid", lock)
        assert pid is not None, f"nobody holds {lock}"
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
