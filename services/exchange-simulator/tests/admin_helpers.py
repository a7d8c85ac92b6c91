"""What the admin API and fault tests share: an HTTP client, meeting bodies, running code on the simulator's loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from spacesync.exchange_simulator.embedded import EmbeddedSimulator

T = TypeVar("T")

ROOM = "room1@example.org"
ORGANIZER = {"name": "Alice Organizer", "smtp": "alice@example.org"}


def client(sim: EmbeddedSimulator, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=sim.base_url, timeout=30, headers=headers)


def meetings_url(smtp: str = ROOM, item_id: str | None = None) -> str:
    url = f"/admin/mailboxes/{quote(smtp)}/meetings"
    return url if item_id is None else f"{url}/{quote(item_id, safe='')}"


def items_url(smtp: str = ROOM, item_id: str | None = None) -> str:
    url = f"/admin/mailboxes/{quote(smtp)}/items"
    return url if item_id is None else f"{url}/{quote(item_id, safe='')}"


def meeting(start: str = "2030-03-04T10:00:00+01:00", end: str = "2030-03-04T11:00:00+01:00",
            **fields: Any) -> dict[str, Any]:
    return {"organizer": ORGANIZER, "subject": "Team meeting", "start": start, "end": end, **fields}


def on_loop(sim: EmbeddedSimulator, work: Callable[[], T]) -> T:
    """Runs `work` on the simulator's event loop (where its state lives) and returns the result."""

    async def run() -> T:
        return work()

    result: T = sim.call(run())
    return result


def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Polls `condition` until it holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def assert_problem(response: httpx.Response, status: int, field: str | None = None,
                   reason: str | None = None) -> dict[str, Any]:
    """A problem+json answer with this status naming `field` (and `reason` in its reason)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    if field is not None:
        reasons = {error["field"]: error["reason"] for error in body.get("errors", [])}
        assert field in reasons, body
        assert field in body["detail"]
        if reason is not None:
            assert reason in reasons[field], body
    return body
