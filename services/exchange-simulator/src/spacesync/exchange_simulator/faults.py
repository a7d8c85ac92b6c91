"""Injectable faults, scoped to a mailbox, an account or everything (pure: the endpoint acts on the verdict).

A fault is what the admin API adds (`FaultSpec`): a kind (how the server misbehaves), a scope (whose requests it
hits), optionally the EWS operations it hits, and how many requests it hits before it removes itself (`count`;
none: until it is removed). The endpoint asks `Faults.take(account, mailboxes, operation)` once per authenticated
request and acts on the answer: at most one failure (ErrorServerBusy, HTTP 503, HTTP 500, a dropped connection),
after any added latency. A `down` fault is not taken per request: while one exists `Faults.is_down()` is true and
every EWS connection is closed before it is read.

`ConcurrencyGate` is Exchange's EWSMaxConcurrency: requests in flight per account; past the account's limit (the
seed's max_concurrency, or an admin override) the request is answered with ErrorServerBusy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from spacesync.exchange_simulator.ews.soap import NSMAP


class FaultKind(StrEnum):
    SERVER_BUSY = "server_busy"  # SOAP fault ErrorServerBusy with BackOffMilliseconds
    HTTP_503 = "http_503"  # 503 with Retry-After
    HTTP_500 = "http_500"  # 500 with an HTML body, as a broken IIS/proxy answers
    LATENCY = "latency"  # added delay, then the normal answer (or the next fault's)
    DROP = "drop"  # the connection is closed without an answer
    DOWN = "down"  # every EWS connection is closed until the fault is removed


class FaultScope(StrEnum):
    MAILBOX = "mailbox"  # requests for one mailbox (X-AnchorMailbox, the impersonated or the addressed mailbox)
    ACCOUNT = "account"  # requests authenticated as one service account
    NONE = "none"  # every request


# The kind-specific parameters: giving one to another kind is a mistake worth reporting (it would do nothing).
PARAMETER_OF = {
    "back_off_ms": FaultKind.SERVER_BUSY,
    "retry_after_s": FaultKind.HTTP_503,
    "latency_ms": FaultKind.LATENCY,
}


def _kind(info: ValidationInfo) -> FaultKind | None:
    kind = info.data.get("kind")
    return kind if isinstance(kind, FaultKind) else None


class FaultSpec(BaseModel):
    """What the admin API takes: a kind, a scope, optionally operations, how many requests it hits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    scope: FaultScope = FaultScope.NONE
    # The mailbox's SMTP address (scope mailbox) or the account's user name (scope account); none for scope none.
    target: str | None = Field(default=None, validate_default=True, max_length=320)
    # Only requests for these EWS operations (the first element of s:Body, e.g. "UpdateItem"); none: all of them.
    operations: frozenset[str] | None = Field(default=None, min_length=1, max_length=50)
    count: int | None = Field(default=None, ge=1, le=1_000_000)  # requests it hits; none: until removed
    back_off_ms: int = Field(default=2000, ge=0, le=3_600_000)  # server_busy: BackOffMilliseconds
    retry_after_s: int = Field(default=2, ge=0, le=3600)  # http_503: Retry-After
    latency_ms: int = Field(default=500, ge=0, le=120_000)  # latency: added delay

    @field_validator("scope")
    @classmethod
    def _down_is_everywhere(cls, scope: FaultScope, info: ValidationInfo) -> FaultScope:
        if _kind(info) == FaultKind.DOWN and scope != FaultScope.NONE:
            raise ValueError("a down fault takes the whole server down: its scope is none")
        return scope

    @field_validator("target")
    @classmethod
    def _target_fits_scope(cls, target: str | None, info: ValidationInfo) -> str | None:
        scope = info.data.get("scope")
        target = target.strip() if target is not None else None
        if scope == FaultScope.NONE:
            if target:
                raise ValueError("a fault with scope none has no target")
            return None
        if scope == FaultScope.MAILBOX and (not target or "@" not in target):
            raise ValueError("scope mailbox needs the mailbox's SMTP address as target")
        if scope == FaultScope.ACCOUNT and not target:
            raise ValueError("scope account needs the account's user name (DOMAIN\\user or a UPN) as target")
        return target

    @field_validator("operations")
    @classmethod
    def _operations(cls, operations: frozenset[str] | None, info: ValidationInfo) -> frozenset[str] | None:
        if operations is None:
            return None
        if _kind(info) == FaultKind.DOWN:
            raise ValueError("a down fault closes connections before their operation is known: no operations")
        for name in operations:
            if not name.isascii() or not name.isalnum():
                raise ValueError(f"'{name}' is not an EWS operation name (e.g. GetItem, UpdateItem)")
        return operations

    @field_validator("count")
    @classmethod
    def _down_until_removed(cls, count: int | None, info: ValidationInfo) -> int | None:
        if count is not None and _kind(info) == FaultKind.DOWN:
            raise ValueError("a down fault lasts until it is removed (for the next N requests use kind drop)")
        return count

    @field_validator("back_off_ms", "retry_after_s", "latency_ms")
    @classmethod
    def _parameter_of_kind(cls, value: int, info: ValidationInfo) -> int:
        kind = _kind(info)
        wanted = PARAMETER_OF[info.field_name or ""]
        if kind is not None and kind != wanted:
            raise ValueError(f"only a {wanted.value} fault takes {info.field_name}, not a {kind.value} fault")
        return value


