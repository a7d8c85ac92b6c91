"""Every booking change over HTTP lands on Kafka as one CloudEvent with the full state and the next version."""

from __future__ import annotations

import asyncio
from collections import Counter

from booking_helpers import ADMIN, Room, Service, at, booking, make_room, slot

from spacesync.testing import KafkaReader, wait_until


async def drained(service: Service, reader: KafkaReader) -> None:
    """Everything committed so far is on Kafka and read: the outbox is empty and the reader is at the end."""
    async def outbox_empty() -> bool:
        async with service.running.app.state.db.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))

    await wait_until(outbox_empty, message="outbox drained")
    await reader.caught_up()


async def test_create_change_cancel_emit_versioned_full_state_events(service: Service, room: Room) -> None:
    other = await make_room(service)
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("booking.events")) as reader:
        created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(2, 15))))
        assert created.status_code == 201, created.text
        body = created.json()
        booking_id, first_slot = body["id"], body["slots"][0]["slot_id"]
        assert created.headers["location"] == f"/v1/bookings/{booking_id}"
        assert body["slots"][0]["exchange"] == {"sync_id": None, "change_key": None, "state": None, "mailbox": None,
                                                "attempts": None, "error": None, "synced_at": None}

        moved = await service.http.patch(f"/v1/bookings/{booking_id}", headers={"If-Match": '"1"'}, json={
            "slots": [slot(room.space_id, at(2, 16), slot_id=first_slot), slot(other.space_id, at(3, 9))]})
        assert moved.status_code == 200, moved.text
        assert moved.json()["version"] == 2

        cancelled = await service.http.post(f"/v1/bookings/{booking_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        await reader.wait_for(lambda r: r.key == booking_id, count=3)
        await drained(service, reader)
        records = reader.by_key(booking_id)

    assert [r.ce_type for r in records] == ["booking.created", "booking.updated", "booking.cancelled"]
    assert [r.json["version"] for r in records] == [1, 2, 3]
    assert len({r.headers["ce_id"] for r in records}) == 3
    assert all(r.headers["ce_subject"] == booking_id and r.headers["ce_source"] == "/spacesync/booking-service"
               for r in records)
    created_event, updated_event, cancelled_event = (r.json for r in records)
    assert created_event["patron"] == {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"}
    assert updated_event["slots"][0]["slot_id"] == first_slot
    assert updated_event["slots"][0]["start"] == at(2, 16).isoformat().replace("+00:00", "Z")
    assert updated_event["slots"][1]["space_id"] == other.space_id
    assert cancelled_event["status"] == "cancelled"
    assert {s["status"] for s in cancelled_event["slots"]} == {"cancelled"}


async def test_cancelling_one_slot_keeps_the_rest_and_the_last_cancels_the_booking(
    service: Service, room: Room,
) -> None:
    created = await service.http.post("/v1/bookings", json=booking(
        slot(room.space_id, at(4, 10)), slot(room.space_id, at(4, 14))))
    booking_id = created.json()["id"]
    first, second = (s["slot_id"] for s in created.json()["slots"])
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("booking.events")) as reader:
        one = await service.http.post(f"/v1/bookings/{booking_id}/slots/{first}/cancel")
        assert one.json()["status"] == "confirmed"
        assert [s["status"] for s in one.json()["slots"]] == ["cancelled", "confirmed"]
        # The freed time is bookable again.
        again = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(4, 10))))
        assert again.status_code == 201, again.text
        last = await service.http.post(f"/v1/bookings/{booking_id}/slots/{second}/cancel")
        assert last.json()["status"] == "cancelled"
        records = await reader.wait_for(lambda r: r.key == booking_id, count=3)
    assert [r.ce_type for r in records] == ["booking.created", "booking.updated", "booking.cancelled"]


async def test_patron_change_is_an_update_and_a_no_op_change_emits_nothing(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(5, 10))))
    booking_id = created.json()["id"]
    same = await service.http.patch(f"/v1/bookings/{booking_id}", json={"patron": {"first_name": "Ada"}})
    assert same.json()["version"] == 1
    renamed = await service.http.patch(f"/v1/bookings/{booking_id}", json={"patron": {"email": "ada@uni.edu"}})
    assert renamed.json()["version"] == 2
    assert renamed.json()["patron"]["email"] == "ada@uni.edu"
    stale = await service.http.patch(f"/v1/bookings/{booking_id}", headers={"If-Match": '"1"'},
                                     json={"patron": {"first_name": "Augusta"}})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"'


async def test_fifty_concurrent_requests_for_one_slot_yield_one_booking(service: Service, room: Room) -> None:
    start = at(6, 11)
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("booking.events")) as reader:
        responses = await asyncio.gather(*(
            service.http.post("/v1/bookings", json=booking(slot(room.space_id, start, 30))) for _ in range(50)))
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: 49}, statuses
        winner = next(r for r in responses if r.status_code == 201).json()["id"]
        conflict = next(r for r in responses if r.status_code == 409)
        assert conflict.headers["content-type"] == "application/problem+json"
        assert start.strftime("%Y-%m-%dT%H:%MZ") in conflict.json()["detail"]
        await reader.wait_for(lambda r: r.key == winner)
        await drained(service, reader)
    events = [r for r in reader.records if any(s["space_id"] == room.space_id for s in r.json["slots"])]
    assert [r.key for r in events] == [winner]


async def test_catalog_changes_emit_catalog_events(service: Service) -> None:
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        room = await make_room(service, nicknames=True)
        renamed = await service.http.patch(f"/v1/admin/spaces/{room.space_id}", headers=ADMIN,
                                           json={"name": "Quiet Room", "slot_minutes": 60, "max_booking_minutes": 120})
        assert renamed.status_code == 200, renamed.text
        space_events = await reader.wait_for(lambda r: r.key == room.space_id, count=2)
        await reader.wait_for(lambda r: r.key in (room.location_id, room.category_id), count=2)
    assert [(r.ce_type, r.json["version"]) for r in space_events] == [("space.upserted", 1), ("space.upserted", 2)]
    assert space_events[1].json["name"] == "Quiet Room"
    assert space_events[1].json["location_id"] == room.location_id


async def test_slots_of_a_booking_can_swap_and_reshuffle_in_one_change(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(
        slot(room.space_id, at(7, 9)), slot(room.space_id, at(7, 10))))
    first, second = (s["slot_id"] for s in created.json()["slots"])
    swapped = await service.http.patch(f"/v1/bookings/{created.json()['id']}", json={"slots": [
        slot(room.space_id, at(7, 10), slot_id=first), slot(room.space_id, at(7, 9), slot_id=second)]})
    assert swapped.status_code == 200, swapped.text
    # A new slot where a kept one used to be, listed before the move that frees it.
    shuffled = await service.http.patch(f"/v1/bookings/{created.json()['id']}", json={"slots": [
        slot(room.space_id, at(7, 10)), slot(room.space_id, at(7, 11), slot_id=first),
        slot(room.space_id, at(7, 9), slot_id=second)]})
    assert shuffled.status_code == 200, shuffled.text
    confirmed = sorted((s["start"], s["slot_id"]) for s in shuffled.json()["slots"] if s["status"] == "confirmed")
    assert [start for start, _ in confirmed] == [
        at(7, h).isoformat().replace("+00:00", "Z") for h in (9, 10, 11)]
