"""Calendar subscriptions (Subscribe, GetEvents, GetStreamingEvents, Unsubscribe): synchronous exchangelib code.

Subscribe, GetEvents and Unsubscribe are short calls: the gateway runs them in its worker threads like any other.
GetStreamingEvents holds its HTTP connection for minutes: `stream()` runs in a thread of CalendarWatch's own, on a
Protocol of its own (`ExchangeGateway.streaming_protocol`), never on the gateway's sessions.

What exchangelib 5.6.0 does not do for us:
- `folder.get_events()` pages on MoreEvents but sends its first watermark again, which Exchange refuses
  (ErrorInvalidWatermark): `pull()` pages itself with the last event's watermark.
- GetStreamingEvents raises on the first error envelope and ends the stream, and Exchange's code
  ErrorSubscriptionUnsubscribed is misspelled in exchangelib (it becomes a TransportError). `StreamingEvents`
  hands each error over as a `StreamError` naming its subscriptions, and the stream goes on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from exchangelib import DELEGATE, IMPERSONATION, Account, EWSTimeZone
from exchangelib.errors import EWSError
from exchangelib.properties import DistinguishedFolderId, Mailbox, StatusEvent
from exchangelib.services import GetEvents, GetStreamingEvents, SubscribeToPull, SubscribeToStreaming, Unsubscribe
from exchangelib.util import MNS

from spacesync.common.events.catalog import ExchangeAccess
from spacesync.common.exchange.calendar import UnexpectedAnswer
from spacesync.common.exchange.model import ConnectionProblem, ExchangeError, ExchangeServer

# Calendar changes; FreeBusyChangedEvent comes with each of them on Exchange, so it adds nothing.
EVENT_TYPES = ("CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent")

# Response codes that mean the subscription is gone (or its events are): subscribe again, read the room again.
LOST = frozenset({
    "ErrorSubscriptionNotFound", "ErrorExpiredSubscription", "ErrorSubscriptionUnsubscribed",
    "ErrorInvalidWatermark", "ErrorReadEventsFailed", "ErrorInvalidSubscription", "ErrorInvalidPullSubscriptionId",
    "ErrorMissedNotificationEvents", "ErrorSubscriptionAccessDenied",
})
_UTC = EWSTimeZone("UTC")


@dataclass(frozen=True)
class Subscription:
    id: str
    watermark: str | None = None  # pull: the last watermark Exchange sent (GetEvents must send exactly it)


class SubscriptionLost(ExchangeError):
    """Exchange no longer has the subscription (or lost its events): subscribe again."""

    def __init__(self, code: str, text: str = "") -> None:
        detail = f": {text}" if text else ""
        super().__init__(ConnectionProblem.SERVER_ERROR, f"the subscription is gone ({code}{detail})")
        self.code = code

    @property
    def transient(self) -> bool:
        return False


def code_of(error: BaseException) -> str:
    """The EWS response code of an exchangelib error (its class name, or the code a TransportError names)."""
    name = type(error).__name__
    if name.startswith("Error"):
        return name
    text = str(error)
    return next((code for code in LOST if code in text), name)


def lost(error: BaseException) -> SubscriptionLost | None:
    code = code_of(error)
    return SubscriptionLost(code, " ".join(str(error).split())[:160]) if code in LOST else None


def account(protocol: Any, server: ExchangeServer, mailbox: str) -> Any:
    """An exchangelib Account on exactly `protocol` (no I/O)."""
    access = IMPERSONATION if server.access == ExchangeAccess.IMPERSONATION else DELEGATE
    made = Account(mailbox, config=protocol.config, autodiscover=False, access_type=access, default_timezone=_UTC)
    made.protocol = protocol
    return made


def _calendar(mailbox: str) -> DistinguishedFolderId:
    return DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=mailbox))


def subscribe(mailbox_account: Any, mailbox: str, streaming: bool, timeout_minutes: int) -> Subscription:
    """A pull or streaming subscription on the mailbox's calendar."""
    if streaming:
        answers = list(SubscribeToStreaming(account=mailbox_account).call(folders=[_calendar(mailbox)],
                                                                          event_types=EVENT_TYPES))
    else:
        answers = list(SubscribeToPull(account=mailbox_account).call(folders=[_calendar(mailbox)],
                                                                     event_types=EVENT_TYPES, watermark=None,
                                                                     timeout=timeout_minutes))
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    if len(answers) != 1:
        raise UnexpectedAnswer(f"Subscribe answered {len(answers)} subscriptions for one calendar")
    if streaming:  # the id alone
        return Subscription(answers[0])
    subscription_id, watermark = answers[0]
    return Subscription(subscription_id, watermark)


