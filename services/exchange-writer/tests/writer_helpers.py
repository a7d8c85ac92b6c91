"""The exchange-writer under test: running in-process against real Kafka, Postgres and the EWS simulator,
fed with events the way booking-service (or another producer) publishes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from spacesync.common.events import EVENT_TYPES, CloudEvent, Topic
from spacesync.common.events.catalog import CategoryState, LocationState, OpeningHours, SpaceState, TitleRule
from spacesync.common.exchange import GatewaySettings
from spacesync.common.secrets import SecretBox
from spacesync.common.settings import KafkaSettings, PostgresSettings
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_writer import sync_store
from spacesync.exchange_writer.settings import WriterSettings
from spacesync.testing import KafkaReader, Record, RunningApp, wait_until
from spacesync.testing.events import new_id
from spacesync.testing.exchange import PASSWORD, WRITER, SimulatorAdmin, connection, room
from spacesync.testing.kafka import group_caught_up, produce

SOURCE = "/test/booking-system"
ALL_DAY = OpeningHours.model_validate({day: [{"open": "00:00", "close": "24:00"}] for day in OpeningHours.WEEKDAYS})


def writer_settings(postgres_dsn: str, kafka: KafkaSettings, secret_key: str) -> WriterSettings:
    return WriterSettings(
        secret_keys=SecretStr(secret_key), schema_name=f"writer_{uuid.uuid4().hex[:8]}", kafka=kafka,
        consumer_group=f"exchange-writer-{uuid.uuid4().hex[:8]}", instance_id=f"test-{uuid.uuid4().hex[:6]}",
        postgres=PostgresSettings(dsn=SecretStr(postgres_dsn), pool_max_size=20), poll_interval_seconds=0.2,
        outbox_poll_interval_seconds=0.5, exchange=GatewaySettings(max_connections=8, timeout_seconds=10))


@dataclass
class Place:
    """A location connected to the simulator, a category and a space paired with a room."""

    location: LocationState
    category: CategoryState
    space: SpaceState

    @property
    def space_id(self) -> str:
        return self.space.space_id

    @property
    def mailbox(self) -> str:
        assert self.space.exchange_resource is not None
        return self.space.exchange_resource


@dataclass
class Writer:
    running: RunningApp
    settings: WriterSettings
    sim: EmbeddedSimulator
    admin: SimulatorAdmin
    secrets: SecretBox
    reader: KafkaReader
    rooms_used: list[int] = field(default_factory=list)

    async def publish(self, ce_type: str, data: BaseModel, *, source: str = SOURCE) -> None:
        known = EVENT_TYPES[ce_type]
        key = getattr(data, known.key)
        event = CloudEvent(source=source, type=ce_type, subject=key)
        await produce(self.settings.kafka.bootstrap_servers, self.settings.kafka.topic(known.topic.value),
                      data.model_dump_json().encode(), key=key.encode(), headers=event.to_headers())

    def next_room(self) -> str:
        self.rooms_used.append(len(self.rooms_used))
        return room(self.rooms_used[-1])

    async def place(self, *, mailbox: str | None = None, rule: TitleRule = TitleRule.PATRON_NAME,
                    nicknames: bool = False, username: str = WRITER, password: str = PASSWORD,
                    paired_at: datetime | None = None) -> Place:
        """Publishes a connected location, a category and a paired space, as booking-service would."""
        now = datetime.now(UTC)
        location = LocationState(
            location_id=new_id(), version=1, name="Main Library", timezone="America/Chicago", updated_at=now,
            exchange=connection(self.sim, self.secrets, username=username, password=password, title_rule=rule))
        category = CategoryState(category_id=new_id(), location_id=location.location_id, version=1,
                                 name="Study Rooms", public_nicknames=nicknames, updated_at=now)
        space = SpaceState(space_id=new_id(), location_id=location.location_id, category_id=category.category_id,
                           version=1, name=f"Study Room {uuid.uuid4().hex[:4]}", slot_minutes=30,
                           max_booking_minutes=240, opening_hours=ALL_DAY, updated_at=now,
                           exchange_resource=mailbox or self.next_room(), paired_at=paired_at or now)
        await self.publish("location.upserted", location)
        await self.publish("category.upserted", category)
        await self.publish("space.paired", space)
        return Place(location, category, space)

    async def settled(self, timeout: float = 30.0) -> None:
        await writer_settled(self.running.app, self.settings, timeout)

    def sync_events(self, booking_id: str) -> list[Record]:
        topic = self.settings.kafka.topic(Topic.EXCHANGE_SYNC.value)
        return sorted(self.reader.by_key(booking_id, topic), key=lambda r: r.json["sequence"])

    async def wait_sync(self, booking_id: str, ce_type: str, *, version: int | None = None,
                        timeout: float = 30.0) -> dict[str, Any]:
        """The latest exchange.sync event of the booking, once it is of `ce_type` (for `version`)."""
        def latest() -> dict[str, Any] | None:
            events = self.sync_events(booking_id)
            if not events or events[-1].ce_type != ce_type:
                return None
            data: dict[str, Any] = events[-1].json
            return data if version is None or data["booking_version"] == version else None

        result: dict[str, Any] = await wait_until(latest, timeout=timeout, message=f"{ce_type} of {booking_id}")
        return result


def future(days: int = 1, hour: int = 14) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour)


async def writer_settled(app: Any, settings: WriterSettings, timeout: float = 30.0) -> None:
    """Waits until the writer committed every record now on booking.events and catalog.events and has no booking
    left to pass: what it will ever do about them is done (so an absence can be asserted)."""
    kafka = settings.kafka
    await group_caught_up(kafka.bootstrap_servers, settings.consumer_group,
                          [kafka.topic(Topic.BOOKING_EVENTS.value), kafka.topic(Topic.CATALOG_EVENTS.value)],
                          kafka.topic_partitions, timeout=timeout, message="writer consumed every event")

    async def idle() -> bool:
        async with app.state.db.acquire() as conn:
            return await sync_store.count_due(conn) == 0

    await wait_until(idle, timeout=timeout, message="writer has no booking left to pass")
