"""End to end, the Outlook side: a meeting booked in a paired room's calendar (the EWS simulator) -> exchange-poller
-> exchange.freebusy -> availability-service (public and admin views) and booking-service (409 'BUSY in Outlook');
and our own bookings, written by the exchange-writer, never come back as Outlook busy time.

All five parts are real: booking-service, exchange-writer, exchange-poller and availability-service in-process
on real Kafka and Postgres, the simulator driven by real exchangelib. Every wait is on a condition."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from availability_helpers import availability_settings
from booking_helpers import (
    ADMIN,
    ADMIN_TOKEN,
    SECRET_KEY,
    Room,
    Service,
    at,
    booking,
    make_room,
    service_settings,
    slot,
)
from exchangelib import close_connections
from fastapi import FastAPI
from poller_helpers import poller_settings
from pydantic import SecretStr
from writer_helpers import writer_settings

from spacesync.availability_service.app import create_app as availability_app
from spacesync.booking_service.app import create_app as booking_app
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_poller.app import create_app as poller_app
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_writer.app import create_app as writer_app
from spacesync.testing import RunningApp, run_app, wait_until
from spacesync.testing.exchange import PASSWORD, WRITER, SimulatorAdmin, room, rooms_seed

BUSY = "BUSY in Outlook"
JANE = {"name": "Jane Librarian", "smtp": "jane.librarian@example.org"}


@dataclass
class Stack:
    bookings: Service
    availability: RunningApp
    sim: EmbeddedSimulator
    admin: SimulatorAdmin

    async def slots(self, space_id: str, day: date, *, admin: bool = False, end: date | None = None,
                    ) -> dict[datetime, dict[str, Any]]:
        """The availability-service's view of a space: slot start -> slot (public or admin)."""
        path = f"/v1/admin/spaces/{space_id}/slots" if admin else f"/v1/spaces/{space_id}/slots"
        params = {"start": day.isoformat(), "end": (end or day).isoformat()}
        response = await self.availability.client.get(path, params=params, headers=ADMIN if admin else None)
        assert response.status_code == 200, response.text
        return {datetime.fromisoformat(s["start"]): s for s in response.json()["slots"]}

    async def when_slots(self, space_id: str, day: date, check: Callable[[dict[datetime, dict[str, Any]]], bool],
                         message: str, *, admin: bool = True, end: date | None = None,
                         ) -> dict[datetime, dict[str, Any]]:
        async def probe() -> dict[datetime, dict[str, Any]] | None:
            slots = await self.slots(space_id, day, admin=admin, end=end)
            return slots if check(slots) else None
        found: dict[datetime, dict[str, Any]] = await wait_until(probe, timeout=30, message=message)
        return found


@pytest.fixture(scope="module")
def simulator() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(rooms_seed(6)) as sim:
        yield sim
    close_connections()


@pytest.fixture(scope="module")
async def stack(postgres_dsn: str, kafka_settings: Callable[[], KafkaSettings],
                simulator: EmbeddedSimulator) -> AsyncIterator[Stack]:
    kafka = kafka_settings()
    booking_config = service_settings(postgres_dsn, kafka)
    apps: list[FastAPI] = [
        booking_app(booking_config),
        writer_app(writer_settings(postgres_dsn, kafka, SECRET_KEY)),
        poller_app(poller_settings(postgres_dsn, kafka, SECRET_KEY)),
        availability_app(availability_settings(postgres_dsn, kafka).model_copy(
            update={"admin_token": SecretStr(ADMIN_TOKEN)})),
    ]
    admin = SimulatorAdmin(simulator)
    async with run_app(apps[0]) as bookings, run_app(apps[1]) as writer, run_app(apps[2]) as poller, \
            run_app(apps[3]) as availability:
        async def ready() -> bool:
            answers = [await running.client.get("/readyz") for running in (bookings, writer, poller, availability)]
            return all(answer.status_code == 200 for answer in answers)
        await wait_until(ready, timeout=60, message="every service ready (Kafka, Postgres)")
        yield Stack(Service(bookings, booking_config), availability, simulator, admin)
    await admin.close()


async def paired_room(stack: Stack, mailbox: str, **exchange_options: Any) -> Room:
    """A location (UTC, so local days are UTC days) connected to the simulator, its space paired with `mailbox`;
    returns once the availability-service knows the space."""
    made = await make_room(stack.bookings, timezone="UTC")
    http = stack.bookings.http
    connected = await http.put(f"/v1/admin/locations/{made.location_id}/exchange", headers=ADMIN, json={
        "server": stack.sim.ews_url, "username": WRITER, "password": PASSWORD, **exchange_options})
    assert connected.status_code == 200, connected.text
    paired = await http.put(f"/v1/admin/spaces/{made.space_id}/exchange", headers=ADMIN, json={"resource": mailbox})
    assert paired.status_code == 200, paired.text

    async def known() -> bool:
        response = await stack.availability.client.get(f"/v1/spaces/{made.space_id}/slots",
                                                       params={"start": at(1, 0).date().isoformat()})
        return response.status_code == 200
    await wait_until(known, timeout=30, message="the availability-service knows the space")
    return made


def states(slots: dict[datetime, dict[str, Any]], *starts: datetime) -> list[str]:
    return [slots[start]["state"] for start in starts]


