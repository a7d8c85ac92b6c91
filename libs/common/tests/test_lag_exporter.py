"""The Kafka lag exporter: kafka_exporter's metric names from real Kafka; groups come and go; Kafka unreachable."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from spacesync.common.kafka.lag_exporter import (
    LagExporterOptions,
    LagExporterSettings,
    Snapshot,
    SnapshotCollector,
    create_app,
    wanted,
)
from spacesync.common.kafka.offsets import PartitionLag, Span, group_lag, partition_lag
from spacesync.common.settings import KafkaSettings
from spacesync.testing import RunningApp, run_app, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# -- the pure parts ---------------------------------------------------------------------------------------------------


def test_lag_counts_from_the_commit_or_else_from_the_oldest_record() -> None:
    assert partition_lag(Span(oldest=0, end=10), committed=4) == 6
    assert partition_lag(Span(oldest=3, end=10), committed=None) == 7  # never committed: all it has yet to read
    assert partition_lag(Span(oldest=0, end=10), committed=10) == 0
    assert partition_lag(Span(oldest=0, end=10), committed=12) == 0  # a commit ahead of a truncated log: no backlog


def test_group_lag_covers_every_partition_of_the_topics_read() -> None:
    spans = {TopicPartition("a", 0): Span(0, 5), TopicPartition("a", 1): Span(0, 3), TopicPartition("b", 0): Span(0, 9)}
    lags = group_lag(spans, {TopicPartition("a", 0): 5}, ["a"])
    assert lags == [PartitionLag("a", 0, 5, 0), PartitionLag("a", 1, None, 3)]


def test_patterns_match_whole_names() -> None:
    options = LagExporterOptions(groups=re.compile("exchange-writer|availability-service"))
    assert wanted(options.groups, ["exchange-writer", "exchange-writer-rebuild", "availability-service"]) == [
        "exchange-writer", "availability-service"]
    assert wanted(LagExporterOptions().topics, ["booking.events", "__consumer_offsets"]) == ["booking.events"]


def test_the_collector_serves_the_snapshot_and_nothing_of_an_older_one() -> None:
    collector = SnapshotCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    collector.snapshot = Snapshot({TopicPartition("t", 0): Span(2, 7)},
                                  {"g1": [PartitionLag("t", 0, 5, 2)], "g2": [PartitionLag("t", 0, None, 5)]})
    assert registry.get_sample_value("kafka_consumergroup_lag", {"consumergroup": "g1", "topic": "t",
                                                                 "partition": "0"}) == 2
    assert registry.get_sample_value("kafka_consumergroup_current_offset", {"consumergroup": "g1", "topic": "t",
                                                                            "partition": "0"}) == 5
    assert registry.get_sample_value("kafka_consumergroup_current_offset", {"consumergroup": "g2", "topic": "t",
                                                                            "partition": "0"}) is None
    assert registry.get_sample_value("kafka_topic_partition_current_offset", {"topic": "t", "partition": "0"}) == 7
    assert registry.get_sample_value("kafka_topic_partition_oldest_offset", {"topic": "t", "partition": "0"}) == 2
    collector.snapshot = Snapshot({}, {"g2": []})
    assert registry.get_sample_value("kafka_consumergroup_lag", {"consumergroup": "g1", "topic": "t",
                                                                 "partition": "0"}) is None


def test_a_bad_pattern_is_refused_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from spacesync.common.settings import load_settings

    monkeypatch.setenv("SPACESYNC_LAG_EXPORTER_GROUPS", "(unclosed")
    with pytest.raises(SystemExit, match="SPACESYNC_LAG_EXPORTER_GROUPS: Input should be a valid regular expression"):
        load_settings(LagExporterSettings)


# -- against Kafka ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def kafka(kafka_settings: Callable[[], KafkaSettings]) -> tuple[KafkaSettings, str]:
    """Isolated: a topic of three partitions under a fresh prefix; groups are named after the prefix too."""
    settings = kafka_settings()
    topic = settings.topic("lag.test")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    return settings, topic


async def produce(settings: KafkaSettings, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for n in range(count):
                await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def commit(settings: KafkaSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await consumer.stop()


async def delete_group(settings: KafkaSettings, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:  # aiokafka's admin client has no delete_consumer_groups: the protocol request it would send
        coordinator = await admin.find_coordinator(group)
        response = await admin._send_request(DeleteGroupsRequest([group]), coordinator)
        assert all(error == 0 for _, error in response.results), response
    finally:
        await admin.close()


@asynccontextmanager
async def exporter(settings: LagExporterSettings) -> AsyncIterator[RunningApp]:
    async with run_app(create_app(settings)) as running:
        yield running


def exporter_settings(kafka: KafkaSettings, **options: Any) -> LagExporterSettings:
    """Groups and topics of this test's prefix only (other tests share the cluster)."""
    prefix = re.escape(kafka.topic_prefix)
    chosen: dict[str, Any] = {"groups": re.compile(f"{prefix}.*"), "topics": re.compile(f"{prefix}.*"),
                              "interval_seconds": 0.2, **options}
    return LagExporterSettings(kafka=kafka, exporter=LagExporterOptions(**chosen))


