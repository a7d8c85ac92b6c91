"""Pull and streaming subscriptions: the events calendar changes raise, with watermarks (pure but for one asyncio wait).

What Exchange 2016 does, and so this model:

- Every change in a mailbox takes the next position in that mailbox's event table; a watermark names a position.
  Subscribe with a Watermark starts from that position (ErrorInvalidWatermark when it is unknown or too old).
- A pull subscription remembers the last watermark it sent. GetEvents must pass exactly that one (anything else:
  ErrorInvalidWatermark), and gets up to 50 changes after it with MoreEvents when more are waiting, or one StatusEvent
  carrying the mailbox's current watermark when none are. Within one answer, repeated modifications of an item
  collapse into the last one. A pull subscription expires when it is not polled for its Timeout (minutes).
- Streaming events carry no watermarks. One connection at a time serves a streaming subscription: a newer
  GetStreamingEvents takes it over (the older connection is told ErrorNewEventStreamConnectionOpened), Unsubscribe
  tells the serving connection ErrorSubscriptionUnsubscribed. Without a connection it expires after 30 minutes.
- A subscription belongs to its creator: a pull subscription to the effective caller (the impersonated mailbox when
  impersonating), a streaming one to the account that authenticated. Anyone else gets ErrorSubscriptionAccessDenied.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from spacesync.exchange_simulator.calendar import Change, ChangeKind

Kind = Literal["pull", "streaming"]

# NotificationEventTypeType: what a subscription may ask for (only calendar changes ever happen here).
EVENT_TYPES = frozenset({
    "CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent",
    "FreeBusyChangedEvent",
})

# The EWS events one calendar change raises (a calendar item's change also changes the mailbox's free/busy).
_RAISES = {
    ChangeKind.CREATED: ("CreatedEvent", "FreeBusyChangedEvent"),
    ChangeKind.MODIFIED: ("ModifiedEvent", "FreeBusyChangedEvent"),
    ChangeKind.DELETED: ("DeletedEvent", "FreeBusyChangedEvent"),
}

PULL_BATCH = 50  # changes per GetEvents answer
STREAM_BATCH = 100  # changes per streamed envelope, over all the connection's subscriptions
STREAMING_TTL = timedelta(minutes=30)  # a streaming subscription without a connection lives this long
HISTORY = 10_000  # changes kept per mailbox: for Subscribe with a Watermark and for subscribers that fall behind


class SubscriptionError(Exception):
    """A subscription operation failed with this EWS response code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the authenticated account, and the mailbox it impersonates, if any."""

    account: str
    impersonating: str | None = None

    def owner(self, kind: Kind) -> str:
        if kind == "pull" and self.impersonating:
            return f"mailbox:{self.impersonating.lower()}"
        return f"account:{self.account.lower()}"


@dataclass(frozen=True)
class MailboxEvent:
    """One change at its position in the mailbox's event table."""

    position: int
    change: Change
    folder: str = "calendar"


@dataclass(frozen=True)
class Event:
    """One EWS event: CreatedEvent, ModifiedEvent, DeletedEvent, FreeBusyChangedEvent, or StatusEvent."""

    kind: str
    watermark: str | None = None  # streaming events have none
    at: datetime | None = None  # None for a StatusEvent
    item_id: str | None = None
    change_key: str | None = None
    mailbox: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class Batch:
    """The events one Notification element carries for one subscription."""

    subscription_id: str
    events: tuple[Event, ...]
    previous_watermark: str | None = None  # pull only
    more_events: bool = False  # pull only


@dataclass(eq=False)
class Connection:
    """One open GetStreamingEvents response and the subscriptions it serves."""

    subscriptions: list[Subscription] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (response code, subscription id) to tell
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class Subscription:
    id: str
    kind: Kind
    owner: str
    mailbox: str
    folders: frozenset[str]
    event_types: frozenset[str]
    timeout: timedelta  # pull: expires when not polled for this long
    position: int  # the last event-table position this subscription has passed
    last_watermark_sent: str
    last_used: datetime
    connection: Connection | None = None  # streaming: the connection serving it

    def expired(self, now: datetime) -> bool:
        if self.kind == "pull":
            return now - self.last_used > self.timeout
        return self.connection is None and now - self.last_used > STREAMING_TTL

    def wants(self, event: MailboxEvent) -> bool:
        return event.folder in self.folders and any(kind in self.event_types for kind in _RAISES[event.change.kind])


def watermark(mailbox: str, position: int) -> str:
    return base64.b64encode(f"wm:{mailbox}:{position}".encode()).decode()


def _position(text: str, mailbox: str) -> int | None:
    """The event-table position a watermark names in `mailbox`, or None when it is not one of its watermarks."""
    try:
        parts = base64.b64decode(text.encode(), validate=True).decode().split(":")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    if len(parts) != 3 or parts[0] != "wm" or parts[1] != mailbox or not parts[2].isdigit():
        return None
    return int(parts[2])


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


