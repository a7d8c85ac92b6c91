"""exchange-poller fixtures: the poller in-process, a simulator with rooms, a reader of exchange.freebusy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from exchangelib import close_connections
from poller_helpers import PollerUnderTest, poller_settings

from spacesync.common.events import Topic
from spacesync.common.secrets import SecretBox, generate_key
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_poller.app import create_app
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import KafkaReader, run_app, wait_until
from spacesync.testing.exchange import SimulatorAdmin, rooms_seed


@pytest.fixture(scope="module")
def simulator() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(rooms_seed(30)) as sim:
        yield sim
    close_connections()


@pytest.fixture(scope="module")
def poller_options() -> dict[str, Any]:
    """PollerSettings that a test module changes (override this fixture in the module)."""
    return {}


@pytest.fixture(scope="module")
async def poller(postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings], simulator: EmbeddedSimulator,
                 poller_options: dict[str, Any]) -> AsyncIterator[PollerUnderTest]:
    key = generate_key()
    settings = poller_settings(postgres_dsn, kafka_settings(), key, **poller_options)
    app = create_app(settings)
    admin = SimulatorAdmin(simulator)
    async with run_app(app) as running, KafkaReader(
            settings.kafka.bootstrap_servers, settings.kafka.topic(Topic.EXCHANGE_FREEBUSY.value),
            settings.kafka.topic(Topic.CATALOG_EVENTS.value) + ".dlq") as reader:
        await wait_until(lambda: app.state.relay.is_leader and app.state.kafka.connected
                         and app.state.active.is_active, timeout=60, message="poller active and connected to Kafka")
        yield PollerUnderTest(running, settings, simulator, admin, SecretBox(key), reader)
    await admin.close()