async def scrape(running: RunningApp) -> Samples:
    response = await running.client.get("/metrics")
    response.raise_for_status()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def group_samples(samples: Samples, group: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return [key for key in samples if ("consumergroup", group) in key[1]]


async def test_lag_per_partition_is_produced_minus_committed(kafka: tuple[KafkaSettings, str]) -> None:
    settings, topic = kafka
    group = f"{settings.topic_prefix}writer"
    await produce(settings, topic, {0: 5, 1: 3, 2: 2})
    await commit(settings, group, {TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 3})
    async with exporter(exporter_settings(settings)) as running:
        async def measured() -> Samples | None:
            samples = await scrape(running)
            return samples if sample(samples, "kafka_consumergroup_lag", consumergroup=group, topic=topic,
                                     partition="2") is not None else None

        samples = await wait_until(measured, timeout=30, message="the group's lag exported")
        lag = {p: sample(samples, "kafka_consumergroup_lag", consumergroup=group, topic=topic, partition=p)
               for p in "012"}
        assert lag == {"0": 3, "1": 0, "2": 2}  # partition 2: never committed, both records still to read
        assert sample(samples, "kafka_consumergroup_current_offset", consumergroup=group, topic=topic,
                      partition="0") == 2
        assert sample(samples, "kafka_consumergroup_current_offset", consumergroup=group, topic=topic,
                      partition="2") is None
        ends = {p: sample(samples, "kafka_topic_partition_current_offset", topic=topic, partition=p) for p in "012"}
        assert ends == {"0": 5, "1": 3, "2": 2}
        assert (await running.client.get("/readyz")).status_code == 200

        await produce(settings, topic, {1: 4})
        await wait_until(lambda: _lag_is(running, group, topic, "1", 4), timeout=30,
                         message="new records on partition 1 counted as lag")


async def _lag_is(running: RunningApp, group: str, topic: str, partition: str, expected: float) -> bool:
    samples = await scrape(running)
    return sample(samples, "kafka_consumergroup_lag", consumergroup=group, topic=topic,
                  partition=partition) == expected


async def test_groups_appear_and_vanish_and_unmatched_ones_never_show(kafka: tuple[KafkaSettings, str]) -> None:
    settings, topic = kafka
    kept, other = f"{settings.topic_prefix}kept", f"{settings.topic_prefix}other"
    unmatched = f"not-{settings.topic_prefix}{uuid.uuid4().hex[:6]}"
    await produce(settings, topic, {0: 1})
    await commit(settings, kept, {TopicPartition(topic, 0): 1})
    await commit(settings, unmatched, {TopicPartition(topic, 0): 0})
    async with exporter(exporter_settings(settings, groups=re.compile(re.escape(settings.topic_prefix) + ".*")
                                          )) as running:
        await wait_until(lambda: _lag_is(running, kept, topic, "0", 0), timeout=30, message="the first group")

        await commit(settings, other, {TopicPartition(topic, 0): 0})
        await wait_until(lambda: _lag_is(running, other, topic, "0", 1), timeout=30, message="a new group appears")

        await delete_group(settings, other)

        async def gone() -> Samples | None:
            samples = await scrape(running)
            return None if group_samples(samples, other) else samples

        samples = await wait_until(gone, timeout=30, message="the deleted group disappears")
        assert group_samples(samples, kept)
        assert not group_samples(samples, unmatched)  # its lag is real, but its name matches no pattern


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


async def test_kafka_unreachable_counts_errors_turns_unready_and_keeps_serving() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    settings = exporter_settings(kafka, interval_seconds=0.1, timeout_seconds=2, unready_after_failures=2)
    async with exporter(settings) as running:
        before = sample(await scrape(running), "spacesync_lag_exporter_scrape_errors_total") or 0.0

        async def failed_thrice() -> Samples | None:
            samples = await scrape(running)
            errors = sample(samples, "spacesync_lag_exporter_scrape_errors_total") or 0.0
            return samples if errors >= before + 3 else None

        samples = await wait_until(failed_thrice, timeout=60, message="failed refreshes counted")
        assert not [key for key in samples if key[0].startswith("kafka_")]
        ready = await running.client.get("/readyz")
        assert ready.status_code == 503
        assert "could not read Kafka" in ready.json()["checks"]["kafka"]
        assert (await running.client.get("/healthz")).status_code == 200
        assert running.app.state.exporter.failures >= 3
