"""What the simulator's tests share: the test seed, exchangelib account factory type, auth parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from exchangelib import BASIC, NTLM, Account

PASSWORD = "s3cret-Pw"

SEED: dict[str, Any] = {
    "mailboxes": [
        {"smtp": "room1@example.org", "name": "Room 1", "kind": "room"},
        {"smtp": "room2@example.org", "name": "Room 2", "kind": "room"},
        {"smtp": "room3@example.org", "name": "Room 3", "kind": "room"},
        {"smtp": "alice@example.org", "name": "Alice Organizer", "kind": "user"},
    ],
    "accounts": [
        {"username": "DOMAIN\\writer", "password": PASSWORD, "default_access": "delegate_write"},
        {"username": "DOMAIN\\reader", "password": PASSWORD, "default_access": "delegate_read"},
        {"username": "imp@example.org", "password": PASSWORD, "default_access": "impersonation",
         "rights": {"room3@example.org": "none"}},
        {"username": "DOMAIN\\fbonly", "password": PASSWORD, "default_access": "freebusy"},
        {"username": "DOMAIN\\nobody", "password": PASSWORD, "default_access": "none"},
        {"username": "DOMAIN\\mixed", "password": PASSWORD, "default_access": "none",
         "rights": {"room1@example.org": "delegate_write", "room2@example.org": "freebusy"}},
    ],
}


AccountFactory = Callable[..., Account]

AUTH_TYPES = [pytest.param(NTLM, id="ntlm"), pytest.param(BASIC, id="basic")]


def requests_seen(state: Any, operation: str | None = None, outcome: str | None = None) -> int:
    """How many EWS requests the simulator answered, filtered by operation and/or outcome label."""
    total = 0.0
    for metric in state.metrics.requests.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            if operation is not None and sample.labels["operation"] != operation:
                continue
            if outcome is not None and sample.labels["outcome"] != outcome:
                continue
            total += sample.value
    return int(total)
