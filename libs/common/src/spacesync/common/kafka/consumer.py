"""Subscribing to one of our topics: CloudEvents parsed and validated against the contract first."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pydantic import BaseModel

from spacesync.common.events.cloudevents import CloudEvent
from spacesync.common.events.registry import Topic, parse_event
from spacesync.common.settings import KafkaSettings

EventHandler = Callable[[CloudEvent, BaseModel], Awaitable[None]]


def subscribe_events(
    broker: KafkaBroker,
    settings: KafkaSettings,
    topic: Topic,
    *,
    group_id: str,
    handler: EventHandler,
    description: str = "",
) -> None:
    """Registers `handler` for every valid event on `topic`.

    Offsets are committed only after the handler returned (its effect is durable); an invalid event
    raises InvalidEvent, which the DeadLetterMiddleware turns into a DLQ record; other errors are retried.
    """

    async def consume(message: KafkaMessage) -> None:
        record = message.raw_message
        event, data = parse_event(record.headers, record.value, topic=topic)  # type: ignore[union-attr]
        await handler(event, data)

    consume.__name__ = f"consume_{topic.value.replace('.', '_')}"
    broker.subscriber(
        settings.topic(topic.value),
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        description=description or f"CloudEvents on {topic.value}",
        parser=_tolerant_parser,  # a broken header reaches our validation (and the DLQ), not FastStream's parser
        decoder=_raw_body,  # we validate the bytes ourselves, so a broken body is a DLQ reason, not a crash
    )(consume)


async def _tolerant_parser(
    record: ConsumerRecord[Any, Any], original: Callable[[ConsumerRecord[Any, Any]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's parser decodes every header as UTF-8 and fails on a header without value. It gets a copy
    with such headers blanked; the message keeps the original record, which parse_event then rejects."""
    clean = copy.copy(record)
    clean.headers = [(name, value if _utf8(value) else b"") for name, value in record.headers]
    message = await original(clean)
    message.raw_message = record
    return message


def _utf8(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    return message.body
