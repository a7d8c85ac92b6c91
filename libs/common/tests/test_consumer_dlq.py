"""Consuming CloudEvents on FastStream with real Kafka: invalid events go to the DLQ, the consumer goes on."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import orjson
from pydantic import BaseModel

from spacesync.common.events import CloudEvent, LocationState, Topic
from spacesync.common.kafka import (
    DLQ_EVENTS,
    create_broker,
    dlq_topic,
    ensure_topics,
    subscribe_event_batches,
    subscribe_events,
)
from spacesync.common.settings import KafkaSettings
from spacesync.testing import KafkaReader, wait_until
from spacesync.testing.kafka import produce


def location_event(location_id: str) -> tuple[dict[str, str], bytes]:
    data = LocationState(location_id=location_id, version=1, name="Library", timezone="UTC",
                         updated_at=datetime.now(UTC))
    headers = CloudEvent(source="/test", type="location.upserted", subject=location_id).to_headers()
    return headers, data.model_dump_json().encode()


async def test_invalid_events_land_in_the_dlq_with_a_reason_and_valid_ones_are_handled(
    kafka_settings: Callable[[], KafkaSettings],
) -> None:
    settings = kafka_settings()
    await ensure_topics(settings)
    topic = settings.topic(Topic.CATALOG_EVENTS.value)
    handled: list[str] = []
    failures = {"flaky": 1}

    async def handler(event: CloudEvent, data: BaseModel) -> None:
        assert isinstance(data, LocationState)
        if data.location_id == "refused":  # what PostgreSQL answers to a value its column cannot hold
            raise asyncpg.exceptions.NumericValueOutOfRangeError("value out of int32 range")
        if failures.get(data.location_id, 0) > 0:
            failures[data.location_id] -= 1
            raise ConnectionError("database briefly unavailable")
        handled.append(data.location_id)

    broker = create_broker(settings, service="test")
    group = f"g-{uuid.uuid4().hex[:6]}"
    subscribe_events(broker, settings, Topic.CATALOG_EVENTS, group_id=group, handler=handler)
    dlq_before = DLQ_EVENTS.labels(topic, group)._value.get()

    good_headers, good_value = location_event("good-1")
    refused_headers, refused_value = location_event("refused")
    _, flaky_value = location_event("flaky")
    bad_records: list[tuple[dict[str, str] | Sequence[tuple[str, bytes | None]], bytes, str]] = [
        ({}, good_value, "missing CloudEvents header(s)"),
        (good_headers, b"{not json", "value is not JSON"),
        ({**good_headers, "ce_subject": "x"}, orjson.dumps({"location_id": "x", "version": 1}),
         "invalid location.upserted data: name: Field required"),
        ({**good_headers, "ce_type": "booking.created"}, good_value, "belongs on booking.events"),
        ([(k, v.encode()) for k, v in good_headers.items() if k != "ce_id"] + [("ce_id", None)], good_value,
         "header 'ce_id' has no value"),
        ([(k, v.encode()) for k, v in good_headers.items() if k != "ce_source"] + [("ce_source", b"\xff\xfe")],
         good_value, "header 'ce_source' is not UTF-8"),
        (refused_headers, refused_value, "the database refused the event's data: value out of int32 range"),
    ]
    await broker.start()
    try:
        async with KafkaReader(settings.bootstrap_servers, dlq_topic(topic)) as dlq:
            for headers, value, _ in bad_records:
                await produce(settings.bootstrap_servers, topic, value, key=b"k", headers=headers)
            await produce(settings.bootstrap_servers, topic, good_value, key=b"good-1", headers=good_headers)
            await produce(settings.bootstrap_servers, topic, flaky_value, key=b"flaky",
                          headers={**good_headers, "ce_subject": "flaky"})
            dead = await dlq.wait_for(lambda r: True, count=len(bad_records))
            await wait_until(lambda: {"good-1", "flaky"} <= set(handled), message="valid events handled")
    finally:
        await broker.stop()

    assert len(dead) == len(bad_records)
    for record, (_, value, reason) in zip(sorted(dead, key=lambda r: int(r.headers["dlq_source_offset"])),
                                          bad_records, strict=True):
        assert reason in record.headers["dlq_reason"]
        assert record.headers["dlq_source_topic"] == topic
        assert record.headers["dlq_consumer_group"] == group
        assert record.value == value  # the original bytes, so nothing is lost
    assert DLQ_EVENTS.labels(topic, group)._value.get() - dlq_before == len(bad_records)
    assert handled.count("flaky") == 1  # a transient error is retried, not dead-lettered


async def test_batches_dead_letter_single_records_and_hand_the_rest_over_in_order(
    kafka_settings: Callable[[], KafkaSettings],
) -> None:
    settings = kafka_settings()
    await ensure_topics(settings)
    topic = settings.topic(Topic.CATALOG_EVENTS.value)
    batches: list[list[str]] = []

    async def handler(events: list[tuple[CloudEvent, BaseModel]]) -> None:
        ids = [data.location_id for _, data in events if isinstance(data, LocationState)]
        if "refused" in ids:  # the whole batch fails as one transaction would; single events are retried
            raise asyncpg.exceptions.NumericValueOutOfRangeError("value out of int32 range")
        batches.append(ids)

    broker = create_broker(settings, service="test")
    group = f"g-{uuid.uuid4().hex[:6]}"
    subscribe_event_batches(broker, settings, Topic.CATALOG_EVENTS, group_id=group, handler=handler)
    names = ["a", "b", "refused", "c"]
    async with KafkaReader(settings.bootstrap_servers, dlq_topic(topic)) as dlq:
        for name in names:  # one key: one partition, so the order is Kafka's
            headers, value = location_event(name)
            await produce(settings.bootstrap_servers, topic, value, key=b"same", headers=headers)
        await produce(settings.bootstrap_servers, topic, b"{broken", key=b"same", headers=headers)
        await broker.start()
        try:
            dead = await dlq.wait_for(lambda r: True, count=2)
            await wait_until(lambda: [i for b in batches for i in b] == ["a", "b", "c"], message="valid ones")
        finally:
            await broker.stop()
    reasons = sorted(r.headers["dlq_reason"] for r in dead)
    assert reasons[0].startswith("the database refused the event's data")
    assert reasons[1].startswith("value is not JSON")
