"""Kafka offsets: where each partition's log starts and ends, what consumer groups committed, and the lag between.

Lag of a partition = its end offset minus the group's committed offset. A partition of a topic the group reads but
on which it never committed counts from the log start: our consumers start at the earliest offset, so that is what
they still have to read (kafka_exporter reports -1 there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spacesync.common.settings import KafkaSettings

REQUEST_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Span:
    """A partition's log: its first (oldest) offset and its end offset (the next record's)."""

    oldest: int
    end: int


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    """None: the group never committed on this partition."""
    lag: int


def partition_lag(span: Span, committed: int | None) -> int:
    start = span.oldest if committed is None else committed
    return max(0, span.end - start)


def group_lag(spans: dict[TopicPartition, Span], committed: dict[TopicPartition, int],
              topics: Iterable[str]) -> list[PartitionLag]:
    """Every known partition of the topics, in topic and partition order."""
    wanted = set(topics)
    return [PartitionLag(tp.topic, tp.partition, committed.get(tp), partition_lag(span, committed.get(tp)))
            for tp, span in sorted(spans.items()) if tp.topic in wanted]


class OffsetReader:
    """An admin client and a group-less consumer (which reads offsets, never records): `async with`, or start() and
    close()."""

    def __init__(self, settings: KafkaSettings, *, client_id: str) -> None:
        common = dict(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=REQUEST_TIMEOUT_MS)
        self._admin = AIOKafkaAdminClient(client_id=client_id, **common)
        self._consumer = AIOKafkaConsumer(client_id=client_id, group_id=None, enable_auto_commit=False,
                                          **common)

    async def start(self) -> None:
        """Connects both clients; on failure neither stays open."""
        try:
            await self._admin.start()
            await self._consumer.start()
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> OffsetReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def groups(self) -> list[str]:
        """Every consumer group the cluster knows (with committed offsets or members)."""
        return sorted({group[0] for group in await self._admin.list_consumer_groups()})

    async def partitions(self, topics: list[str] | None = None) -> list[TopicPartition]:
        """The partitions of the topics (None: of every topic, Kafka's internal ones included)."""
        found = await self._admin.describe_topics(topics)
        return sorted(TopicPartition(t["topic"], p["partition"]) for t in found if not t["error_code"]
                      for p in t["partitions"])

    async def spans(self, partitions: list[TopicPartition]) -> dict[TopicPartition, Span]:
        if not partitions:
            return {}
        ends = await self._consumer.end_offsets(partitions)
        oldest = await self._consumer.beginning_offsets(partitions)
        return {tp: Span(oldest[tp], end) for tp, end in ends.items()}

    async def committed(self, group: str, partitions: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets (None: on every partition it committed on); partitions without a commit
        are left out."""
        offsets = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def group_lag(self, group: str, topics: list[str]) -> list[PartitionLag]:
        """The group's lag on every partition of the topics."""
        partitions = await self.partitions(topics)
        spans = await self.spans(partitions)
        return group_lag(spans, await self.committed(group, partitions), topics)
