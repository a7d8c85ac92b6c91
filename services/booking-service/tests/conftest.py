"""booking-service running in-process on a free port, against real PostgreSQL and Kafka (and the EWS simulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from booking_exchange_helpers import library_seed
from booking_helpers import Room, Service, make_room, service_settings
from exchangelib import close_connections

from spacesync.booking_service.app import create_app
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import run_app, wait_until


@pytest.fixture(scope="module")
async def service(postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings]) -> AsyncIterator[Service]:
    settings = service_settings(postgres_dsn, kafka_settings())
    app = create_app(settings)
    async with run_app(app) as running:
        await wait_until(lambda: app.state.relay.is_leader, timeout=60, message="outbox relay connected to Kafka")
        yield Service(running, settings)


@pytest.fixture
async def room(service: Service) -> Room:
    return await make_room(service)


@pytest.fixture
def ews() -> Iterator[EmbeddedSimulator]:
    """The EWS simulator with the library's rooms, spoken to by real exchangelib."""
    with EmbeddedSimulator(library_seed()) as sim:
        yield sim
    close_connections()  # exchangelib caches protocols process-wide
