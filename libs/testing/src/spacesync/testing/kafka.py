"""A plain aiokafka consumer for tests: reads topics from the beginning and keeps every record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spacesync.testing.wait import wait_until


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.value)

    @property
    def ce_type(self) -> str | None:
        return self.headers.get("ce_type")


class KafkaReader:
    """Collects every record of some topics in the background (no consumer group, no commits)."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                          enable_auto_commit=False, group_id=None, metadata_max_age_ms=1000)
        self.records: list[Record] = []
        self._next_offsets: dict[TopicPartition, int] = {}
        self._topics = topics
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> KafkaReader:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _collect(self) -> None:
        async for message in self._consumer:
            self._next_offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1
            self.records.append(Record(
                topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key.decode() if message.key is not None else None,
                headers={k: v.decode() for k, v in message.headers}, value=message.value or b""))

    async def caught_up(self, *, timeout: float = 30.0) -> None:
        """Waits until every record that is on the topics now has been read (so counts are final)."""
        partitions = [TopicPartition(topic, p) for topic in self._topics
                      for p in (self._consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"no partitions known for {self._topics}"
        ends = await self._consumer.end_offsets(partitions)

        def read_all() -> bool:
            return all(self._next_offsets.get(tp, 0) >= end for tp, end in ends.items())

        await wait_until(read_all, timeout=timeout, message=f"reading {self._topics} to the end")

    def by_key(self, key: str, topic: str | None = None) -> list[Record]:
        return [r for r in self.records if r.key == key and (topic is None or r.topic == topic)]

    async def wait_for(self, predicate: Any, *, count: int = 1, timeout: float = 30.0) -> list[Record]:
        """Waits until at least `count` records match `predicate`; returns the matches."""
        async def matches() -> list[Record] | None:
            found = [r for r in self.records if predicate(r)]
            return found if len(found) >= count else None

        result: list[Record] = await wait_until(matches, timeout=timeout,
                                                message=f"{count} matching Kafka record(s)")
        return result


async def produce(bootstrap: str, topic: str, value: bytes, *, key: bytes | None = None,
                  headers: dict[str, str] | Sequence[tuple[str, bytes | None]] | None = None) -> None:
    """Publishes one raw record, as another producer (or a broken one) would. A list gives headers as raw
    bytes (or no value at all)."""
    if isinstance(headers, dict):
        raw: list[tuple[str, bytes | None]] = [(k, v.encode()) for k, v in headers.items()]
    else:
        raw = list(headers or [])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=raw)
    finally:
        await producer.stop()


async def delete_topics(bootstrap: str, prefixes: list[str]) -> None:
    """Deletes the topics whose names start with one of the prefixes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def group_caught_up(bootstrap: str, group: str, topics: Sequence[str], partitions: int, *,
                          timeout: float = 30.0, message: str = "consumer group caught up") -> None:
    """Waits until `group` has committed every record now on `topics`: whatever the consumer will ever do about
    them is done (folded or dead-lettered), so views can be compared and absences asserted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends_reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await ends_reader.start()
    try:
        ends = await ends_reader.end_offsets([TopicPartition(t, p) for t in topics for p in range(partitions)])

        async def committed() -> bool:
            offsets = await admin.list_consumer_group_offsets(group)
            return all(end == 0 or (tp in offsets and offsets[tp].offset >= end) for tp, end in ends.items())

        await wait_until(committed, timeout=timeout, message=message)
    finally:
        await ends_reader.stop()
        await admin.close()
