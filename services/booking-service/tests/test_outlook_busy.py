"""booking-service folds exchange.freebusy and refuses new or moved slots over Outlook busy time (409)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from booking_exchange_helpers import assert_problem
from booking_helpers import Room, Service, at, booking, slot
from booking_outlook_helpers import (
    folded,
    freebusy_consumed,
    meeting,
    outlook_busy,
    picture,
    publish_picture,
    publish_raw,
    refusals,
)

from spacesync.booking_service import outlook_store
from spacesync.common.events import OutlookBusyStatus
from spacesync.common.kafka import dlq_topic
from spacesync.testing import KafkaReader, wait_until


def busy_problem(response: Any, field: str) -> dict[str, Any]:
    body = assert_problem(response, 409, "/problems/busy-in-outlook", field)
    assert body["title"] == "BUSY in Outlook"
    assert "BUSY in Outlook" in body["detail"]
    return body


async def test_a_booking_over_outlook_busy_time_is_refused_and_free_time_still_books(
        service: Service, room: Room) -> None:
    await publish_picture(service, picture(room, 10, meeting(at(3, 12), organizer="Grace Hopper"),
                                           meeting(at(3, 16), status=OutlookBusyStatus.OOF)))
    admin_view = await folded(service, room, 10)
    assert [(m["organizer"], m["status"]) for m in admin_view["upcoming"]] == [("Grace Hopper", "Busy"), (None, "OOF")]
    before = await refusals(service, "create")

    refused = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(3, 12, 30))))
    body = busy_problem(refused, "body.slots.0")
    assert f"from {at(3, 12):%Y-%m-%dT%H:%MZ} to {at(3, 13):%Y-%m-%dT%H:%MZ}" in body["detail"]
    assert body["busy"] == [{"slot": 0, "space_id": room.space_id, "start": at(3, 12).isoformat(),
                             "end": at(3, 13).isoformat()}]
    assert "Hopper" not in refused.text  # public: nothing personal
    assert await refusals(service, "create") == before + 1

    # One busy slot refuses the whole booking, naming that slot; nothing of it is kept.
    two = booking(slot(room.space_id, at(3, 10)), slot(room.space_id, at(3, 16, 30), minutes=30))
    busy_problem(await service.http.post("/v1/bookings", json=two), "body.slots.1")
    for free in (at(3, 10), at(3, 11), at(3, 13), at(3, 15)):  # up to and from the meetings' edges
        booked = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, free)))
        assert booked.status_code == 201, booked.text


async def test_moving_a_slot_onto_outlook_busy_time_is_refused_and_unmoved_slots_stay(
        service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(4, 12))))
    assert created.status_code == 201, created.text
    booking_id, slot_id = created.json()["id"], created.json()["slots"][0]["slot_id"]
    # Booked in Outlook afterwards: over the existing booking, and at 15:00.
    await publish_picture(service, picture(room, 20, meeting(at(4, 12, 30)), meeting(at(4, 15))))
    await folded(service, room, 20)
    before = await refusals(service, "update")

    moved = await service.http.patch(f"/v1/bookings/{booking_id}",
                                     json={"slots": [slot(room.space_id, at(4, 15, 30), slot_id=slot_id)]})
    assert "from " + f"{at(4, 15):%Y-%m-%dT%H:%MZ}" in busy_problem(moved, "body.slots.0")["detail"]
    added = await service.http.patch(f"/v1/bookings/{booking_id}", json={"slots": [
        slot(room.space_id, at(4, 12), slot_id=slot_id), slot(room.space_id, at(4, 14, 30))]})
    busy_problem(added, "body.slots.1")
    assert await refusals(service, "update") == before + 2
    unchanged = await service.http.get(f"/v1/bookings/{booking_id}")
    assert (unchanged.json()["version"], _time(unchanged.json()["slots"][0]["start"])) == (1, at(4, 12))

    # The slot that did not move may stay under the later meeting while the rest of the booking changes.
    renamed = await service.http.patch(f"/v1/bookings/{booking_id}", json={
        "patron": {"first_name": "Augusta"},
        "slots": [slot(room.space_id, at(4, 12), slot_id=slot_id), slot(room.space_id, at(4, 16))]})
    assert renamed.status_code == 200, renamed.text
    assert [_time(s["start"]) for s in renamed.json()["slots"]] == [at(4, 12), at(4, 16)]
    cancelled = await service.http.post(f"/v1/bookings/{booking_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


async def test_the_newest_picture_decides_and_stale_or_repeated_ones_change_nothing(
        service: Service, room: Room) -> None:
    request = booking(slot(room.space_id, at(5, 12)))
    await publish_picture(service, picture(room, 100, meeting(at(5, 12)), meeting(at(5, 16))))
    await folded(service, room, 100)
    busy_problem(await service.http.post("/v1/bookings", json=request), "body.slots.0")

    # An older picture and a repeated sequence, both without the meeting: the meeting stays.
    await publish_picture(service, picture(room, 99))
    await publish_picture(service, picture(room, 100))
    await freebusy_consumed(service)
    assert len((await outlook_busy(service, room))["upcoming"]) == 2
    busy_problem(await service.http.post("/v1/bookings", json=request), "body.slots.0")

    # The 12:00 meeting was moved in Outlook, the 16:00 one got its organizer: the newer picture replaces the
    # whole busy set.
    await publish_picture(service, picture(room, 101, meeting(at(5, 14)), meeting(at(5, 16), organizer="Ada")))
    view = await folded(service, room, 101)
    assert [(_time(m["start"]), m["organizer"]) for m in view["upcoming"]] == [(at(5, 14), None), (at(5, 16), "Ada")]
    assert (await service.http.post("/v1/bookings", json=request)).status_code == 201
    busy_problem(await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(5, 14)))),
                 "body.slots.0")


async def test_an_unpaired_space_picture_clears_its_outlook_busy_time(service: Service, room: Room) -> None:
    request = booking(slot(room.space_id, at(6, 9)))
    await publish_picture(service, picture(room, 7, meeting(at(6, 9))))
    await folded(service, room, 7)
    busy_problem(await service.http.post("/v1/bookings", json=request), "body.slots.0")

    await publish_picture(service, picture(room, 8, mailbox=None))
    view = await folded(service, room, 8)
    assert (view["mailbox"], view["upcoming"]) == (None, [])
    assert (await service.http.post("/v1/bookings", json=request)).status_code == 201


async def test_a_booking_checked_while_a_picture_is_folded_waits_for_it_and_sees_it(
        service: Service, room: Room) -> None:
    db = service.running.app.state.db
    async with db.acquire() as fold, fold.transaction():
        assert await outlook_store.fold_picture(fold, picture(room, 50, meeting(at(8, 14))))
        booking_task = asyncio.create_task(
            service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(8, 14)))))
        await wait_until(lambda: _waiting_for_the_picture(service), message="booking waits for the fold")
        assert not booking_task.done()
    # Without the lock the booking would have read the picture before this one and been accepted.
    busy_problem(await booking_task, "body.slots.0")


async def _waiting_for_the_picture(service: Service) -> bool:
    async with service.running.app.state.db.acquire() as conn:
        waiting: bool = await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%FROM outlook_pictures%FOR SHARE'")
    return waiting


async def test_bad_busy_pictures_go_to_the_dlq_and_the_fold_goes_on(service: Service, room: Room) -> None:
    bootstrap = service.settings.kafka.bootstrap_servers
    good = picture(room, 30, meeting(at(7, 12)))
    async with KafkaReader(bootstrap, dlq_topic(service.topic("exchange.freebusy"))) as dlq:
        # Against the contract: busy time without a mailbox.
        unpaired_but_busy = good.model_dump(mode="json") | {"mailbox": None}
        await publish_raw(service, room.space_id, _json(unpaired_but_busy))
        # Valid by the contract, but no space id of ours: the database refuses it.
        await publish_raw(service, "space-42", _json(good.model_dump(mode="json") | {"space_id": "space-42"}))
        await publish_picture(service, good)
        dead = await dlq.wait_for(lambda r: r.key in (room.space_id, "space-42"), count=2)
    reasons = {r.key: r.headers["dlq_reason"] for r in dead}
    assert "a space without a mailbox has no Outlook busy time" in reasons[room.space_id]
    assert "the database refused" in reasons["space-42"]
    await folded(service, room, 30)
    busy_problem(await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(7, 12)))),
                 "body.slots.0")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _json(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)
