"""Subscribing to one of our topics: CloudEvents parsed and validated against the contract first."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pydantic import BaseModel

from spacesync.common.events.cloudevents import CloudEvent, InvalidEvent
from spacesync.common.events.registry import Topic, parse_event
from spacesync.common.kafka.dlq import count_dead_letters_from_zero, dead_letter, refusal_reason
from spacesync.common.settings import KafkaSettings

EventHandler = Callable[[CloudEvent, BaseModel], Awaitable[None]]
BatchHandler = Callable[[list[tuple[CloudEvent, BaseModel]]], Awaitable[None]]

# How long an idle batch consumer waits for records (FastStream then sleeps as long again): the latency floor.
BATCH_WAIT_MS = 20


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
    count_dead_letters_from_zero(settings.topic(topic.value), group_id)
    broker.subscriber(
        settings.topic(topic.value),
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        description=description or f"CloudEvents on {topic.value}",
        parser=_tolerant_parser,  # a broken header reaches our validation (and the DLQ), not FastStream's parser
        decoder=_raw_body,  # we validate the bytes ourselves, so a broken body is a DLQ reason, not a crash
    )(consume)


def subscribe_event_batches(
    broker: KafkaBroker,
    settings: KafkaSettings,
    topic: Topic,
    *,
    group_id: str,
    handler: BatchHandler,
    max_records: int = 500,
    description: str = "",
    readers: Mapping[str, type[BaseModel]] | None = None,
    consumers: int = 1,
) -> None:
    """Like subscribe_events, for handlers that take what Kafka has in one go (one transaction, one offset
    commit per batch instead of per event). Invalid records go to the DLQ one by one; the valid ones reach the
    handler in offset order; a batch the database refuses is retried event by event to find the refused one.
    `readers`: event types read with a consumer's own model (see parse_event). `consumers`: Kafka consumers of
    the group in this process, each with its share of the partitions: while one awaits its handler's I/O (the
    database), another parses its batch."""

    async def consume(message: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
        valid: list[tuple[ConsumerRecord[Any, Any], CloudEvent, BaseModel]] = []
        invalid: list[tuple[ConsumerRecord[Any, Any], str]] = []
        for record in records:
            try:
                valid.append((record, *parse_event(record.headers, record.value, topic=topic, readers=readers)))
            except InvalidEvent as error:
                invalid.append((record, error.reason))
        try:
            if valid:
                await handler([(event, data) for _, event, data in valid])
        except asyncpg.DataError:
            for record, event, data in valid:
                try:
                    await handler([(event, data)])
                except asyncpg.DataError as refused:
                    invalid.append((record, refusal_reason(refused)))
        # Only once the batch is handled: a batch that is retried does not send its invalid records twice.
        for record, reason in invalid:
            await dead_letter(broker, record, reason, group_id)

    consume.__name__ = f"consume_{topic.value.replace('.', '_')}_batches"
    count_dead_letters_from_zero(settings.topic(topic.value), group_id)
    for n in range(consumers):
        broker.subscriber(
            settings.topic(topic.value),
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=BATCH_WAIT_MS,
            description=description or f"CloudEvents on {topic.value}, in batches",
            include_in_schema=n == 0,
            parser=_tolerant_batch_parser,
            decoder=_raw_body,
        )(consume)


async def _tolerant_batch_parser(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """The batch version of _tolerant_parser. FastStream's batch message is built from the first record only (its
    parser decodes every header of every record into dicts nothing here reads: ~5% of a fold's CPU); the body
    lists every value (FastStream's metrics count and size them), the message keeps the records."""
    if not records:
        return await original(records)
    message = await original((_readable_headers(records[0]),))
    message.body = [record.value or b"" for record in records]
    message.message_id = f"{records[0].offset}-{records[-1].offset}-{records[0].timestamp}"
    message.raw_message = records
    return message


async def _tolerant_parser(
    record: ConsumerRecord[Any, Any], original: Callable[[ConsumerRecord[Any, Any]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's parser decodes every header as UTF-8 and fails on a header without value. It gets a copy
    with such headers blanked; the message keeps the original record, which parse_event then rejects."""
    message = await original(_readable_headers(record))
    message.raw_message = record
    return message


def _readable_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    """The record, or when a header has no value or is not UTF-8 a copy with such headers blanked (FastStream's
    parser decodes them all). No copy for the usual record: it costs per record in batches of thousands."""
    readable = [_utf8(value) for _, value in record.headers]
    if all(readable):
        return record
    clean = copy.copy(record)
    clean.headers = [(name, value if ok else b"") for (name, value), ok in zip(record.headers, readable, strict=True)]
    return clean


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
