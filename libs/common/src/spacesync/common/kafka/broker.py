"""The FastStream KafkaBroker of a service: idempotent producer, acks=all, DLQ and Prometheus middlewares."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from spacesync.common.kafka.dlq import DeadLetterMiddleware
from spacesync.common.settings import KafkaSettings

# Shorter than the outbox relay's ack timeout: a record the producer gave up on is never sent later.
PRODUCER_REQUEST_TIMEOUT_MS = 15_000


def create_broker(settings: KafkaSettings, *, service: str) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=f"{settings.client_id}-{service}",
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=PRODUCER_REQUEST_TIMEOUT_MS,
        linger_ms=2,
        middlewares=(
            DeadLetterMiddleware,
            KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service),
        ),
        logger=logging.getLogger(f"spacesync.{service}.kafka"),
    )


class BrokerSender:
    """Adapts a started KafkaBroker to the outbox relay's RecordSender."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(
        self, topic: str, *, key: bytes, value: bytes, headers: dict[str, str],
    ) -> asyncio.Future[Any]:
        return await self._broker.publish(value, topic, key=key, headers=headers, no_confirm=True)
