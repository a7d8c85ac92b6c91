"""Creating our topics (and their DLQs) when they do not exist yet; production manages them declaratively."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from spacesync.common.events.registry import Topic
from spacesync.common.kafka.dlq import dlq_topic
from spacesync.common.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, topics: list[Topic] | None = None) -> list[str]:
    """Creates missing topics and DLQs; returns the names it created."""
    names = [settings.topic(t.value) for t in (topics or list(Topic))]
    wanted = names + [dlq_topic(name) for name in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                client_id=f"{settings.client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, num_partitions=settings.topic_partitions,
                         replication_factor=settings.topic_replication_factor)
                for name in missing
            ])
            log.info("topics created", extra={"topics": missing})
        return missing
    finally:
        await admin.close()
