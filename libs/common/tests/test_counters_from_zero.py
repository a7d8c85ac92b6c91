"""Counters alerts take increase() of exist at 0 before their first event: a child created at its first
increment would show as 1 in its first scrape, which Prometheus cannot tell from a counter that was always 1."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from spacesync.common.events import Topic
from spacesync.common.kafka import create_broker, subscribe_event_batches, subscribe_events
from spacesync.common.settings import KafkaSettings


async def ignore(*_: object) -> None:
    """A handler that is never called: nothing is consumed here."""


def dead_letters(topic: str, group: str) -> float | None:
    return REGISTRY.get_sample_value("spacesync_dlq_events_total", {"topic": topic, "group": group})


def test_subscribing_creates_the_dead_letter_counter_at_zero() -> None:
    settings = KafkaSettings(topic_prefix=f"zero{uuid.uuid4().hex[:6]}.")
    broker = create_broker(settings, service="test")
    catalog, bookings = settings.topic(Topic.CATALOG_EVENTS.value), settings.topic(Topic.BOOKING_EVENTS.value)
    assert dead_letters(catalog, "one-by-one") is None
    subscribe_events(broker, settings, Topic.CATALOG_EVENTS, group_id="one-by-one", handler=ignore)
    subscribe_event_batches(broker, settings, Topic.BOOKING_EVENTS, group_id="in-batches", handler=ignore)
    assert dead_letters(catalog, "one-by-one") == 0
    assert dead_letters(bookings, "in-batches") == 0
