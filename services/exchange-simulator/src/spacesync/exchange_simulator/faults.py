"""Injectable faults, scoped to a mailbox, an account or everything (pure: the endpoint acts on the verdict)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(StrEnum):
    SERVER_BUSY = "server_busy"  # SOAP fault ErrorServerBusy with BackOffMilliseconds
    HTTP_503 = "http_503"  # 503 with Retry-After
    HTTP_500 = "http_500"  # 500 with an HTML body, as a broken IIS/proxy answers
    LATENCY = "latency"  # added delay, then the normal answer
    DROP = "drop"  # the connection is closed without an answer
    DOWN = "down"  # every EWS connection is closed until the fault is removed


class FaultSpec(BaseModel):
    """What the admin API takes: a kind, a scope, how many requests it hits (None: until removed)."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    mailbox: str | None = None
    account: str | None = None
    count: int | None = Field(default=None, ge=1)
    back_off_ms: int = Field(default=2000, ge=0, le=3_600_000)
    retry_after_s: int = Field(default=2, ge=0, le=3600)
    latency_ms: int = Field(default=500, ge=0, le=120_000)

    @model_validator(mode="after")
    def _one_scope(self) -> FaultSpec:
        if self.mailbox and self.account:
            raise ValueError("a fault is scoped to a mailbox or an account, not both")
        if self.mailbox:
            self.mailbox = self.mailbox.lower()
        return self


@dataclass
class Fault:
    id: int
    spec: FaultSpec
    remaining: int | None
    hits: int = 0

    def matches(self, account: str | None, mailbox: str | None) -> bool:
        if self.spec.account is not None:
            return account is not None and account.lower() == self.spec.account.lower()
        if self.spec.mailbox is not None:
            return mailbox is not None and mailbox.lower() == self.spec.mailbox
        return True


@dataclass
class Faults:
    active: dict[int, Fault] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(next(self._ids), spec, spec.count)
        self.active[fault.id] = fault
        return fault

    def remove(self, fault_id: int) -> bool:
        return self.active.pop(fault_id, None) is not None

    def clear(self) -> None:
        self.active.clear()

    def is_down(self) -> bool:
        return any(f.spec.kind == FaultKind.DOWN for f in self.active.values())

    def take(self, account: str | None, mailbox: str | None) -> list[FaultSpec]:
        """The faults this request meets (latency first, then at most one failure), counting them down."""
        hit: list[FaultSpec] = []
        failure_taken = False
        for fault in list(self.active.values()):
            if fault.spec.kind == FaultKind.DOWN or not fault.matches(account, mailbox):
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


@dataclass
class ConcurrencyGate:
    """Requests in flight per account; past the account's limit Exchange answers ErrorServerBusy."""

    in_flight: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)  # admin overrides of the seed's max_concurrency

    def enter(self, account: str, seed_limit: int | None) -> bool:
        limit = self.limits.get(account.lower(), seed_limit)
        current = self.in_flight.get(account.lower(), 0)
        if limit is not None and current >= limit:
            return False
        self.in_flight[account.lower()] = current + 1
        return True

    def leave(self, account: str) -> None:
        self.in_flight[account.lower()] -= 1
