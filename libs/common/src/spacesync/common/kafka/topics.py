"""Creating our topics (and their DLQs) when they do not exist yet; production manages them declaratively."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from spacesync.common.events.registry import COMPACTED_TOPICS, Topic
from spacesync.common.kafka.dlq import dlq_topic
from spacesync.common.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, topics: list[Topic] | None = None) -> list[str]:
    """Creates missing topics and DLQs; returns the names it created."""
    chosen = topics or list(Topic)
    names = [settings.topic(t.value) for t in chosen]
    wanted = names + [dlq_topic(name) for name in names]
    # Same cleanup policy as the KafkaTopic resources in deploy/k8s, so local runs behave like production.
    compacted = {settings.topic(t.value) for t in chosen if t in COMPACTED_TOPICS}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                client_id=f"{settings.client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, num_partitions=settings.topic_partitions,
                         replication_factor=settings.topic_replication_factor,
                         topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
                for name in missing
            ])
            log.info("topics created", extra={"topics": missing})
        return missing
    finally:
        await admin.close()
