"""The EWS simulator in tests and benchmarks: seeds with many rooms, reading a room's calendar, faults."""

from __future__ import annotations

from typing import Any

import httpx

from spacesync.common.events.catalog import ExchangeConnection
from spacesync.common.secrets import SecretBox
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.seed import Seed

WRITER = "LIBRARY\\svc-spacesync"
READONLY = "LIBRARY\\svc-readonly"
PASSWORD = "test-Passw0rd"  # noqa: S105 - the simulator's test account
ROOM_DOMAIN = "rooms.example.org"


def room(index: int) -> str:
    return f"room-{index:04d}@{ROOM_DOMAIN}"


def rooms_seed(count: int = 12) -> Seed:
    """`count` room mailboxes, a delegate writer, a free/busy-only account and an Outlook user."""
    return Seed.model_validate({
        "mailboxes": [{"smtp": room(i), "name": f"Room {i}", "kind": "room"} for i in range(count)]
        + [{"smtp": f"jane@{ROOM_DOMAIN}", "name": "Jane Librarian", "kind": "user"}],
        "accounts": [
            {"username": WRITER, "password": PASSWORD, "default_access": "delegate_write", "max_concurrency": 64},
            {"username": READONLY, "password": PASSWORD, "default_access": "freebusy"},
        ],
    })


def connection(sim: EmbeddedSimulator, secrets: SecretBox, *, username: str = WRITER, password: str = PASSWORD,
               **options: Any) -> ExchangeConnection:
    """A location's Exchange settings pointing at the simulator (plain HTTP on loopback)."""
    return ExchangeConnection(server=sim.ews_url, username=username, password_encrypted=secrets.encrypt(password),
                              **options)


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
