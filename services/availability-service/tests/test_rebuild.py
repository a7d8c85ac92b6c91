"""Rebuild: the topics replayed into a fresh schema give the live views, row for row (real Kafka and Postgres)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from availability_helpers import Service, a_future_day, local, picture

from spacesync.availability_service.rebuild import rebuild
from spacesync.common.db import quote_ident
from spacesync.common.events import Topic
from spacesync.common.events.booking import BookingStatus
from spacesync.testing.events import booking, changed


async def live_stream(service: Service) -> None:
    """A stream with duplicates, out-of-order versions and sequences, two sources, and a bad record."""
    places = await service.place(spaces=3)
    day = a_future_day(5)
    for n, place in enumerate(places):
        v1 = booking((place.space_id, local(day, 9 + n), 60), (place.space_id, local(day, 14), 60), nickname="Owl")
        v2 = changed(v1, (place.space_id, local(day, 10 + n), 60), (place.space_id, local(day, 14), 60))
        v3 = changed(v2, (place.space_id, local(day, 10 + n), 60), (place.space_id, local(day, 14), 60),
                     cancelled={1})
        for state in (v1, v3, v2, v1, v3):
            await service.publish("booking.updated", state)
        other = booking((place.space_id, local(day, 16), 60), booking_id=v1.booking_id)
        await service.publish("booking.created", other, source="/kiosk")
        await service.publish("booking.cancelled", changed(other, (place.space_id, local(day, 16), 60),
                                                           status=BookingStatus.CANCELLED), source="/kiosk")
        for sequence, busy in ((3, [(local(day, 12), local(day, 13), "Grace Hopper")]), (2, []), (3, []),
                               (4, [(local(day, 8), local(day, 8) + timedelta(minutes=30), None)])):
            await service.publish("freebusy.changed", picture(place, sequence, *busy))
    await service.publish("space.upserted", places[0].space.model_copy(update={"version": 3, "name": "Renamed"}))
    await service.publish("space.upserted", places[0].space.model_copy(update={"version": 2, "name": "Older"}))
    await service.produce(Topic.BOOKING_EVENTS, b"{not json", key="x", headers={
        "ce_specversion": "1.0", "ce_id": "bad-1", "ce_source": "/broken", "ce_type": "booking.created"})
    await service.settled()


async def test_a_rebuild_from_the_topics_gives_the_live_views(service: Service) -> None:
    await live_stream(service)
    live = await service.rows()
    assert len(live["booked_slots"]) == 3
    assert len(live["busy_periods"]) == 3
    assert {row[4] for row in live["spaces"]} == {"Renamed", "Room 1", "Room 2"}

    report = await rebuild(service.settings, compare=True)
    assert report.identical, report.text()
    assert len(report.skipped) == 1
    assert "not JSON" in report.skipped[0]
    assert report.folded == report.records - 1

    # the comparison notices a difference
    schema = quote_ident(service.settings.schema_name)
    async with service.running.app.state.db.acquire() as conn:
        await conn.execute(
            f"DELETE FROM {schema}.busy_periods WHERE ctid = (SELECT min(ctid) FROM {schema}.busy_periods)")
        await conn.execute(f"UPDATE {schema}.spaces SET name = 'Changed' WHERE name = 'Renamed'")
    again = await rebuild(service.settings, compare=True)
    assert again.differences is not None
    assert again.differences["spaces"] == (1, 1)
    assert again.differences["busy_periods"] == (0, 1)
    assert not again.identical


async def test_a_comparison_says_when_the_live_service_had_not_folded_what_the_rebuild_read(
        service: Service) -> None:
    await service.place()
    await service.settled()
    report = await rebuild(service.settings, compare=True)
    assert report.live_elsewhere == {}, report.text()
    assert "the live service had folded" not in report.text()

    # a live service that folded nothing yet (its group committed nothing): waited for, then named
    behind = service.settings.model_copy(update={"consumer_group": f"{service.settings.consumer_group}-new"})
    report = await rebuild(behind, compare=True, live_wait_seconds=1.0)
    catalog = f"{service.settings.kafka.topic(Topic.CATALOG_EVENTS.value)}/"
    lagging = {p: offsets for p, offsets in report.live_elsewhere.items() if p.startswith(catalog)}
    assert lagging, report.live_elsewhere
    assert all(end > 0 and live == 0 for end, live in lagging.values()), report.live_elsewhere
    assert "the live service had folded up to 0" in report.text()


async def test_the_rebuild_command(service: Service) -> None:
    [place] = await service.place()
    await service.settled()
    async with service.running.app.state.db.acquire() as conn:  # the live view drifts from the topics
        await conn.execute(f"UPDATE {quote_ident(service.settings.schema_name)}.spaces SET name = 'Drifted'"
                           " WHERE space_id = $1", place.space_id)
    settings = service.settings
    env = {**os.environ, "SPACESYNC_POSTGRES_DSN": settings.postgres.dsn.get_secret_value(),
           "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "SPACESYNC_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
           "SPACESYNC_SCHEMA_NAME": settings.schema_name, "SPACESYNC_ADMIN_TOKEN": "unused",
           "SPACESYNC_LOG_LEVEL": "WARNING"}
    schema = f"{settings.schema_name}_cli"
    command = [sys.executable, "-m", "spacesync.availability_service", "rebuild", "--schema", schema, "--compare"]
    code, out, err = await run(command, env)
    # the command says so with exit code 1
    assert code == 1, out + err
    assert f"rebuilt schema {schema}" in out
    assert "views DIFFER" in out
    code, _, err = await run(command, env)
    assert code != 0
    assert "exists already" in err


async def run(command: list[str], env: dict[str, str]) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()
