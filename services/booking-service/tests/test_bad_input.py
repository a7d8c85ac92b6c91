"""Bad input gets a clear 4xx problem+json naming the field and the reason, and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from booking_helpers import ADMIN, Room, Service, at, booking, make_room, slot

from spacesync.common.db.pool import connect


async def written(service: Service) -> tuple[int, int, int]:
    conn: asyncpg.Connection[Any] = await connect(service.settings.postgres.dsn.get_secret_value(),
                                                  service.settings.schema_name)
    try:
        row = await conn.fetchrow("SELECT (SELECT count(*) FROM bookings) AS b, (SELECT count(*) FROM booking_slots)"
                                  " AS s, (SELECT count(*) FROM outbox) AS o")
        assert row is not None
        return row["b"], row["s"], row["o"]
    finally:
        await conn.close()


def cases(room: Room) -> list[tuple[str, Any, int, str, str]]:
    """(name, body, status, field, reason fragment)"""
    space = room.space_id
    return [
        ("unknown space", booking(slot(str(uuid.uuid4()), at(3, 10))), 422, "body.slots.0.space_id", "unknown space"),
        ("misaligned", booking(slot(space, at(3, 10, 10))), 422, "body.slots.0.start", "30-minute grid"),
        ("overlapping", booking(slot(space, at(3, 10)), slot(space, at(3, 10, 30))), 422, "body.slots.1",
         "overlaps slots.0"),
        ("past", booking(slot(space, at(-1, 10))), 422, "body.slots.0.start", "is in the past"),
        ("too long", booking(slot(space, at(3, 10), minutes=300)), 422, "body.slots.0.end",
         "exceeds the maximum booking length of 240 minutes"),
        ("bad email", {**booking(slot(space, at(3, 10))), "patron": {
            "first_name": "A", "last_name": "B", "email": "not-an-email"}}, 422, "body.patron.email",
         "not a valid email address"),
        ("naive time", booking({"space_id": space, "start": "2030-01-01T10:00:00", "end": "2030-01-01T11:00:00"}),
         422, "body.slots.0.start", "timezone"),
        ("no slots", booking(), 422, "body.slots", "at least 1 item"),
        ("unknown field", {**booking(slot(space, at(3, 10))), "room": "x"}, 422, "body.room", "Extra inputs"),
        ("nickname not enabled", booking(slot(space, at(3, 10)), public_nickname="Ace"), 422, "body.public_nickname",
         "public nicknames are not enabled"),
        ("too far ahead", booking(slot(space, at(800, 10))), 422, "body.slots.0.end", "more than 730 days ahead"),
        ("end of time", booking({"space_id": space, "start": "9999-12-31T22:00:00Z", "end": "9999-12-31T23:00:00Z"}),
         422, "body.slots.0.end", "more than 730 days ahead"),
        ("before time", booking({"space_id": space, "start": "0001-01-01T00:00:00+01:00",
                                 "end": "0001-01-01T01:00:00+01:00"}), 422, "body.slots.0.start", "out of range"),
        ("control character", {**booking(slot(space, at(3, 10))), "patron": {
            "first_name": "A\u0000", "last_name": "B", "email": "a@example.org"}}, 422, "body.patron.first_name",
         "should match pattern"),
    ]


async def test_invalid_bookings_are_refused_and_nothing_is_written(service: Service, room: Room) -> None:
    before = await written(service)
    for name, body, status, field, reason in cases(room):
        response = await service.http.post("/v1/bookings", json=body)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        problem = response.json()
        assert problem["status"] == status
        assert any(e["field"] == field and reason in e["reason"] for e in problem["errors"]), (name, problem)
        assert reason in problem["detail"], name
    assert await written(service) == before


async def test_malformed_json_is_a_400(service: Service) -> None:
    before = await written(service)
    response = await service.http.post("/v1/bookings", content=b'{"patron": ', headers={
        "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["title"] == "Malformed JSON"
    assert await written(service) == before


async def test_conflicting_booking_is_a_409_naming_the_time_and_writes_nothing(service: Service, room: Room) -> None:
    first = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(8, 10), 60)))
    assert first.status_code == 201
    before = await written(service)
    response = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(8, 10, 30), 60)))
    assert response.status_code == 409
    assert response.json()["conflicts"] == [{"space_id": room.space_id, "start": at(8, 10).isoformat(),
                                             "end": at(8, 11).isoformat()}]
    assert await written(service) == before


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "needs 'Authorization: Bearer <token>'"),
    ({"Authorization": "Bearer wrong"}, "not valid"),
])
async def test_admin_api_needs_the_token(service: Service, headers: dict[str, str], detail: str) -> None:
    before = await written(service)
    response = await service.http.post("/v1/admin/locations", headers=headers,
                                       json={"name": "X", "timezone": "UTC"})
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await written(service) == before


async def test_admin_input_errors(service: Service, room: Room) -> None:
    for zone in ("Mars/Base", "America", "../etc/passwd"):
        bad_zone = await service.http.post("/v1/admin/locations", headers=ADMIN, json={"name": "X", "timezone": zone})
        assert bad_zone.status_code == 422, zone
        assert f"unknown IANA time zone {zone!r}" in bad_zone.json()["detail"]
    weird_etag = await service.http.patch(f"/v1/bookings/{uuid.uuid4()}", headers={"If-Match": b'"\xb2"'}, json={})
    assert weird_etag.status_code == 400
    assert "If-Match must be an ETag" in weird_etag.json()["detail"]
    missing = await service.http.post("/v1/admin/categories", headers=ADMIN,
                                      json={"location_id": str(uuid.uuid4()), "name": "C"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "body.location_id"
    grid = await service.http.patch(f"/v1/admin/spaces/{room.space_id}", headers=ADMIN,
                                    json={"max_booking_minutes": 45})
    assert grid.status_code == 422
    assert "multiple of slot_minutes" in grid.json()["detail"]
    not_found = await service.http.get(f"/v1/bookings/{uuid.uuid4()}")
    assert not_found.status_code == 404


async def test_changes_to_a_cancelled_booking_are_refused(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(9, 10))))
    booking_id = created.json()["id"]
    await service.http.post(f"/v1/bookings/{booking_id}/cancel")
    before = await written(service)
    response = await service.http.patch(f"/v1/bookings/{booking_id}", json={"patron": {"first_name": "Z"}})
    assert response.status_code == 409
    assert response.json()["title"] == "Booking closed"
    assert "is cancelled" in response.json()["detail"]
    assert await written(service) == before


async def test_nickname_follows_the_category_rule_when_slots_move_and_can_be_removed(service: Service) -> None:
    open_room = await make_room(service, nicknames=True)
    plain_room = await make_room(service, nicknames=False)
    created = await service.http.post("/v1/bookings", json=booking(slot(open_room.space_id, at(10, 10)),
                                                                   public_nickname="Study Party"))
    assert created.status_code == 201, created.text
    booking_id, slot_id = created.json()["id"], created.json()["slots"][0]["slot_id"]
    moved = await service.http.patch(f"/v1/bookings/{booking_id}", json={
        "slots": [slot(plain_room.space_id, at(10, 10), slot_id=slot_id)]})
    assert moved.status_code == 422
    assert moved.json()["errors"][0]["field"] == "body.public_nickname"
    cleared = await service.http.patch(f"/v1/bookings/{booking_id}", json={
        "public_nickname": None, "slots": [slot(plain_room.space_id, at(10, 10), slot_id=slot_id)]})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["public_nickname"] is None
    assert cleared.json()["slots"][0]["space_id"] == plain_room.space_id


async def test_slots_that_took_place_are_not_cancelled_or_moved(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(
        slot(room.space_id, at(11, 10)), slot(room.space_id, at(11, 14))))
    booking_id = created.json()["id"]
    past, future = (s["slot_id"] for s in created.json()["slots"])
    async with service.running.app.state.db.acquire() as conn:  # as if the first slot were yesterday
        await conn.execute("UPDATE booking_slots SET during = tstzrange(now() - interval '1 day',"
                           " now() - interval '23 hours') WHERE id = $1::uuid", past)
    cancel_past = await service.http.post(f"/v1/bookings/{booking_id}/slots/{past}/cancel")
    assert cancel_past.status_code == 409
    assert "already took place" in cancel_past.json()["detail"]
    drop_past = await service.http.patch(f"/v1/bookings/{booking_id}", json={
        "slots": [slot(room.space_id, at(11, 14), slot_id=future)]})
    assert drop_past.status_code == 422
    assert "already took place" in drop_past.json()["detail"]
    # Cancelling the booking cancels what is still ahead; the slot that took place stays.
    cancelled = await service.http.post(f"/v1/bookings/{booking_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "confirmed"
    assert {s["slot_id"]: s["status"] for s in cancelled.json()["slots"]} == {past: "confirmed", future: "cancelled"}