def pull(mailbox_account: Any, subscription: Subscription) -> tuple[bool, Subscription]:
    """GetEvents until Exchange has no more: whether anything changed, and the subscription's next watermark.
    Raises SubscriptionLost when the subscription is gone."""
    service = GetEvents(account=mailbox_account)
    watermark, changed = subscription.watermark, False
    try:
        while True:
            notification = service.get(subscription_id=subscription.id, watermark=watermark)
            changed = changed or any(not isinstance(event, StatusEvent) for event in notification.events)
            marks = [event.watermark for event in notification.events if event.watermark]
            watermark = marks[-1] if marks else watermark
            if not notification.more_events:
                return changed, Subscription(subscription.id, watermark)
    except EWSError as error:
        gone = lost(error)
        if gone is None:
            raise
        raise gone from error


def unsubscribe(mailbox_account: Any, subscription_id: str) -> None:
    """Ends a subscription; one Exchange no longer has is fine."""
    try:
        Unsubscribe(account=mailbox_account).get(subscription_id=subscription_id)
    except EWSError as error:
        if lost(error) is None:
            raise


# -- streaming ------------------------------------------------------------------------------------------------------


class StreamError(Exception):
    """An error envelope in a stream: its response code and the subscriptions it names."""

    def __init__(self, code: str, subscription_ids: list[str]) -> None:
        super().__init__(f"{code} for {len(subscription_ids)} subscription(s)")
        self.code = code
        self.subscription_ids = subscription_ids


class StreamingEvents(GetStreamingEvents):  # type: ignore[misc]  # exchangelib is untyped
    """GetStreamingEvents that yields error envelopes as StreamError values instead of ending the stream, and that
    ends its connection at once when `cancelled` is set."""

    def __init__(self, *args: Any, cancelled: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancelled = cancelled

    def _get_response(self, payload: Any, api_version: Any) -> Any:
        response = super()._get_response(payload=payload, api_version=api_version)
        if self.cancelled.is_set():  # Stream.close() came while this connection opened
            shut(response)
        return response

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        try:
            return super()._get_element_container(message=message, name=name)
        except EWSError as error:
            found = message.find(f"{{{MNS}}}ErrorSubscriptionIds")
            # The schema puts t:SubscriptionId in there; exchangelib looks for m:SubscriptionId.
            ids = [] if found is None else [(child.text or "").strip() for child in found
                                            if child.tag.rpartition("}")[2] == "SubscriptionId"]
            if not ids:
                raise
            return StreamError(code_of(error), ids)


@dataclass(frozen=True)
class Changed:
    """A notification: the subscription's calendar changed."""

    subscription_id: str


class Stream:
    """GetStreamingEvents connections, one at a time, on a Protocol of their own (run in a thread of their own).
    `close()` from another thread ends the open connection now and any later one before it is read."""

    def __init__(self, protocol: Any, server: ExchangeServer) -> None:
        self.protocol = protocol
        self.server = server
        self.cancelled = threading.Event()
        self._service: StreamingEvents | None = None

    def events(self, anchor: str, subscription_ids: list[str], minutes: int) -> Iterator[Changed | StreamError]:
        """The notifications and errors of one connection, until Exchange closes it (ConnectionStatus Closed after
        `minutes`, or when it serves no subscription any more) or it fails (raises)."""
        service = StreamingEvents(account=account(self.protocol, self.server, anchor), cancelled=self.cancelled)
        self._service = service
        try:
            if self.cancelled.is_set():
                return
            for answer in service.call(subscription_ids=subscription_ids, connection_timeout=minutes):
                if isinstance(answer, StreamError):
                    yield answer
                elif isinstance(answer, BaseException):
                    raise answer
                elif answer.events:
                    yield Changed(answer.subscription_id)
        finally:
            self._service = None
            service.stop_streaming()

    def close(self) -> None:
        """Ends the open connection, if any (a thread blocked reading it wakes up with an error), and the ones after
        it (best effort; the caller closes the protocol once the thread has ended)."""
        self.cancelled.set()
        service = self._service
        if service is not None:
            shut(service._streaming_response)


def shut(response: Any) -> None:
    """Shuts the socket of a streamed HTTP response down: a thread blocked reading it wakes up."""
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _socket(response: Any) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
    sock = getattr(fp, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
