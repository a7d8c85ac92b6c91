"""Outbox relay against real PostgreSQL and Kafka: order, ce_id, NOTIFY wake-up, one active relay, retries."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import REGISTRY

from spacesync.common.db import Database, common_migrations, migrate
from spacesync.common.db.pool import connect
from spacesync.common.events import LocationState
from spacesync.common.kafka import BrokerSender, create_broker, ensure_topics
from spacesync.common.outbox import OutboxEvent, OutboxRelay, add_to_outbox
from spacesync.common.settings import KafkaSettings
from spacesync.testing import KafkaReader, wait_until


@pytest.fixture
async def outbox_db(postgres_dsn: str) -> AsyncIterator[Database]:
    schema = f"outbox_{uuid.uuid4().hex[:8]}"
    conn = await connect(postgres_dsn, schema)
    await migrate(conn, schema, common_migrations())
    await conn.close()
    db = Database(postgres_dsn, schema)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def kafka(kafka_settings: Callable[[], KafkaSettings]) -> AsyncIterator[tuple[KafkaSettings, Any]]:
    settings = kafka_settings()
    await ensure_topics(settings)
    broker = create_broker(settings, service="test")
    await broker.start()
    yield settings, broker
    await broker.stop()


def location(version: int, location_id: str = "loc-1") -> OutboxEvent:
    return OutboxEvent("location.upserted", "location", LocationState(
        location_id=location_id, version=version, name=f"Library v{version}", timezone="UTC",
        updated_at=datetime.now(UTC)))


async def add(db: Database, *events: OutboxEvent) -> None:
    async with db.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *events)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        relay.stop()
        await asyncio.wait_for(task, timeout=30)


def make_relay(db: Database, sender: Any, settings: KafkaSettings, **options: Any) -> OutboxRelay:
    return OutboxRelay(dsn=db.dsn, schema=db.schema, sender=sender, source="/test", topic_name=settings.topic,
                       **options)


async def unpublished(db: Database) -> int:
    async with db.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return count


async def test_outbox_rows_need_a_transaction(outbox_db: Database) -> None:
    async with outbox_db.acquire() as conn:
        with pytest.raises(RuntimeError, match="needs an open transaction"):
            await add_to_outbox(conn, location(1))


async def test_relay_publishes_in_order_as_cloudevents_and_marks_rows(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    events = [location(v) for v in range(1, 6)]
    await add(outbox_db, *events)
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, \
            running(make_relay(outbox_db, BrokerSender(broker), settings)):
        records = await reader.wait_for(lambda r: r.key == "loc-1", count=5)
        await wait_until(lambda: _none_left(outbox_db), message="all rows marked published")
    assert [r.json["version"] for r in records] == [1, 2, 3, 4, 5]
    assert [r.headers["ce_id"] for r in records] == [str(e.id) for e in events]
    assert {r.headers["ce_type"] for r in records} == {"location.upserted"}
    assert all(r.headers["ce_source"] == "/test" and r.headers["ce_subject"] == "loc-1" for r in records)


async def _none_left(db: Database) -> bool:
    return await unpublished(db) == 0


async def test_notify_wakes_the_relay_long_before_its_poll_interval(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    relay = make_relay(outbox_db, BrokerSender(broker), settings, poll_interval=120)
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, \
            running(relay):
        await wait_until(lambda: relay.is_leader, message="relay active")
        await add(outbox_db, location(1, "loc-notify"))
        # Only LISTEN/NOTIFY can deliver this within the deadline: the next poll is two minutes away.
        await reader.wait_for(lambda r: r.key == "loc-notify", timeout=15)


async def test_only_one_relay_is_active_and_a_standby_takes_over(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    first = make_relay(outbox_db, BrokerSender(broker), settings, poll_interval=0.2)
    second = make_relay(outbox_db, BrokerSender(broker), settings, poll_interval=0.2)
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, running(first):
        await wait_until(lambda: first.is_leader, message="first relay active")
        async with running(second):
            await add(outbox_db, location(1, "loc-ha"))
            await reader.wait_for(lambda r: r.key == "loc-ha")
            assert first.is_leader
            assert not second.is_leader
            first.stop()
            await wait_until(lambda: second.is_leader, message="standby takes over")
            await add(outbox_db, location(2, "loc-ha"))
            records = await reader.wait_for(lambda r: r.key == "loc-ha", count=2)
    assert [r.json["version"] for r in records] == [1, 2]


class FailingSender:
    """A producer whose acknowledgements fail (Kafka unreachable) until `healthy` is set."""

    def __init__(self, real: BrokerSender) -> None:
        self.real = real
        self.healthy = False
        self.attempts = 0

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        self.attempts += 1
        if not self.healthy:
            raise ConnectionError("Kafka unreachable")
        return await self.real.send(topic, key=key, value=value, headers=headers)


async def test_unacknowledged_rows_stay_and_are_resent_with_the_same_ce_id(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    sender = FailingSender(BrokerSender(broker))
    event = location(1, "loc-retry")
    await add(outbox_db, event)
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, \
            running(make_relay(outbox_db, sender, settings, poll_interval=0.1)):
        await wait_until(lambda: sender.attempts >= 2, message="failed attempts")
        async with outbox_db.acquire() as conn:
            row = await conn.fetchrow("SELECT attempts, last_error, published_at FROM outbox WHERE id = $1", event.id)
        assert row["published_at"] is None
        assert row["attempts"] >= 1
        assert "Kafka unreachable" in row["last_error"]
        sender.healthy = True
        [first] = await reader.wait_for(lambda r: r.key == "loc-retry")
        # A relay that crashed after sending but before marking sends the row again: same ce_id.
        async with outbox_db.acquire() as conn:
            await conn.execute("UPDATE outbox SET published_at = NULL WHERE id = $1", event.id)
            await conn.execute("NOTIFY " + f'"{outbox_db.schema}_outbox"')
        records = await reader.wait_for(lambda r: r.key == "loc-retry", count=2)
    assert first.headers["ce_id"] == str(event.id)
    assert {r.headers["ce_id"] for r in records} == {str(event.id)}


class OneFailureSender:
    """Fails the acknowledgement of one chosen send (as an expired producer batch would), passes the rest."""

    def __init__(self, real: BrokerSender, fail_call: int) -> None:
        self.real = real
        self.calls = 0
        self.fail_call = fail_call

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        self.calls += 1
        if self.calls == self.fail_call:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(TimeoutError("batch expired"))
            return failed
        return await self.real.send(topic, key=key, value=value, headers=headers)


async def test_versions_of_an_aggregate_stay_in_order_when_one_send_fails(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    await add(outbox_db, *(location(v, "loc-order") for v in range(1, 6)), location(1, "loc-other"))
    sender = OneFailureSender(BrokerSender(broker), fail_call=1)  # version 1 of loc-order fails once
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, \
            running(make_relay(outbox_db, sender, settings, poll_interval=0.1)):
        await wait_until(lambda: _none_left(outbox_db), message="all rows published")
        await reader.caught_up()
    assert [r.json["version"] for r in reader.by_key("loc-order")] == [1, 2, 3, 4, 5]
    assert len(reader.by_key("loc-other")) == 1


async def test_a_row_kafka_can_never_take_is_set_aside_and_the_rest_go_on(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    settings, broker = kafka
    huge = uuid.uuid4()
    async with outbox_db.acquire() as conn, conn.transaction():
        # Larger than the producer's max_request_size (1 MiB): aiokafka refuses it at send, every time.
        await conn.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload)"
            " VALUES ($1, 'location', 'loc-huge', 'location.upserted', 'catalog.events', $2::json)",
            huge, '{"padding": "' + "x" * 1_200_000 + '"}')
        await add_to_outbox(conn, location(2, "loc-huge"), location(1, "loc-fine"))
    refused_before = _refused_count(outbox_db.schema)
    async with KafkaReader(settings.bootstrap_servers, settings.topic("catalog.events")) as reader, \
            running(make_relay(outbox_db, BrokerSender(broker), settings, poll_interval=0.1)):
        await reader.wait_for(lambda r: r.key == "loc-fine")
        [next_version] = await reader.wait_for(lambda r: r.key == "loc-huge")
        await wait_until(lambda: _none_left(outbox_db), message="every row published or set aside")
    assert next_version.json["version"] == 2  # the aggregate's next version went out
    async with outbox_db.acquire() as conn:
        row = await conn.fetchrow("SELECT refused_at, published_at, last_error FROM outbox WHERE id = $1", huge)
    assert row["refused_at"] is not None
    assert row["published_at"] is not None
    assert "MessageSizeTooLarge" in row["last_error"]
    assert _refused_count(outbox_db.schema) == refused_before + 1


def _refused_count(schema: str) -> float:
    value = REGISTRY.get_sample_value("spacesync_outbox_refused_total",
                                      {"schema": schema, "topic": "catalog.events"})
    return value or 0.0


class CuttableProxy:
    """A TCP proxy to PostgreSQL whose cut() closes the open connections and refuses new ones (a network cut)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()


