"""availability-service fixtures: the service in-process on fresh topics, schema and consumer group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from availability_helpers import Service, availability_settings

from spacesync.availability_service.app import create_app
from spacesync.common.settings import KafkaSettings
from spacesync.testing import run_app, wait_until


@pytest.fixture(scope="module")
async def service(postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings]) -> AsyncIterator[Service]:
    settings = availability_settings(postgres_dsn, kafka_settings())
    app = create_app(settings)
    async with run_app(app) as running:
        await wait_until(lambda: app.state.kafka.connected, timeout=60, message="connected to Kafka")
        yield Service(running, settings)
