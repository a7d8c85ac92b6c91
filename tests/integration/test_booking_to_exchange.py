"""End to end: booking-service -> Kafka -> exchange-writer -> the room's calendar (the EWS simulator), and the
Sync IDs back in booking details. Real Kafka, Postgres and exchangelib; both services in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from booking_helpers import ADMIN, SECRET_KEY, Room, Service, at, booking, make_room, service_settings, slot
from exchangelib import close_connections
from fastapi import FastAPI
from writer_helpers import writer_settings, writer_settled

from spacesync.booking_service.app import create_app as booking_app
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_writer.app import create_app as writer_app
from spacesync.exchange_writer.settings import WriterSettings
from spacesync.testing import run_app, wait_until
from spacesync.testing.exchange import PASSWORD, WRITER, SimulatorAdmin, room, rooms_seed


@dataclass
class Stack:
    service: Service
    sim: EmbeddedSimulator
    admin: SimulatorAdmin
    writer: FastAPI
    writer_settings: WriterSettings

    @property
    def http(self) -> Any:
        return self.service.http


@pytest.fixture(scope="module")
def simulator() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(rooms_seed(8)) as sim:
        yield sim
    close_connections()


@pytest.fixture(scope="module")
async def stack(postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings],
                simulator: EmbeddedSimulator) -> AsyncIterator[Stack]:
    kafka = kafka_settings()
    booking_settings = service_settings(postgres_dsn, kafka)
    # No grace: the import test pairs right after booking, and those bookings must wait for the import.
    writer_config = writer_settings(postgres_dsn, kafka, SECRET_KEY).model_copy(update={"pairing_grace_seconds": 0})
    bookings, writer = booking_app(booking_settings), writer_app(writer_config)
    admin = SimulatorAdmin(simulator)
    async with run_app(bookings) as running, run_app(writer):
        await wait_until(lambda: bookings.state.relay.is_leader and writer.state.relay.is_leader, timeout=60,
                         message="both services connected to Kafka")
        yield Stack(Service(running, booking_settings), simulator, admin, writer, writer_config)
    await admin.close()


async def paired_room(stack: Stack, mailbox: str, **location_options: Any) -> Room:
    made = await make_room(stack.service, **location_options.pop("room", {}))
    connected = await stack.http.put(f"/v1/admin/locations/{made.location_id}/exchange", headers=ADMIN, json={
        "server": stack.sim.ews_url, "username": WRITER, "password": PASSWORD, **location_options})
    assert connected.status_code == 200, connected.text
    paired = await stack.http.put(f"/v1/admin/spaces/{made.space_id}/exchange", headers=ADMIN,
                                  json={"resource": mailbox})
    assert paired.status_code == 200, paired.text
    return made


async def details_when(stack: Stack, booking_id: str, state: str, version: int) -> dict[str, Any]:
    """Booking details once every slot's Exchange state is `state` for the booking's `version`."""
    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = (await stack.http.get(f"/v1/bookings/{booking_id}")).json()
        slots = body["slots"]
        done = body["version"] == version and all(s["exchange"]["state"] == state for s in slots)
        return body if done else None
    found: dict[str, Any] = await wait_until(check, timeout=30, message=f"booking {booking_id} {state}")
    return found


async def test_create_change_cancel_and_sync_ids_in_booking_details(stack: Stack) -> None:
    mailbox = room(0)
    made_room = await paired_room(stack, mailbox)
    first, second = at(3, 9), at(3, 13)
    created = await stack.http.post("/v1/bookings", json=booking(slot(made_room.space_id, first, 60),
                                                                 slot(made_room.space_id, second, 30)))
    assert created.status_code == 201, created.text
    booking_id = created.json()["id"]

    details = await details_when(stack, booking_id, "synced", 1)
    items = {item["id"]: item for item in await stack.admin.items(mailbox)}
    for view, start, minutes in zip(details["slots"], (first, second), (60, 30), strict=True):
        item = items[view["exchange"]["sync_id"]]  # each date/time shows its own Sync ID
        assert view["exchange"]["mailbox"] == mailbox
        assert item["subject"] == "Ada Lovelace"
        assert datetime.fromisoformat(item["start"]) == start
        assert datetime.fromisoformat(item["end"]) == start + timedelta(minutes=minutes)
        assert booking_id in item["body"]

    first_slot = details["slots"][0]
    moved = await stack.http.patch(f"/v1/bookings/{booking_id}", json={"slots": [
        {**slot(made_room.space_id, at(3, 10), 60), "slot_id": first_slot["slot_id"]},
        {**slot(made_room.space_id, second, 30), "slot_id": details["slots"][1]["slot_id"]}]})
    assert moved.status_code == 200, moved.text
    details = await details_when(stack, booking_id, "synced", 2)
    item = next(i for i in await stack.admin.items(mailbox) if i["id"] == first_slot["exchange"]["sync_id"])
    assert datetime.fromisoformat(item["start"]) == at(3, 10)
    assert details["slots"][0]["exchange"]["sync_id"] == first_slot["exchange"]["sync_id"]

    cancelled = await stack.http.post(f"/v1/bookings/{booking_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    await details_when(stack, booking_id, "removed", 3)
    assert await stack.admin.items(mailbox) == []


@pytest.mark.parametrize(("mailbox_index", "title_rule", "nickname", "expected"), [
    (1, "patron_name", "Night Owls", "Ada Lovelace"),
    (2, "patron_name_and_email", None, "Ada Lovelace (ada@example.org)"),
    (3, "public_nickname", "Night Owls", "Night Owls"),
    (5, "public_nickname", None, ""),
])
async def test_event_title_option(stack: Stack, mailbox_index: int, title_rule: str, nickname: str | None,
                                  expected: str) -> None:
    mailbox = room(mailbox_index)
    made_room = await paired_room(stack, mailbox, title_rule=title_rule, room={"nicknames": True})
    body = booking(slot(made_room.space_id, at(4, 9 + (4 if nickname else 0)), 30))
    if nickname:
        body["public_nickname"] = nickname
    created = await stack.http.post("/v1/bookings", json=body)
    assert created.status_code == 201, created.text
    details = await details_when(stack, created.json()["id"], "synced", 1)
    sync_id = details["slots"][0]["exchange"]["sync_id"]
    [item] = [i for i in await stack.admin.items(mailbox) if i["id"] == sync_id]
    assert item["subject"] == expected


async def test_a_space_that_is_not_paired_gets_nothing(stack: Stack) -> None:
    paired = await paired_room(stack, room(4))
    unpaired = await make_room(stack.service)
    lonely = await stack.http.post("/v1/bookings", json=booking(slot(unpaired.space_id, at(5, 9), 60)))
    marker = await stack.http.post("/v1/bookings", json=booking(slot(paired.space_id, at(5, 9), 60)))
    await details_when(stack, marker.json()["id"], "synced", 1)
    details = (await stack.http.get(f"/v1/bookings/{lonely.json()['id']}")).json()
    assert details["slots"][0]["exchange"]["sync_id"] is None
    assert len(await stack.admin.items(room(4))) == 1


async def test_import_dry_run_then_run_pushes_the_existing_bookings_once(stack: Stack) -> None:
    mailbox = room(6)
    made_room = await make_room(stack.service)
    existing = []
    for hour in (9, 11, 15):
        created = await stack.http.post("/v1/bookings", json=booking(slot(made_room.space_id, at(6, hour), 60)))
        assert created.status_code == 201, created.text
        existing.append(created.json()["id"])
    connected = await stack.http.put(f"/v1/admin/locations/{made_room.location_id}/exchange", headers=ADMIN,
                                     json={"server": stack.sim.ews_url, "username": WRITER, "password": PASSWORD})
    assert connected.status_code == 200, connected.text
    paired = await stack.http.put(f"/v1/admin/spaces/{made_room.space_id}/exchange", headers=ADMIN,
                                  json={"resource": mailbox})
    assert paired.status_code == 200, paired.text
    import_url = f"/v1/admin/spaces/{made_room.space_id}/exchange/import"

    preview = (await stack.http.post(import_url, params={"dry_run": "true"}, headers=ADMIN)).json()
    assert (preview["would_create"], preview["already_there"]) == (3, 0), preview
    assert await stack.admin.items(mailbox) == [], "bookings from before the pairing wait for the import"

    started = await stack.http.post(import_url, params={"dry_run": "false"}, headers=ADMIN)
    assert started.status_code == 202, started.text
    for booking_id in existing:
        await details_when(stack, booking_id, "synced", 1)
    assert len(await stack.admin.items(mailbox)) == 3

    again = (await stack.http.post(import_url, params={"dry_run": "true"}, headers=ADMIN)).json()
    assert (again["would_create"], again["already_there"]) == (0, 3), again
    rerun = await stack.http.post(import_url, params={"dry_run": "false"}, headers=ADMIN)
    assert rerun.status_code == 202, rerun.text
    await wait_until(lambda: stack.service.running.app.state.relay.is_leader, message="relay")
    await wait_until(lambda: _outbox_empty(stack), message="the import request published")
    await writer_settled(stack.writer, stack.writer_settings)
    assert len(await stack.admin.items(mailbox)) == 3, "running the import again doubles nothing"


async def _outbox_empty(stack: Stack) -> bool:
    async with stack.service.running.app.state.db.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))
