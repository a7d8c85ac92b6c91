"""Consumer lag per topic: the end offsets minus what the consumer group committed, measured periodically."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spacesync.availability_service.metrics import CONSUMER_LAG
from spacesync.common.settings import KafkaSettings

log = logging.getLogger(__name__)


async def group_lag(admin: AIOKafkaAdminClient, ends_reader: AIOKafkaConsumer, group: str,
                    topics: list[str]) -> dict[str, int]:
    partitions = [TopicPartition(topic, p) for topic in topics
                  for p in sorted(ends_reader.partitions_for_topic(topic) or ())]
    ends = await ends_reader.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    lag = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        done = committed.get(tp)
        lag[tp.topic] += end - (done.offset if done is not None and done.offset >= 0 else 0)
    return lag


async def watch_lag(settings: KafkaSettings, group: str, topics: list[str], interval: float) -> None:
    """Runs until cancelled; a Kafka that does not answer leaves the gauges as they were."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                client_id=f"{settings.client_id}-availability-lag")
    ends_reader = AIOKafkaConsumer(*topics, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                   enable_auto_commit=False)
    started = False
    try:
        while True:
            try:
                if not started:
                    await admin.start()
                    await ends_reader.start()
                    started = True
                for topic, records in (await group_lag(admin, ends_reader, group, topics)).items():
                    CONSUMER_LAG.labels(topic).set(records)
            except Exception as error:
                log.debug("consumer lag not measured", extra={"error": repr(error)})
            await asyncio.sleep(interval)
    finally:
        if started:
            with contextlib.suppress(Exception):
                await ends_reader.stop()
            with contextlib.suppress(Exception):
                await admin.close()
