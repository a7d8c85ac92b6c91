"""Pull and streaming subscriptions on calendar folders: the events a change raises, with watermarks."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from spacesync.exchange_simulator.calendar import Change, ChangeKind


@dataclass(frozen=True)
class Notification:
    """One EWS event: CreatedEvent, ModifiedEvent, DeletedEvent, FreeBusyChangedEvent, or StatusEvent."""

    kind: str
    watermark: str
    at: datetime
    item_id: str | None = None
    change_key: str | None = None
    mailbox: str | None = None


@dataclass
class Subscription:
    id: str
    kind: Literal["pull", "streaming"]
    account: str
    mailbox: str
    event_types: frozenset[str]
    timeout: timedelta  # a pull subscription expires when not polled for this long
    pending: list[Notification] = field(default_factory=list)
    last_watermark: str = ""
    last_used: datetime = field(default_factory=lambda: datetime.now(UTC))
    wakers: list[Callable[[], None]] = field(default_factory=list)

    def expired(self, now: datetime) -> bool:
        return self.kind == "pull" and now - self.last_used > self.timeout


# Which EventType names a change raises (FreeBusyChangedEvent accompanies every calendar change).
_RAISES = {
    ChangeKind.CREATED: ("CreatedEvent", "FreeBusyChangedEvent"),
    ChangeKind.MODIFIED: ("ModifiedEvent", "FreeBusyChangedEvent"),
    ChangeKind.DELETED: ("DeletedEvent", "FreeBusyChangedEvent"),
}

MAX_EVENTS_PER_CALL = 50


@dataclass
class Subscriptions:
    active: dict[str, Subscription] = field(default_factory=dict)
    _watermark: int = 0

    def new_watermark(self) -> str:
        self._watermark += 1
        return base64.b64encode(f"wm-{self._watermark}".encode()).decode()

    def subscribe(self, kind: Literal["pull", "streaming"], account: str, mailbox: str,
                  event_types: frozenset[str], timeout_minutes: int = 30) -> Subscription:
        subscription = Subscription(
            id=base64.b64encode(secrets.token_bytes(20)).decode(), kind=kind, account=account.lower(),
            mailbox=mailbox, event_types=event_types, timeout=timedelta(minutes=timeout_minutes),
            last_watermark=self.new_watermark(),
        )
        self.active[subscription.id] = subscription
        return subscription

    def find(self, subscription_id: str, account: str) -> Subscription | None:
        """The caller's subscription, if it is alive (Exchange ties a subscription to its creator)."""
        now = datetime.now(UTC)
        for expired in [s for s in self.active.values() if s.expired(now)]:
            del self.active[expired.id]
        subscription = self.active.get(subscription_id)
        if subscription is None or subscription.account != account.lower():
            return None
        subscription.last_used = now
        return subscription

    def unsubscribe(self, subscription_id: str, account: str) -> bool:
        if self.find(subscription_id, account) is None:
            return False
        del self.active[subscription_id]
        return True

    def publish(self, change: Change) -> None:
        for subscription in self.active.values():
            if subscription.mailbox != change.mailbox:
                continue
            for kind in _RAISES[change.kind]:
                if kind in subscription.event_types:
                    subscription.pending.append(Notification(
                        kind, self.new_watermark(), change.at, change.item_id, change.change_key, change.mailbox))
            for wake in subscription.wakers:
                wake()

    def take(self, subscription: Subscription) -> tuple[list[Notification], bool]:
        """Up to MAX_EVENTS_PER_CALL events (a StatusEvent when none), and whether more are waiting."""
        if not subscription.pending:
            status = Notification("StatusEvent", self.new_watermark(), datetime.now(UTC))
            subscription.last_watermark = status.watermark
            return [status], False
        batch = subscription.pending[:MAX_EVENTS_PER_CALL]
        del subscription.pending[:MAX_EVENTS_PER_CALL]
        subscription.last_watermark = batch[-1].watermark
        return batch, bool(subscription.pending)

    async def wait(self, subscription: Subscription, timeout: float) -> bool:
        """Waits until the subscription has events, up to `timeout` seconds; True when it has some."""
        if subscription.pending:
            return True
        ready = asyncio.Event()
        subscription.wakers.append(ready.set)
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except TimeoutError:
            return bool(subscription.pending)
        finally:
            subscription.wakers.remove(ready.set)
        return True
