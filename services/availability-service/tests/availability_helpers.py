"""The availability-service under test: in-process against real Kafka and Postgres, fed with events the way
booking-service, the exchange-poller or another producer publishes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from spacesync.availability_service.settings import AvailabilitySettings
from spacesync.availability_service.store import VIEW_TABLES
from spacesync.common.db import quote_ident
from spacesync.common.events import EVENT_TYPES, CloudEvent, Topic
from spacesync.common.events.catalog import CategoryState, LocationState, OpeningHours, SpaceState
from spacesync.common.events.freebusy import BusyPeriod, FreeBusyState, OutlookBusyStatus
from spacesync.common.settings import KafkaSettings, PostgresSettings
from spacesync.testing import RunningApp
from spacesync.testing.events import new_id
from spacesync.testing.kafka import group_caught_up, produce

SOURCE = "/test/booking-system"
TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ZONE = "Europe/London"
HOURS_8_TO_18 = OpeningHours.model_validate(
    {day: [{"open": "08:00", "close": "18:00"}] for day in OpeningHours.WEEKDAYS})


def availability_settings(postgres_dsn: str, kafka: KafkaSettings) -> AvailabilitySettings:
    return AvailabilitySettings(
        admin_token=SecretStr(TOKEN), schema_name=f"availability_{uuid.uuid4().hex[:8]}", kafka=kafka,
        consumer_group=f"availability-{uuid.uuid4().hex[:8]}",
        postgres=PostgresSettings(dsn=SecretStr(postgres_dsn)), lag_interval_seconds=0.5,
        fold_connections=2)  # the shares path; the rebuild command runs with the default (one)


def a_future_day(days: int = 3) -> date:
    return (datetime.now(UTC) + timedelta(days=days)).date()


def local(day: date, hour: int) -> datetime:
    """`hour` o'clock on `day` in the test location's zone, as UTC."""
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


@dataclass
class Place:
    location: LocationState
    category: CategoryState
    space: SpaceState

    @property
    def space_id(self) -> str:
        return self.space.space_id


@dataclass
class Service:
    running: RunningApp
    settings: AvailabilitySettings

    async def publish(self, ce_type: str, data: BaseModel, *, source: str = SOURCE) -> None:
        known = EVENT_TYPES[ce_type]
        key = getattr(data, known.key)
        event = CloudEvent(source=source, type=ce_type, subject=key)
        await self.produce(known.topic, data.model_dump_json().encode(), key=key, headers=event.to_headers())

    async def produce(self, topic: Topic, value: bytes, *, key: str, headers: dict[str, str]) -> None:
        await produce(self.settings.kafka.bootstrap_servers, self.settings.kafka.topic(topic.value), value,
                      key=key.encode(), headers=headers)

    async def place(self, *, location: LocationState | None = None, spaces: int = 1) -> list[Place]:
        now = datetime.now(UTC)
        location = location or LocationState(location_id=new_id(), version=1, name="Main Library", timezone=ZONE,
                                             updated_at=now)
        category = CategoryState(category_id=new_id(), location_id=location.location_id, version=1,
                                 name="Study Rooms", public_nicknames=True, updated_at=now)
        await self.publish("location.upserted", location)
        await self.publish("category.upserted", category)
        places = []
        for n in range(spaces):
            space = SpaceState(space_id=new_id(), location_id=location.location_id, category_id=category.category_id,
                               version=1, name=f"Room {n}", slot_minutes=60, max_booking_minutes=240,
                               opening_hours=HOURS_8_TO_18, updated_at=now)
            await self.publish("space.upserted", space)
            places.append(Place(location, category, space))
        return places

    async def settled(self, timeout: float = 30.0) -> None:
        await group_committed(self.settings, timeout)

    async def get(self, path: str, *, admin: bool = False, **params: Any) -> Any:
        response = await self.running.client.get(path, params=params, headers=ADMIN if admin else None)
        assert response.status_code == 200, response.text
        return response.json()

    async def public_slots(self, space_id: str, day: date) -> dict[str, bool]:
        body = await self.get(f"/v1/spaces/{space_id}/slots", start=day.isoformat())
        return {slot["start"]: slot["available"] for slot in body["slots"]}

    async def admin_slots(self, space_id: str, day: date) -> dict[str, dict[str, Any]]:
        body = await self.get(f"/v1/admin/spaces/{space_id}/slots", admin=True, start=day.isoformat())
        return {slot["start"]: slot for slot in body["slots"]}

    async def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the view tables, sorted: what 'the views' are."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        async with self.running.app.state.db.acquire() as conn:
            for table in VIEW_TABLES:
                rows = await conn.fetch(f"SELECT * FROM {quote_ident(self.settings.schema_name)}.{table}")
                out[table] = sorted((tuple(r.values()) for r in rows), key=repr)
        return out


def key(at: datetime) -> str:
    """A time as the API writes it (UTC, Z)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def picture(place: Place, sequence: int, *busy: tuple[datetime, datetime, str | None],
            mailbox: str | None = "room101@example.org") -> FreeBusyState:
    now = datetime.now(UTC)
    return FreeBusyState(
        space_id=place.space_id, location_id=place.location.location_id, mailbox=mailbox, sequence=sequence,
        window_start=now - timedelta(days=1), window_end=now + timedelta(days=60), observed_at=now,
        busy=[BusyPeriod(start=start, end=end, status=OutlookBusyStatus.BUSY, organizer=organizer)
              for start, end, organizer in busy])


async def group_committed(settings: AvailabilitySettings, timeout: float = 30.0) -> None:
    """Waits until the service's consumer group committed every record now on its three topics: everything
    published so far is folded (or dead-lettered), so views and absences can be asserted."""
    kafka = settings.kafka
    topics = [kafka.topic(t.value) for t in (Topic.BOOKING_EVENTS, Topic.CATALOG_EVENTS, Topic.EXCHANGE_FREEBUSY)]
    await group_caught_up(kafka.bootstrap_servers, settings.consumer_group, topics, kafka.topic_partitions,
                          timeout=timeout, message="availability-service folded every event")