async def test_a_replica_that_cannot_reach_postgres_reports_no_frozen_outbox_age(
    outbox_db: Database, kafka: tuple[KafkaSettings, Any],
) -> None:
    """Its last reading would stay on /metrics for as long as it is cut off: SpacesyncOutboxStuck (max over the
    replicas) would fire on an old age, or a small one hide nothing. It reports no age instead."""
    settings, broker = kafka
    address = urlsplit(outbox_db.dsn)
    proxy = CuttableProxy((address.hostname or "127.0.0.1", address.port or 5432))
    port = await proxy.start()
    dsn = urlunsplit(address._replace(netloc=f"{address.netloc.rsplit('@', 1)[0]}@127.0.0.1:{port}"))
    relay = OutboxRelay(dsn=dsn, schema=outbox_db.schema, sender=BrokerSender(broker), source="/test",
                        topic_name=settings.topic, ready=lambda: False, poll_interval=0.1)

    def age() -> float | None:
        return REGISTRY.get_sample_value("spacesync_outbox_oldest_unpublished_age_seconds",
                                         {"schema": outbox_db.schema})

    await add(outbox_db, location(1, "loc-cut"))
    async with running(relay):
        await wait_until(lambda: (age() or 0) > 0, message="the unpublished row's age observed")
        await proxy.cut()
        await wait_until(lambda: age() is None, timeout=15, message="no age reported once cut off")