async def test_outlook_meeting_closes_its_slots_and_bookings_over_it_get_409(stack: Stack) -> None:
    mailbox = room(0)
    made = await paired_room(stack, mailbox)
    day = at(3, 0).date()
    meeting = await stack.admin.book_meeting(mailbox, at(3, 10), at(3, 11), "Busy")

    slots = await stack.when_slots(made.space_id, day, lambda s: s[at(3, 10)]["state"] == "busy_in_outlook",
                                   "the meeting's slots are BUSY in Outlook")
    assert states(slots, at(3, 10), at(3, 10, 30)) == ["busy_in_outlook", "busy_in_outlook"]
    assert slots[at(3, 10)]["reason"] == BUSY
    assert states(slots, at(3, 9, 30), at(3, 11)) == ["available", "available"]  # edges stay open
    public = await stack.slots(made.space_id, day)
    assert [public[t]["available"] for t in (at(3, 9, 30), at(3, 10), at(3, 10, 30), at(3, 11))] == [
        True, False, False, True]
    assert set(public[at(3, 10)]) == {"start", "end", "available"}  # nothing personal in the public view

    refused = await stack.bookings.http.post("/v1/bookings", json=booking(slot(made.space_id, at(3, 10, 30), 60)))
    assert refused.status_code == 409, refused.text
    assert BUSY in refused.json()["title"] + refused.json()["detail"]

    # Outlook moves the meeting, then deletes it: the slots follow, and the booking goes through in the end.
    await stack.admin.move_meeting(mailbox, meeting["id"], at(3, 14))
    slots = await stack.when_slots(
        made.space_id, day, lambda s: states(s, at(3, 10), at(3, 14)) == ["available", "busy_in_outlook"],
        "the moved meeting's slots closed, the old ones reopened")
    await stack.admin.cancel_meeting(mailbox, meeting["id"])
    await stack.when_slots(made.space_id, day, lambda s: s[at(3, 14)]["state"] == "available",
                           "the deleted meeting's slots reopened")
    accepted = await stack.bookings.http.post("/v1/bookings", json=booking(slot(made.space_id, at(3, 14), 60)))
    assert accepted.status_code == 201, accepted.text


@pytest.mark.parametrize("status", ["OOF", "WorkingElsewhere"])
async def test_oof_and_working_elsewhere_are_busy(stack: Stack, status: str) -> None:
    mailbox = room(1 if status == "OOF" else 2)
    made = await paired_room(stack, mailbox)
    await stack.admin.book_meeting(mailbox, at(4, 8), at(4, 9), status)
    await stack.when_slots(made.space_id, at(4, 0).date(),
                           lambda s: states(s, at(4, 8), at(4, 8, 30)) == ["busy_in_outlook"] * 2,
                           f"{status} closes the slots")


async def test_tentative_and_free_leave_slots_open(stack: Stack) -> None:
    mailbox = room(3)
    made = await paired_room(stack, mailbox)
    await stack.admin.book_meeting(mailbox, at(5, 9), at(5, 10), "Tentative")
    await stack.admin.book_meeting(mailbox, at(5, 11), at(5, 12), "Free")
    # A Busy meeting booked after them: once it shows, the poller has read the room with all three in it.
    await stack.admin.book_meeting(mailbox, at(5, 15), at(5, 16), "Busy")
    slots = await stack.when_slots(made.space_id, at(5, 0).date(),
                                   lambda s: s[at(5, 15)]["state"] == "busy_in_outlook", "the Busy meeting shows")
    assert states(slots, at(5, 9), at(5, 9, 30), at(5, 11), at(5, 11, 30)) == ["available"] * 4


async def test_weekly_meeting_closes_every_occurrence(stack: Stack) -> None:
    mailbox = room(4)
    made = await paired_room(stack, mailbox)
    first = at(2, 13)
    await stack.admin.book_meeting(mailbox, first, first + timedelta(hours=1), "Busy",
                                   recurrence={"pattern": "weekly", "count": 4})
    occurrences = [first + timedelta(weeks=n) for n in range(4)]
    slots = await stack.when_slots(
        made.space_id, first.date(), lambda s: all(s[t]["state"] == "busy_in_outlook" for t in occurrences),
        "every occurrence is BUSY in Outlook", end=occurrences[-1].date() + timedelta(days=7))
    busy_days = {t.date() for t, s in slots.items() if s["state"] == "busy_in_outlook"}
    assert busy_days == {t.date() for t in occurrences}  # and no other day


async def test_our_bookings_show_as_booked_never_busy_in_outlook(stack: Stack) -> None:
    mailbox = room(5)
    made = await paired_room(stack, mailbox, populate_organizer=True)
    created = await stack.bookings.http.post("/v1/bookings", json=booking(slot(made.space_id, at(6, 9), 60)))
    assert created.status_code == 201, created.text
    booking_id = created.json()["id"]

    async def synced() -> bool:
        body = (await stack.bookings.http.get(f"/v1/bookings/{booking_id}")).json()
        return all(s["exchange"]["state"] == "synced" for s in body["slots"])
    await wait_until(synced, timeout=30, message="the writer put the booking in the room's calendar")
    # An Outlook meeting after ours: once it shows, the poller has read the room with our appointment in it.
    await stack.admin.book_meeting(mailbox, at(6, 12), at(6, 13), "Busy", organizer=JANE)
    slots = await stack.when_slots(made.space_id, at(6, 0).date(),
                                   lambda s: s[at(6, 12)]["state"] == "busy_in_outlook", "the meeting shows")
    assert states(slots, at(6, 9), at(6, 9, 30)) == ["booked", "booked"]
    assert slots[at(6, 9)]["booking"]["booking_id"] == booking_id
    assert slots[at(6, 12)]["organizer"] == JANE["name"]  # the option is on, the meeting is new

    # Our own appointment is not Outlook busy time for booking-service either: the booking can still change.
    details = (await stack.bookings.http.get(f"/v1/bookings/{booking_id}")).json()
    moved = await stack.bookings.http.patch(f"/v1/bookings/{booking_id}", json={"slots": [
        {**slot(made.space_id, at(6, 9, 30), 60), "slot_id": details["slots"][0]["slot_id"]}]})
    assert moved.status_code == 200, moved.text
