"""The exchange-poller under test: in-process against real Kafka, Postgres and the EWS simulator, fed with
catalog events the way booking-service publishes them; its pictures read back from exchange.freebusy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from spacesync.common.events import EVENT_TYPES, CloudEvent, Topic
from spacesync.common.events.catalog import LocationState, OpeningHours, SpaceState
from spacesync.common.exchange import GatewaySettings
from spacesync.common.secrets import SecretBox
from spacesync.common.settings import KafkaSettings, PostgresSettings
from spacesync.exchange_poller.engine import Poller
from spacesync.exchange_poller.settings import PollerSettings
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import KafkaReader, RunningApp, wait_until
from spacesync.testing.exchange import WRITER, SimulatorAdmin, connection, room
from spacesync.testing.kafka import produce

SOURCE = "/test/booking-system"
ALL_DAY = OpeningHours.model_validate({day: [{"open": "00:00", "close": "24:00"}] for day in OpeningHours.WEEKDAYS})


def poller_settings(postgres_dsn: str, kafka: KafkaSettings, secret_key: str, **options: Any) -> PollerSettings:
    """The settings of the poller under test; `options` replace any of them."""
    settings: dict[str, Any] = dict(
        secret_keys=SecretStr(secret_key), schema_name=f"poller_{uuid.uuid4().hex[:8]}", kafka=kafka,
        consumer_group=f"exchange-poller-{uuid.uuid4().hex[:8]}", reconcile_interval_seconds=3600,
        postgres=PostgresSettings(dsn=SecretStr(postgres_dsn), pool_max_size=10), debounce_seconds=0.1,
        outbox_poll_interval_seconds=0.5, exchange=GatewaySettings(max_connections=8, timeout_seconds=10))
    return PollerSettings(**{**settings, **options})


@dataclass
class Place:
    location: LocationState
    space: SpaceState

    @property
    def space_id(self) -> str:
        return self.space.space_id

    @property
    def mailbox(self) -> str:
        assert self.space.exchange_resource is not None
        return self.space.exchange_resource


@dataclass
class PollerUnderTest:
    running: RunningApp
    settings: PollerSettings
    sim: EmbeddedSimulator
    admin: SimulatorAdmin
    secrets: SecretBox
    reader: KafkaReader
    rooms_used: list[int] = field(default_factory=list)

    @property
    def poller(self) -> Poller:
        poller: Poller = self.running.app.state.active.poller
        return poller

    async def publish(self, ce_type: str, data: BaseModel) -> None:
        known = EVENT_TYPES[ce_type]
        key = getattr(data, known.key)
        event = CloudEvent(source=SOURCE, type=ce_type, subject=key)
        await produce(self.settings.kafka.bootstrap_servers, self.settings.kafka.topic(known.topic.value),
                      data.model_dump_json().encode(), key=key.encode(), headers=event.to_headers())

    def next_room(self) -> str:
        self.rooms_used.append(len(self.rooms_used))
        return room(self.rooms_used[-1])

    async def place(self, *, mailbox: str | None = None, username: str = WRITER, **options: Any) -> Place:
        """A connected location and a paired space, published and watched by the poller."""
        now = datetime.now(UTC)
        location = LocationState(
            location_id=new_id(), version=1, name="Main Library", timezone="America/Chicago", updated_at=now,
            exchange=connection(self.sim, self.secrets, username=username, **options))
        space = SpaceState(space_id=new_id(), location_id=location.location_id, category_id=new_id(), version=1,
                           name="Study Room", slot_minutes=30, max_booking_minutes=240, opening_hours=ALL_DAY,
                           updated_at=now, exchange_resource=mailbox or self.next_room(), paired_at=now)
        await self.publish("location.upserted", location)
        await self.publish("space.paired", space)
        await wait_until(lambda: space.space_id in self.poller.rooms, timeout=30, message="the room is watched")
        return Place(location, space)

    def pictures(self, space_id: str) -> list[dict[str, Any]]:
        topic = self.settings.kafka.topic(Topic.EXCHANGE_FREEBUSY.value)
        return sorted((r.json for r in self.reader.by_key(space_id, topic)), key=lambda data: data["sequence"])

    async def picture(self, space_id: str, *, reconcile: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """The space's picture once everything read so far is published: a reconciliation, then the picture with
        the sequence the poller recorded."""
        if reconcile:
            await self.poller.reconcile()
        sequence = self.poller.sequence(space_id)

        def latest() -> dict[str, Any] | None:
            pictures = self.pictures(space_id)
            return pictures[-1] if pictures and pictures[-1]["sequence"] == sequence else None

        found: dict[str, Any] = await wait_until(latest, timeout=timeout, message=f"picture {sequence} of {space_id}")
        return found


def new_id() -> str:
    return str(uuid.uuid4())


def at(days: int, hour: int, minute: int = 0) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour, minutes=minute)


def periods(picture: dict[str, Any]) -> list[tuple[datetime, datetime, str]]:
    return [(datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]), p["status"])
            for p in picture["busy"]]


def ews_requests(sim: EmbeddedSimulator, operation: str, outcome: str = "NoError") -> int:
    """EWS requests the simulator answered with this operation and (first) response code."""
    return int(sum(found.value for metric in sim.state.metrics.requests.collect() for found in metric.samples
                   if found.name.endswith("_total") and found.labels["operation"] == operation
                   and found.labels["outcome"] == outcome))
