"""Helpers for the Outlook/Exchange admin tests: the library's rooms in the EWS simulator, connecting a location,
reading catalog.events, problem+json checks."""

from __future__ import annotations

import itertools
import socket
from typing import Any
from urllib.parse import quote

import httpx
from booking_helpers import ADMIN, Room, Service

from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.seed import Seed, load_seed
from spacesync.exchange_simulator.settings import DEMO_SEED
from spacesync.testing.exchange import WRITER

PASSWORD = "demo-password"  # the demo seed's accounts: WRITER writes every room, READONLY sees free/busy
DOMAIN = "library.example.org"
_rooms = itertools.count(300)


def library_seed() -> Seed:
    """The demo seed plus spare rooms: each test pairs rooms of its own (one resource belongs to one space)."""
    demo = load_seed(DEMO_SEED)
    spare = [{"smtp": f"room-{n}@{DOMAIN}", "name": f"Room {n}", "kind": "room"} for n in range(300, 360)]
    return Seed.model_validate({**demo.model_dump(), "mailboxes": [*demo.model_dump()["mailboxes"], *spare]})


def fresh_room() -> str:
    return f"room-{next(_rooms)}@{DOMAIN}"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def settings_url(room: Room) -> str:
    return f"/v1/admin/locations/{room.location_id}/exchange"


def pairing_url(room: Room) -> str:
    return f"/v1/admin/spaces/{room.space_id}/exchange"


async def connect(service: Service, room: Room, ews: EmbeddedSimulator, *, username: str = WRITER,
                  password: str = PASSWORD, **options: Any) -> httpx.Response:
    answer: httpx.Response = await service.http.put(settings_url(room), headers=ADMIN, json={
        "server": ews.ews_url, "username": username, "password": password, **options})
    return answer


async def pair(service: Service, room: Room, resource: str) -> httpx.Response:
    answer: httpx.Response = await service.http.put(pairing_url(room), headers=ADMIN, json={"resource": resource})
    return answer


async def outlook_meeting(ews: EmbeddedSimulator, mailbox: str, start: str, end: str, **fields: Any) -> dict[str, Any]:
    """Someone books the room in Outlook (the simulator's admin API)."""
    async with httpx.AsyncClient(base_url=ews.base_url, timeout=30) as client:
        response = await client.post(f"/admin/mailboxes/{quote(mailbox)}/meetings", json={
            "organizer": {"name": "Jane Librarian", "smtp": f"jane.librarian@{DOMAIN}"}, "subject": "Staff meeting",
            "start": start, "end": end, **fields})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def assert_problem(response: httpx.Response, status: int, type_: str | None = None,
                   field: str | None = None) -> dict[str, Any]:
    """A problem+json answer with this status (and type, and an error naming `field`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    if type_ is not None:
        assert body["type"] == type_, body
    if field is not None:
        assert field in {error["field"] for error in body.get("errors", [])}, body
    return body
