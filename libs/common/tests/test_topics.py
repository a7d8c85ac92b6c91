"""ensure_topics creates topics with the cleanup policy production gives them (deploy/k8s KafkaTopics)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from spacesync.common.events import Topic
from spacesync.common.kafka import dlq_topic, ensure_topics
from spacesync.common.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def cleanup_policies(settings: KafkaSettings, names: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    policies: dict[str, str] = {}
    for response in responses:
        for _error_code, _error_message, _type, name, entries in response.resources:
            policies[name] = next(value for key, value, *_ in entries if key == "cleanup.policy")
    return policies


async def test_the_busy_picture_topic_is_compacted_and_the_others_are_not(
    kafka_settings: Callable[[], KafkaSettings],
) -> None:
    settings = kafka_settings()
    created = await ensure_topics(settings)
    names = [settings.topic(t.value) for t in Topic]
    assert set(created) == set(names) | {dlq_topic(n) for n in names}

    policies = await cleanup_policies(settings, created)
    assert policies.pop(settings.topic(Topic.EXCHANGE_FREEBUSY.value)) == "compact"
    assert set(policies.values()) == {"delete"}, policies  # every other topic, and every DLQ
    assert await ensure_topics(settings) == []  # a second start creates nothing
