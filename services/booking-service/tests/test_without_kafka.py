"""Kafka unreachable from the start: bookings are still taken, the outbox backlog is visible, shutdown is prompt."""

from __future__ import annotations

import asyncio
import re

from booking_helpers import Service, at, booking, make_room, service_settings

from spacesync.booking_service.app import create_app
from spacesync.common.settings import KafkaSettings
from spacesync.testing import run_app, wait_until


async def test_service_without_kafka_takes_bookings_and_reports_the_backlog(postgres_dsn: str) -> None:
    settings = service_settings(postgres_dsn, KafkaSettings(bootstrap_servers="127.0.0.1:9"))
    settings = settings.model_copy(update={"shutdown_grace_seconds": 60.0})
    app = create_app(settings)

    async with run_app(app) as running:
        service = Service(running, settings)
        room = await make_room(service)
        created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id)))
        assert created.status_code == 201, created.text
        ready = await service.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["kafka"].startswith("failing")

        async def backlog() -> float | None:
            text = (await service.http.get("/metrics")).text
            found = re.search(rf'spacesync_outbox_backlog{{schema="{settings.schema_name}"}} (\S+)', text)
            return float(found.group(1)) if found and float(found.group(1)) > 0 else None

        # location, category, space, booking: four events wait in the outbox
        assert await wait_until(backlog, message="outbox backlog gauge") == 4
        shutdown = asyncio.get_running_loop().time()
    # Leaving run_app ran the shutdown: it must not sit out the grace period retrying Kafka.
    assert asyncio.get_running_loop().time() - shutdown < 15


def slot(space_id: str) -> dict[str, str]:
    start = at(2, 10)
    return {"space_id": space_id, "start": start.isoformat(), "end": at(2, 11).isoformat()}
