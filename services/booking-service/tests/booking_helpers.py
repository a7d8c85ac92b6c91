"""Helpers for booking-service tests: the running service, rooms, times and request bodies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from spacesync.booking_service.settings import BookingServiceSettings
from spacesync.common.events import BookingSyncState, CloudEvent, SlotSync
from spacesync.common.secrets import generate_key
from spacesync.common.settings import KafkaSettings, PostgresSettings
from spacesync.testing import RunningApp
from spacesync.testing.kafka import produce

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_KEY = generate_key()  # encrypts the Exchange passwords of this test run
ALL_WEEK = {day: [{"open": "00:00", "close": "24:00"}] for day in
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}


@dataclass
class Service:
    running: RunningApp
    settings: BookingServiceSettings

    @property
    def http(self) -> Any:
        return self.running.client

    def topic(self, name: str) -> str:
        return self.settings.kafka.topic(name)


def service_settings(postgres_dsn: str, kafka: KafkaSettings) -> BookingServiceSettings:
    return BookingServiceSettings(
        admin_token=SecretStr(ADMIN_TOKEN), secret_keys=SecretStr(SECRET_KEY),
        schema_name=f"booking_{uuid.uuid4().hex[:8]}",
        kafka=kafka, postgres=PostgresSettings(dsn=SecretStr(postgres_dsn), pool_max_size=20),
        outbox_poll_interval_seconds=0.5)


@dataclass
class Room:
    location_id: str
    category_id: str
    space_id: str


async def make_room(service: Service, *, slot_minutes: int = 30, max_minutes: int = 240,
                    nicknames: bool = False, timezone: str = "America/Chicago") -> Room:
    location = await service.http.post("/v1/admin/locations", headers=ADMIN,
                                       json={"name": "Main Library", "timezone": timezone})
    assert location.status_code == 201, location.text
    location_id = location.json()["location_id"]
    category = await service.http.post("/v1/admin/categories", headers=ADMIN, json={
        "location_id": location_id, "name": "Study Rooms", "public_nicknames": nicknames})
    assert category.status_code == 201, category.text
    category_id = category.json()["category_id"]
    space = await service.http.post("/v1/admin/spaces", headers=ADMIN, json={
        "category_id": category_id, "name": f"Room {uuid.uuid4().hex[:4]}", "slot_minutes": slot_minutes,
        "max_booking_minutes": max_minutes, "opening_hours": ALL_WEEK})
    assert space.status_code == 201, space.text
    return Room(location_id, category_id, space.json()["space_id"])


def at(days: int, hour: int, minute: int = 0) -> datetime:
    """A future time on the grid: `days` from today at hour:minute UTC."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour, minutes=minute)


def slot(space_id: str, start: datetime, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    return {"space_id": space_id, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat(),
            **extra}


def booking(*slots: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"patron": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
            "slots": list(slots), **extra}


async def publish_sync(service: Service, state: BookingSyncState, ce_type: str = "booking.synced") -> None:
    """Publishes on exchange.sync as the exchange-writer would."""
    event = CloudEvent(source="/spacesync/exchange-writer", type=ce_type, subject=state.booking_id)
    await produce(service.settings.kafka.bootstrap_servers, service.topic("exchange.sync"),
                  state.model_dump_json().encode(), key=state.booking_id.encode(), headers=event.to_headers())


def sync_state(booking_id: str, slot_id: str, space_id: str, sequence: int, **fields: Any) -> BookingSyncState:
    """What the exchange-writer publishes about one slot of a booking."""
    return BookingSyncState(
        booking_id=booking_id, booking_source="/spacesync/booking-service", booking_version=1, sequence=sequence,
        observed_at=datetime.now(UTC), slots=[SlotSync(slot_id=slot_id, space_id=space_id, **fields)])
