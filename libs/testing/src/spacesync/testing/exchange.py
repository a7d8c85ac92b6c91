"""The EWS simulator in tests and benchmarks: seeds with many rooms, reading a room's calendar, faults."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from lxml import etree

from spacesync.common.events.catalog import ExchangeConnection
from spacesync.common.secrets import SecretBox
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.ews.soap import SOAP
from spacesync.exchange_simulator.seed import Seed

WRITER = "LIBRARY\\svc-spacesync"
READONLY = "LIBRARY\\svc-readonly"
IMPERSONATOR = "svc-impersonation@rooms.example.org"  # ApplicationImpersonation over the rooms
PASSWORD = "test-Passw0rd"  # noqa: S105 - the simulator's test account
ROOM_DOMAIN = "rooms.example.org"
OUTLOOK_USER = {"name": "Jane Librarian", "smtp": f"jane@{ROOM_DOMAIN}"}


def room(index: int) -> str:
    return f"room-{index:04d}@{ROOM_DOMAIN}"


def rooms_seed(count: int = 12) -> Seed:
    """`count` room mailboxes, a delegate writer, a free/busy-only account, an impersonation account and an
    Outlook user."""
    return Seed.model_validate({
        "mailboxes": [{"smtp": room(i), "name": f"Room {i}", "kind": "room"} for i in range(count)]
        + [{"smtp": f"jane@{ROOM_DOMAIN}", "name": "Jane Librarian", "kind": "user"}],
        "accounts": [
            {"username": WRITER, "password": PASSWORD, "default_access": "delegate_write", "max_concurrency": 64},
            {"username": READONLY, "password": PASSWORD, "default_access": "freebusy"},
            {"username": IMPERSONATOR, "password": PASSWORD, "default_access": "impersonation", "max_concurrency": 64},
        ],
    })


def connection(sim: EmbeddedSimulator, secrets: SecretBox, *, username: str = WRITER, password: str = PASSWORD,
               **options: Any) -> ExchangeConnection:
    """A location's Exchange settings pointing at the simulator (plain HTTP on loopback)."""
    return ExchangeConnection(server=sim.ews_url, username=username, password_encrypted=secrets.encrypt(password),
                              **options)


class SchemaCheck:
    """Validates the body and header elements of every EWS answer against messages.xsd (when
    SPACESYNC_EWS_SCHEMA_DIR names the schema): `sim.state.response_observers.append(check)`, then assert
    `not check.failures`."""

    def __init__(self) -> None:
        folder = os.environ.get("SPACESYNC_EWS_SCHEMA_DIR")
        self.schema = etree.XMLSchema(file=str(Path(folder) / "for-lxml" / "messages.xsd")) if folder else None
        self.failures: list[str] = []

    def __call__(self, operation: str, payload: bytes) -> None:
        if self.schema is None:
            return
        root = etree.fromstring(payload)
        for section in (root.find(f"{{{SOAP}}}Header"), root.find(f"{{{SOAP}}}Body")):
            for element in section if section is not None else []:
                if etree.QName(element).localname != "Fault" and not self.schema.validate(element):
                    self.failures.append(f"{operation}: {self.schema.error_log}")


class SimulatorAdmin:
    """The simulator's JSON admin API (what a test sees in a room's calendar, faults)."""

    def __init__(self, sim: EmbeddedSimulator) -> None:
        self.sim = sim
        self.http = httpx.AsyncClient(base_url=sim.base_url + "/admin", timeout=30)

    async def items(self, mailbox: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/mailboxes/{mailbox}/items")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def stamped(self, mailbox: str, slot_id: str) -> list[dict[str, Any]]:
        """The room's items stamped for this slot (slot ids in tests are unique, whatever the booking)."""
        return [item for item in await self.items(mailbox) if stamped_slot(item) == slot_id]

    # -- Outlook's side: meetings people book, move and cancel (they raise notifications like any change) ---------

    async def book_meeting(self, mailbox: str, start: datetime, end: datetime, free_busy: str = "Busy", *,
                           organizer: dict[str, str] | None = None, subject: str = "Staff meeting",
                           recurrence: dict[str, Any] | None = None) -> dict[str, Any]:
        """A meeting booked in Outlook (aware times; free_busy Busy, OOF, WorkingElsewhere, Tentative or Free;
        recurrence e.g. {"pattern": "weekly", "count": 4}). Returns the item: its "id" moves or cancels it."""
        body: dict[str, Any] = {"organizer": organizer or OUTLOOK_USER, "subject": subject,
                                "start": start.isoformat(), "end": end.isoformat(), "free_busy": free_busy}
        if recurrence is not None:
            body["recurrence"] = recurrence
        response = await self.http.post(f"/mailboxes/{quote(mailbox)}/meetings", json=body)
        response.raise_for_status()
        item: dict[str, Any] = response.json()
        return item

    async def move_meeting(self, mailbox: str, item_id: str, start: datetime | None = None,
                           end: datetime | None = None, **changes: Any) -> dict[str, Any]:
        """Outlook moves or edits a meeting (only start: it keeps its length); other changes: free_busy, subject,
        location, body, recurrence. Returns the item."""
        body = dict(changes)
        if start is not None:
            body["start"] = start.isoformat()
        if end is not None:
            body["end"] = end.isoformat()
        response = await self.http.patch(f"/mailboxes/{quote(mailbox)}/meetings/{quote(item_id, safe='')}", json=body)
        response.raise_for_status()
        item: dict[str, Any] = response.json()
        return item

    async def cancel_meeting(self, mailbox: str, item_id: str) -> None:
        """Outlook deletes the meeting (a whole series)."""
        response = await self.http.delete(f"/mailboxes/{quote(mailbox)}/meetings/{quote(item_id, safe='')}")
        response.raise_for_status()

    async def add_fault(self, **spec: Any) -> int:
        response = await self.http.post("/faults", json=spec)
        response.raise_for_status()
        fault_id: int = response.json()["id"]
        return fault_id

    async def remove_fault(self, fault_id: int) -> None:
        await self.http.delete(f"/faults/{fault_id}")

    async def requests(self) -> dict[str, Any]:
        response = await self.http.get("/requests")
        response.raise_for_status()
        counts: dict[str, Any] = response.json()
        return counts

    async def close(self) -> None:
        await self.http.aclose()


def stamped_slot(item: dict[str, Any]) -> str | None:
    """The slot id in an item's SpacesyncSlotId stamp (`source/booking/slot`), None when it has none."""
    stamp = _stamp(item)
    return stamp.rsplit("/", 1)[-1] if stamp is not None else None


def _stamp(item: dict[str, Any]) -> str | None:
    for prop in item.get("extended_properties", []):
        if prop["name"] == "SpacesyncSlotId":
            value: str = prop["value"]
            return value
    return None
