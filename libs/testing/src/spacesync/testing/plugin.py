"""pytest fixtures: `infra` (real Kafka and PostgreSQL), a fresh database per run, unique topic prefixes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from spacesync.common.settings import KafkaSettings
from spacesync.testing.infra import Infra, resolve_infra
from spacesync.testing.kafka import delete_topics
from spacesync.testing.stack import fresh_database

INFRA_FIXTURES = {"infra", "postgres_dsn", "kafka_settings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INFRA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra(pytestconfig: pytest.Config) -> Iterator[Infra]:
    resolved = resolve_infra(pytestconfig.rootpath)
    print(f"\ntest infrastructure: kafka={resolved.kafka_bootstrap} ({resolved.origin['kafka']}), "
          f"postgres ({resolved.origin['postgres']})")
    try:
        yield resolved
    finally:
        resolved.close()


@pytest.fixture(scope="session")
async def postgres_dsn(infra: Infra) -> AsyncIterator[str]:
    """A database of its own for this test run, dropped afterwards."""
    async with fresh_database(infra.postgres_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def kafka_settings(infra: Infra) -> AsyncIterator[Callable[[], KafkaSettings]]:
    """Builds KafkaSettings whose topics are unique to the caller (a fresh topic prefix each call); the
    topics are deleted after the run."""
    prefixes: list[str] = []

    def make() -> KafkaSettings:
        prefixes.append(f"t{uuid.uuid4().hex[:8]}.")
        return KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefixes[-1], topic_partitions=3)

    yield make
    await delete_topics(infra.kafka_bootstrap, prefixes)
