"""Consumer lag per topic: the end offsets minus what the consumer group committed, measured periodically."""

from __future__ import annotations

import asyncio
import logging

from spacesync.availability_service.metrics import CONSUMER_LAG
from spacesync.common.kafka.offsets import OffsetReader
from spacesync.common.settings import KafkaSettings

log = logging.getLogger(__name__)


async def watch_lag(settings: KafkaSettings, group: str, topics: list[str], interval: float) -> None:
    """Runs until cancelled; a Kafka that does not answer leaves the gauges as they were."""
    reader: OffsetReader | None = None
    try:
        while True:
            try:
                if reader is None:
                    reader = OffsetReader(settings, client_id=f"{settings.client_id}-availability-lag")
                    await reader.start()
                lag = dict.fromkeys(topics, 0)
                for partition in await reader.group_lag(group, topics):
                    lag[partition.topic] += partition.lag
                for topic, records in lag.items():
                    CONSUMER_LAG.labels(topic).set(records)
            except Exception as error:
                log.debug("consumer lag not measured", extra={"error": repr(error)})
                if reader is not None:  # a fresh client next time: aiokafka's may not recover from an outage
                    await reader.close()
                    reader = None
            await asyncio.sleep(interval)
    finally:
        if reader is not None:
            await reader.close()
