"""Helpers for the Outlook busy time tests: busy pictures published as the exchange-poller would, and waiting on
booking-service's fold of them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from booking_helpers import ADMIN, Room, Service, at

from spacesync.common.events import BusyPeriod, CloudEvent, FreeBusyState, OutlookBusyStatus
from spacesync.common.events.registry import Topic
from spacesync.testing import wait_until
from spacesync.testing.kafka import produce

MAILBOX = "room-101@library.example.org"


def meeting(start: datetime, minutes: int = 60, organizer: str | None = None,
            status: OutlookBusyStatus = OutlookBusyStatus.BUSY) -> BusyPeriod:
    return BusyPeriod(start=start, end=start + timedelta(minutes=minutes), status=status, organizer=organizer)


def picture(room: Room, sequence: int, *busy: BusyPeriod, mailbox: str | None = MAILBOX) -> FreeBusyState:
    """The busy picture of the room's resource calendar: 120 days from yesterday."""
    start = at(-1, 0)
    return FreeBusyState(space_id=room.space_id, location_id=room.location_id, mailbox=mailbox, sequence=sequence,
                         window_start=start, window_end=start + timedelta(days=120), observed_at=datetime.now(UTC),
                         busy=list(busy))


async def publish_picture(service: Service, state: FreeBusyState) -> None:
    await publish_raw(service, state.space_id, state.model_dump_json().encode())


async def publish_raw(service: Service, space_id: str, value: bytes) -> None:
    event = CloudEvent(source="/spacesync/exchange-poller", type="freebusy.changed", subject=space_id)
    await produce(service.settings.kafka.bootstrap_servers, service.topic(Topic.EXCHANGE_FREEBUSY.value), value,
                  key=space_id.encode(), headers=event.to_headers())


async def outlook_busy(service: Service, room: Room) -> dict[str, Any]:
    """The admin view of the room's Outlook busy time (in its pairing view)."""
    answer = await service.http.get(f"/v1/admin/spaces/{room.space_id}/exchange", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()["outlook_busy"]
    return view


async def folded(service: Service, room: Room, sequence: int) -> dict[str, Any]:
    """Waits until booking-service holds the picture with this sequence."""

    async def current() -> dict[str, Any] | None:
        view = await outlook_busy(service, room)
        return view if view["sequence"] == sequence else None

    found: dict[str, Any] = await wait_until(current, message=f"busy picture {sequence} folded")
    return found


async def freebusy_consumed(service: Service) -> None:
    """Waits until booking-service committed every record now on exchange.freebusy: whatever it does about them
    is done, so 'nothing changed' can be asserted."""
    kafka = service.settings.kafka
    topic = kafka.topic(Topic.EXCHANGE_FREEBUSY.value)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    ends_reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    await ends_reader.start()
    try:
        ends = await ends_reader.end_offsets([TopicPartition(topic, p) for p in range(kafka.topic_partitions)])

        async def committed() -> bool:
            offsets = await admin.list_consumer_group_offsets(service.settings.consumer_group)
            return all(end == 0 or (tp in offsets and offsets[tp].offset >= end) for tp, end in ends.items())

        await wait_until(committed, message="booking-service consumed exchange.freebusy")
    finally:
        await ends_reader.stop()
        await admin.close()


async def refusals(service: Service, operation: str) -> float:
    text = (await service.http.get("/metrics")).text
    found = re.search(rf'spacesync_bookings_total{{operation="{operation}",outcome="busy_in_outlook"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0