@dataclass
class Fault:
    id: int
    spec: FaultSpec
    remaining: int | None
    hits: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def matches(self, account: str | None, mailboxes: frozenset[str], operation: str | None) -> bool:
        spec = self.spec
        if spec.operations is not None and operation not in spec.operations:
            return False
        if spec.scope == FaultScope.ACCOUNT:
            return account is not None and account.lower() == (spec.target or "").lower()
        if spec.scope == FaultScope.MAILBOX:
            return (spec.target or "").lower() in mailboxes
        return True


def _mailbox_set(mailboxes: str | Iterable[str] | None) -> frozenset[str]:
    if mailboxes is None:
        return frozenset()
    if isinstance(mailboxes, str):
        mailboxes = (mailboxes,)
    return frozenset(smtp.strip().lower() for smtp in mailboxes if smtp)


@dataclass
class Faults:
    active: dict[int, Fault] = field(default_factory=dict)
    # Ids are never reused, not even after clear(): a stale id can never remove a newer fault.
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(next(self._ids), spec, spec.count)
        self.active[fault.id] = fault
        return fault

    def get(self, fault_id: int) -> Fault | None:
        return self.active.get(fault_id)

    def remove(self, fault_id: int) -> bool:
        return self.active.pop(fault_id, None) is not None

    def clear(self) -> int:
        removed = len(self.active)
        self.active.clear()
        return removed

    def is_down(self) -> bool:
        return any(f.spec.kind == FaultKind.DOWN for f in self.active.values())

    def take(self, account: str | None, mailboxes: str | Iterable[str] | None,
             operation: str | None = None) -> list[FaultSpec]:
        """The faults this request meets (latency first, then at most one failure), counting them down.

        `mailboxes`: the mailbox (or mailboxes) the request is for; `operation`: its EWS operation. A fault limited
        to operations never matches a request whose operation is not given.
        """
        wanted = _mailbox_set(mailboxes)
        hit: list[FaultSpec] = []
        failure_taken = False
        for fault in list(self.active.values()):
            if fault.spec.kind == FaultKind.DOWN or not fault.matches(account, wanted, operation):
                continue
            is_failure = fault.spec.kind != FaultKind.LATENCY
            if is_failure and failure_taken:
                continue
            failure_taken = failure_taken or is_failure
            hit.append(fault.spec)
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self.active[fault.id]
        return sorted(hit, key=lambda spec: spec.kind != FaultKind.LATENCY)


def request_mailboxes(anchor: str | None, *elements: etree._Element | None) -> frozenset[str]:
    """The mailboxes a request is for: X-AnchorMailbox, the impersonated mailbox (SOAP header), the mailboxes of
    DistinguishedFolderIds and of GetUserAvailability's MailboxData in the body. Attendees do not count."""
    found: set[str] = set()
    if anchor:
        found.add(anchor)
    for element in elements:
        if element is None:
            continue
        for path in (".//t:ConnectingSID/t:PrimarySmtpAddress", ".//t:ConnectingSID/t:SmtpAddress",
                     ".//t:DistinguishedFolderId/t:Mailbox/t:EmailAddress", ".//t:MailboxData/t:Email/t:Address"):
            found.update(node.text for node in element.iterfind(path, NSMAP) if node.text)
    return _mailbox_set(found)


@dataclass
class ConcurrencyGate:
    """Requests in flight per account; past the account's limit Exchange answers ErrorServerBusy."""

    in_flight: dict[str, int] = field(default_factory=dict)
    # Admin overrides of the seed's max_concurrency, by lower-cased user name; None: no limit.
    limits: dict[str, int | None] = field(default_factory=dict)

    def limit_for(self, account: str, seed_limit: int | None) -> int | None:
        key = account.lower()
        return self.limits.get(key, seed_limit)

    def set_limit(self, account: str, limit: int | None) -> None:
        self.limits[account.lower()] = limit

    def clear_limit(self, account: str) -> bool:
        """Back to the seed's limit; False when there was no override."""
        key = account.lower()
        if key not in self.limits:
            return False
        del self.limits[key]
        return True

    def current(self, account: str) -> int:
        return self.in_flight.get(account.lower(), 0)

    def enter(self, account: str, seed_limit: int | None) -> bool:
        limit = self.limit_for(account, seed_limit)
        current = self.current(account)
        if limit is not None and current >= limit:
            return False
        self.in_flight[account.lower()] = current + 1
        return True

    def leave(self, account: str) -> None:
        key = account.lower()
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)
