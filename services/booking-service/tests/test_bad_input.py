"""Bad input gets a clear 4xx problem+json naming the field and the reason, and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from booking_helpers import ADMIN, Room, Service, at, booking, slot

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
    bad_zone = await service.http.post("/v1/admin/locations", headers=ADMIN,
                                       json={"name": "X", "timezone": "Mars/Base"})
    assert bad_zone.status_code == 422
    assert "unknown IANA time zone 'Mars/Base'" in bad_zone.json()["detail"]
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
    assert response.json()["title"] == "Booking cancelled"
    assert await written(service) == before
