"""The FastStream KafkaBroker of a service: idempotent producer, acks=all, DLQ and Prometheus middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from spacesync.common.kafka.dlq import DeadLetterMiddleware
from spacesync.common.kafka.topics import ensure_topics
from spacesync.common.settings import KafkaSettings

log = logging.getLogger(__name__)

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


class BrokerConnection:
    """Starts the broker in the background, retrying while Kafka is unreachable, so a service starts (and
    serves what it can) without Kafka. `connected` says when the broker is up; cancel run() to give up."""

    def __init__(self, broker: KafkaBroker, settings: KafkaSettings, *, create_topics: bool) -> None:
        self._broker = broker
        self._settings = settings
        self._create_topics = create_topics
        self.connected = False

    async def check(self) -> None:
        """A readiness check: raises unless the broker is connected and Kafka answers."""
        if not self.connected:
            raise ConnectionError("not connected to Kafka yet")
        if not await self._broker.ping(timeout=1.5):
            raise ConnectionError("Kafka does not answer")

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                if self._create_topics:
                    await ensure_topics(self._settings)
                await self._broker.start()
                self.connected = True
                return
            except Exception as error:
                log.warning("Kafka not reachable yet; retrying", extra={"error": repr(error), "retry_in": delay})
                with contextlib.suppress(Exception):
                    await self._broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