@dataclass
class Subscriptions:
    active: dict[str, Subscription] = field(default_factory=dict)
    history: dict[str, deque[MailboxEvent]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # mailbox -> position of its latest change
    connections: set[Connection] = field(default_factory=set)
    history_size: int = HISTORY
    # Real Exchange may refuse subscriptions made through delegate access (not the caller's own or impersonated
    # mailbox) with ErrorSubscriptionDelegateAccessNotSupported; off by default.
    refuse_delegate_access: bool = False
    # Streams last ConnectionTimeout minutes; tests cap that here (seconds). None: as the client asked.
    max_stream_seconds: float | None = None
    heartbeat_seconds: float = 45.0  # a streaming connection says ConnectionStatus OK this often
    closing: bool = False  # the server is shutting down: open streams end now

    # -- watermarks --------------------------------------------------------------------------------------------

    def current_watermark(self, mailbox: str) -> str:
        return watermark(mailbox, self.positions.get(mailbox, 0))

    # -- subscriptions -----------------------------------------------------------------------------------------

    def subscribe(self, kind: Kind, caller: Caller, mailbox: str, event_types: frozenset[str],
                  folders: frozenset[str] = frozenset({"calendar"}), timeout_minutes: int = 30,
                  start: str | None = None, now: datetime | None = None) -> Subscription:
        """A new subscription from the mailbox's current position, or from the watermark `start` (pull)."""
        now = _now(now)
        self._sweep(now)
        position = self.positions.get(mailbox, 0)
        if start is not None:
            wanted = _position(start, mailbox)
            if wanted is None or wanted > position or self._missed(mailbox, wanted):
                raise SubscriptionError("ErrorInvalidWatermark")
            position = wanted
        subscription = Subscription(
            id=base64.b64encode(secrets.token_bytes(24)).decode(), kind=kind, owner=caller.owner(kind),
            mailbox=mailbox, folders=folders, event_types=event_types, timeout=timedelta(minutes=timeout_minutes),
            position=position, last_watermark_sent=watermark(mailbox, position), last_used=now,
        )
        self.active[subscription.id] = subscription
        return subscription

    def get(self, subscription_id: str, caller: Caller, kind: Kind | None = None,
            now: datetime | None = None) -> Subscription:
        """The caller's live subscription (of `kind`, when given), or the error Exchange answers."""
        subscription = self.active.get(subscription_id)
        if subscription is None:
            raise SubscriptionError("ErrorSubscriptionNotFound")
        if subscription.expired(_now(now)):
            self._remove(subscription)
            raise SubscriptionError("ErrorExpiredSubscription")
        if kind is not None and subscription.kind != kind:
            raise SubscriptionError("ErrorInvalidPullSubscriptionId" if kind == "pull" else "ErrorInvalidSubscription")
        if subscription.owner != caller.owner(subscription.kind):
            raise SubscriptionError("ErrorSubscriptionAccessDenied")
        return subscription

    def unsubscribe(self, subscription_id: str, caller: Caller, now: datetime | None = None) -> None:
        subscription = self.get(subscription_id, caller, now=now)
        connection = subscription.connection
        self._remove(subscription)
        if connection is not None:
            connection.errors.append(("ErrorSubscriptionUnsubscribed", subscription.id))
            connection.ready.set()

    def _remove(self, subscription: Subscription) -> None:
        self.active.pop(subscription.id, None)
        connection = subscription.connection
        if connection is not None and subscription in connection.subscriptions:
            connection.subscriptions.remove(subscription)
        subscription.connection = None

    def _sweep(self, now: datetime) -> None:
        for expired in [s for s in self.active.values() if s.expired(now)]:
            self._remove(expired)

    # -- changes -----------------------------------------------------------------------------------------------

    def publish(self, change: Change) -> None:
        """Records a calendar change in its mailbox's event table and wakes the streams that want it."""
        mailbox = change.mailbox
        position = self.positions.get(mailbox, 0) + 1
        self.positions[mailbox] = position
        event = MailboxEvent(position, change)
        table = self.history.get(mailbox)
        if table is None:
            table = self.history[mailbox] = deque(maxlen=self.history_size)
        table.append(event)
        self._sweep(change.at)
        for subscription in self.active.values():
            if subscription.connection is not None and subscription.mailbox == mailbox and subscription.wants(event):
                subscription.connection.ready.set()

    def _missed(self, mailbox: str, position: int) -> bool:
        """Whether changes after `position` were already dropped from the mailbox's event table."""
        table = self.history.get(mailbox)
        return table is not None and len(table) > 0 and position < table[0].position - 1

    def _after(self, subscription: Subscription) -> Iterator[MailboxEvent]:
        table = self.history.get(subscription.mailbox)
        if not table:
            return
        # Positions in a table are consecutive: skip straight to the first one after the subscription's.
        skip = max(subscription.position - table[0].position + 1, 0)
        for event in itertools.islice(table, skip, None):
            if subscription.wants(event):
                yield event

    def pending(self, subscription: Subscription) -> bool:
        return next(self._after(subscription), None) is not None

    def _take(self, subscription: Subscription, limit: int, watermarks: bool) -> tuple[list[Event], int]:
        """Up to `limit` wanted changes after the subscription's position, as events; moves the position past them."""
        taken: list[MailboxEvent] = []
        for event in self._after(subscription):
            taken.append(event)
            if len(taken) >= limit:
                break
        if not taken:
            return [], 0
        subscription.position = taken[-1].position
        # Repeated modifications of one item in one answer: only the last one is told.
        kept: list[MailboxEvent] = []
        modified: set[str] = set()
        for event in reversed(taken):
            if event.change.kind == ChangeKind.MODIFIED:
                if event.change.item_id in modified:
                    continue
                modified.add(event.change.item_id)
            kept.append(event)
        kept.reverse()
        events = [
            Event(kind, watermark(subscription.mailbox, event.position) if watermarks else None, event.change.at,
                  event.change.item_id, event.change.change_key, event.change.mailbox, event.folder)
            for event in kept
            for kind in _RAISES[event.change.kind]
            if kind in subscription.event_types
        ]
        return events, len(taken)

    # -- pull --------------------------------------------------------------------------------------------------

    def get_events(self, subscription: Subscription, last_watermark: str, now: datetime | None = None) -> Batch:
        """GetEvents: the events after `last_watermark`, which must be the last watermark this subscription sent."""
        if last_watermark != subscription.last_watermark_sent:
            raise SubscriptionError("ErrorInvalidWatermark")
        if self._missed(subscription.mailbox, subscription.position):
            self._remove(subscription)
            raise SubscriptionError("ErrorReadEventsFailed")
        subscription.last_used = _now(now)
        previous = subscription.last_watermark_sent
        events, _ = self._take(subscription, PULL_BATCH, watermarks=True)
        if events:
            subscription.last_watermark_sent = watermark(subscription.mailbox, subscription.position)
        else:
            # Nothing wanted happened: the position moves to the mailbox's current one.
            subscription.position = self.positions.get(subscription.mailbox, 0)
            subscription.last_watermark_sent = watermark(subscription.mailbox, subscription.position)
            events = [Event("StatusEvent", subscription.last_watermark_sent)]
        return Batch(subscription.id, tuple(events), previous, self.pending(subscription))

    # -- streaming ---------------------------------------------------------------------------------------------

    def connect(self, subscription_ids: list[str], caller: Caller, now: datetime | None = None) -> Connection:
        """A new streaming connection for the caller's subscriptions; the ones it cannot serve are in its errors."""
        connection = Connection()
        for subscription_id in subscription_ids:
            try:
                subscription = self.get(subscription_id, caller, "streaming", now)
            except SubscriptionError as failure:
                connection.errors.append((failure.code, subscription_id))
                continue
            if subscription in connection.subscriptions:
                continue
            previous = subscription.connection
            if previous is not None:
                previous.subscriptions.remove(subscription)
                previous.errors.append(("ErrorNewEventStreamConnectionOpened", subscription.id))
                previous.ready.set()
            subscription.connection = connection
            connection.subscriptions.append(subscription)
        self.connections.add(connection)
        return connection

    def disconnect(self, connection: Connection, now: datetime | None = None) -> None:
        """The connection closed: its subscriptions wait (and age) for the next one."""
        for subscription in connection.subscriptions:
            if subscription.connection is connection:
                subscription.connection = None
                subscription.last_used = _now(now)
        connection.subscriptions.clear()
        self.connections.discard(connection)

    def take_stream(self, connection: Connection) -> tuple[list[Batch], list[tuple[str, str]]]:
        """What a stream sends next: notifications (up to STREAM_BATCH changes) and errors to tell."""
        batches: list[Batch] = []
        budget = STREAM_BATCH
        for subscription in list(connection.subscriptions):
            if budget <= 0:
                break
            if self._missed(subscription.mailbox, subscription.position):
                connection.errors.append(("ErrorMissedNotificationEvents", subscription.id))
                subscription.position = self.positions.get(subscription.mailbox, 0)
                continue
            events, taken = self._take(subscription, budget, watermarks=False)
            budget -= taken
            if events:
                batches.append(Batch(subscription.id, tuple(events)))
        return batches, self.take_errors(connection)

    def take_errors(self, connection: Connection) -> list[tuple[str, str]]:
        errors, connection.errors = connection.errors, []
        return errors

    def has_work(self, connection: Connection) -> bool:
        return (self.closing or bool(connection.errors) or not connection.subscriptions
                or any(self.pending(subscription) for subscription in connection.subscriptions))

    async def wait(self, connection: Connection, timeout: float) -> bool:
        """Waits up to `timeout` seconds until the connection has something to send or must end; True if so."""
        if self.has_work(connection):
            return True
        connection.ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.ready.wait(), max(timeout, 0))
        return self.has_work(connection)

    def shutdown(self) -> None:
        """The server stops: every open stream says ConnectionStatus Closed and ends."""
        self.closing = True
        for connection in self.connections:
            connection.ready.set()
