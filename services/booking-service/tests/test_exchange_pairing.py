"""A space's pairing with an Exchange resource ('Save & Test'), its sync state, and 'Run the Import'."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from booking_exchange_helpers import (
    PASSWORD,
    assert_problem,
    connect,
    fresh_room,
    outlook_meeting,
    pair,
    pairing_url,
)
from booking_helpers import ADMIN, Room, Service, at, booking, make_room, publish_sync, slot, sync_state

from spacesync.common.events import SlotSyncState
from spacesync.common.exchange import Appointment, ExchangeGateway, ExchangeServer, GatewaySettings, slot_stamp
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import KafkaReader, Record, wait_until
from spacesync.testing.exchange import READONLY, WRITER


async def space_events(reader: KafkaReader, room: Room, ce_type: str, count: int = 1) -> list[Record]:
    return await reader.wait_for(lambda r: r.key == room.space_id and r.ce_type == ce_type, count=count)


async def test_save_and_test_pairs_the_space_and_re_pairing_moves_it(service: Service, room: Room,
                                                                      ews: EmbeddedSimulator) -> None:
    await connect(service, room, ews)
    first, second = fresh_room(), fresh_room()
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        paired = await pair(service, room, first.upper())  # addresses are matched case-insensitively
        assert paired.status_code == 200, paired.text
        assert paired.json()["message"].endswith(f"is paired with {first}: the mailbox exists and "
                                                 f"{WRITER} may write its calendar.")
        pairing = paired.json()["pairing"]
        assert (pairing["resource"], pairing["location_connected"]) == (first, True)
        assert pairing["paired_at"] is not None
        [event] = await space_events(reader, room, "space.paired")
        assert (event.json["exchange_resource"], event.json["paired_at"] is not None) == (first, True)

        again = await pair(service, room, first)
        assert again.json()["message"].endswith("It already was; bookings that could not be written there are "
                                                "tried again.")
        assert again.json()["pairing"]["paired_at"] == pairing["paired_at"]

        moved = await pair(service, room, second)
        assert moved.status_code == 200, moved.text
        events = await space_events(reader, room, "space.paired", count=3)
    # Testing again emits the pairing again (same paired_at): the writer retries the space's failed slots.
    assert [e.json["exchange_resource"] for e in events] == [first, first, second]
    assert events[0].json["paired_at"] == events[1].json["paired_at"] != events[2].json["paired_at"]
    shown = await service.http.get(pairing_url(room), headers=ADMIN)
    assert shown.json()["resource"] == second
    space = await service.http.get(f"/v1/admin/spaces/{room.space_id}", headers=ADMIN)
    assert (space.json()["exchange_resource"], space.json()["version"]) == (second, 4)  # created, 3 pairings


async def test_save_and_test_failures_say_why_and_save_nothing(service: Service, ews: EmbeddedSimulator) -> None:
    room, readonly_room = await make_room(service), await make_room(service)
    await connect(service, room, ews)
    unknown = await pair(service, room, "nobody@library.example.org")
    body = assert_problem(unknown, 422, "/problems/exchange-pairing")
    assert body["problem"] == "mailbox_not_found", body
    assert "nobody@library.example.org" in body["detail"]

    connected = await connect(service, readonly_room, ews, username=READONLY)
    assert connected.status_code == 200, connected.text  # the account exists: the connection itself is fine
    denied = assert_problem(await pair(service, readonly_room, fresh_room()), 422, "/problems/exchange-pairing")
    assert denied["problem"] == "access_denied", denied
    assert READONLY in denied["detail"]

    for unpaired in (room, readonly_room):
        pairing = (await service.http.get(pairing_url(unpaired), headers=ADMIN)).json()
        assert (pairing["resource"], pairing["paired_at"]) == (None, None)


async def test_pairing_needs_a_connected_location_and_a_resource_of_its_own(service: Service,
                                                                           ews: EmbeddedSimulator) -> None:
    room, other = await make_room(service), await make_room(service)
    resource = fresh_room()
    assert_problem(await pair(service, room, resource), 409, "/problems/exchange-not-connected")
    assert (await service.http.get(pairing_url(room), headers=ADMIN)).json()["location_connected"] is False
    await connect(service, room, ews)
    await connect(service, other, ews)
    assert (await pair(service, room, resource)).status_code == 200
    taken = assert_problem(await pair(service, other, resource), 409, "/problems/resource-in-use")
    assert resource in taken["detail"]


async def test_unpair_emits_space_unpaired(service: Service, room: Room, ews: EmbeddedSimulator) -> None:
    await connect(service, room, ews)
    resource = fresh_room()
    await pair(service, room, resource)
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        unpaired = await service.http.delete(pairing_url(room), headers=ADMIN)
        assert unpaired.status_code == 200, unpaired.text
        assert f"no longer paired with {resource}" in unpaired.json()["message"]
        [event] = await space_events(reader, room, "space.unpaired")
    assert (event.json["exchange_resource"], event.json["paired_at"]) == (None, None)
    assert_problem(await service.http.delete(pairing_url(room), headers=ADMIN), 404)
    # The resource is free again for another space.
    other = await make_room(service)
    await connect(service, other, ews)
    assert (await pair(service, other, resource)).status_code == 200


async def test_import_compares_the_calendar_then_asks_the_writer(service: Service, room: Room,
                                                                 ews: EmbeddedSimulator) -> None:
    await connect(service, room, ews)
    resource = fresh_room()
    await pair(service, room, resource)
    assert_problem(await service.http.post(pairing_url(room) + "/import?dry_run=maybe", headers=ADMIN), 422,
                   field="query.dry_run")
    stamped, colliding, free = [await book(service, room, at(days, 10)) for days in (3, 4, 5)]
    await book_in_the_past(service, room, at(-1, 10))  # history is not imported
    await stamp(ews, resource, stamped)
    meeting = await outlook_meeting(ews, resource, iso(at(4, 10, 30)), iso(at(4, 11, 30)), subject="Board meeting")
    await outlook_meeting(ews, resource, iso(at(5, 10)), iso(at(5, 11)), free_busy="Free")
    await outlook_meeting(ews, resource, iso(at(5, 10)), iso(at(5, 11)), free_busy="Tentative")

    preview = await service.http.post(pairing_url(room) + "/import", headers=ADMIN)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["dry_run"], body["request_id"], body["future_slots"]) == (True, None, 3)
    assert (body["would_create"], body["already_there"]) == (2, 1)
    [collision] = body["collisions"]
    assert (collision["slot_id"], collision["booking_id"]) == (colliding["slots"][0]["slot_id"], colliding["id"])
    assert (collision["subject"], collision["busy_status"]) == ("Board meeting", "Busy")
    assert collision["organizer"]
    assert (collision["start"], collision["end"]) == (iso(at(4, 10, 30)), iso(at(4, 11, 30)))
    assert meeting["subject"] == "Board meeting"
    assert free["slots"][0]["slot_id"] not in {c["slot_id"] for c in body["collisions"]}

    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        run = await service.http.post(pairing_url(room) + "/import?dry_run=false", headers=ADMIN)
        assert run.status_code == 202, run.text
        accepted = run.json()
        assert (accepted["dry_run"], accepted["would_create"], len(accepted["collisions"])) == (False, 2, 1)
        [event] = await space_events(reader, room, "space.import_requested")
    assert event.json["request_id"] == accepted["request_id"]
    assert (event.json["exchange_resource"], event.json["location_id"]) == (resource, room.location_id)


async def test_import_needs_a_paired_space(service: Service, room: Room, ews: EmbeddedSimulator) -> None:
    assert_problem(await service.http.post(pairing_url(room) + "/import", headers=ADMIN), 409,
                   "/problems/exchange-not-connected")
    await connect(service, room, ews)
    assert_problem(await service.http.post(pairing_url(room) + "/import?dry_run=false", headers=ADMIN), 409,
                   "/problems/space-not-paired")


async def test_pairing_state_sums_up_the_sync_of_future_bookings(service: Service, room: Room,
                                                                 ews: EmbeddedSimulator) -> None:
    await connect(service, room, ews)
    resource = fresh_room()
    await pair(service, room, resource)
    synced, failing, waiting = [await book(service, room, at(3, hour)) for hour in (9, 11, 13)]
    for sequence, (made, state, error) in enumerate(
            [(synced, SlotSyncState.SYNCED, None), (failing, SlotSyncState.FAILED, "ErrorAccessDenied: no access")],
            start=1):
        await publish_sync(service, sync_state(made["id"], made["slots"][0]["slot_id"], room.space_id, sequence,
                                               state=state, error=error, mailbox=resource, attempts=2))

    async def summary() -> dict[str, Any] | None:
        found: dict[str, Any] = (await service.http.get(pairing_url(room), headers=ADMIN)).json()["sync"]
        return found if found["failed"] else None

    sync = await wait_until(summary, message="the failed slot in the pairing's sync summary")
    assert {k: sync[k] for k in ("future_slots", "not_reported", "pending", "synced", "failed", "removed")} == {
        "future_slots": 3, "not_reported": 1, "pending": 0, "synced": 1, "failed": 1, "removed": 0}
    assert sync["last_error"]["slot_id"] == failing["slots"][0]["slot_id"]
    assert (sync["last_error"]["error"], sync["last_error"]["attempts"]) == ("ErrorAccessDenied: no access", 2)
    assert waiting["slots"][0]["exchange"]["state"] is None


async def book(service: Service, room: Room, start: datetime) -> dict[str, Any]:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, start)))
    assert created.status_code == 201, created.text
    made: dict[str, Any] = created.json()
    return made


async def book_in_the_past(service: Service, room: Room, start: datetime) -> None:
    """Straight into the database: the API refuses the past."""
    async with service.running.app.state.db.acquire() as conn:
        await conn.execute(
            "WITH b AS (INSERT INTO bookings (id, status, first_name, last_name, email)"
            "  VALUES (gen_random_uuid(), 'confirmed', 'Old', 'Booking', 'old@example.org') RETURNING id)"
            " INSERT INTO booking_slots (id, booking_id, position, space_id, during, status)"
            " SELECT gen_random_uuid(), b.id, 0, $1::uuid, tstzrange($2, $3), 'confirmed' FROM b",
            room.space_id, start, start + timedelta(hours=1))


async def stamp(ews: EmbeddedSimulator, resource: str, made: dict[str, Any]) -> None:
    """The exchange-writer already wrote this booking's appointment (stamped with its slot id)."""
    gateway = ExchangeGateway(GatewaySettings())
    server = ExchangeServer(endpoint=ews.ews_url, username=WRITER, password=PASSWORD)
    first = made["slots"][0]
    try:
        await gateway.create(server, resource, Appointment(
            slot_id=slot_stamp("/spacesync/booking-service", made["id"], first["slot_id"]), booking_id=made["id"],
            subject="Ada Lovelace", body="", location="Room",
            start=datetime.fromisoformat(first["start"]), end=datetime.fromisoformat(first["end"])))
    finally:
        await gateway.close()


def iso(moment: datetime) -> str:
    """As the API writes UTC times."""
    return moment.isoformat().replace("+00:00", "Z")


async def test_a_paired_space_stays_in_its_location(service: Service, room: Room, ews: EmbeddedSimulator) -> None:
    """The pairing was tested with the location's Exchange connection: moving the space would void it."""
    elsewhere = await make_room(service)
    await connect(service, room, ews)
    await pair(service, room, fresh_room())
    moved = await service.http.patch(f"/v1/admin/spaces/{room.space_id}", headers=ADMIN,
                                     json={"category_id": elsewhere.category_id})
    assert_problem(moved, 409, "/problems/space-paired")
    assert (await service.http.delete(pairing_url(room), headers=ADMIN)).status_code == 200
    moved = await service.http.patch(f"/v1/admin/spaces/{room.space_id}", headers=ADMIN,
                                     json={"category_id": elsewhere.category_id})
    assert moved.status_code == 200, moved.text
    assert_problem(await service.http.get(f"/v1/admin/spaces/{uuid.uuid4()}/exchange", headers=ADMIN), 404)
