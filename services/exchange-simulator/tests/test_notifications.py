"""Pull and streaming notifications: the model (notifications.py) alone, then through real exchangelib."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from ews_helpers import AUTH_TYPES, AccountFactory
from exchangelib import IMPERSONATION, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorInvalidPullSubscriptionId,
    ErrorInvalidSubscription,
    ErrorInvalidWatermark,
    ErrorNewEventStreamConnectionOpened,
    ErrorNonExistentMailbox,
    ErrorSubscriptionAccessDenied,
    ErrorSubscriptionDelegateAccessNotSupported,
    ErrorSubscriptionNotFound,
    TransportError,
)
from exchangelib.folders import Calendar, DistinguishedFolderId, Root
from exchangelib.items import SEND_TO_NONE
from exchangelib.properties import Mailbox
from exchangelib.services import SubscribeToPull
from lxml import etree

from spacesync.exchange_simulator.calendar import CalendarItem as StoredItem
from spacesync.exchange_simulator.calendar import Calendars, Change, ChangeKind
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.ews.soap import M
from spacesync.exchange_simulator.notifications import (
    PULL_BATCH,
    STREAM_BATCH,
    Caller,
    SubscriptionError,
    Subscriptions,
    watermark,
)
from spacesync.exchange_simulator.state import SimulatorState

T = TypeVar("T")
ROOM = "room1@example.org"
WRITER = Caller("DOMAIN\\writer")
CALENDAR_EVENTS = frozenset({"CreatedEvent", "ModifiedEvent", "DeletedEvent", "FreeBusyChangedEvent"})
T0 = dt.datetime(2031, 3, 1, 8, tzinfo=dt.UTC)


# -- the model, without a server -----------------------------------------------------------------------------------


def _change(kind: ChangeKind, item: str = "item-1", mailbox: str = ROOM, key: str = "ck") -> Change:
    return Change(kind, mailbox, item, key, dt.datetime.now(dt.UTC))


def _kinds(batch: Any) -> list[str]:
    return [event.kind for event in batch.events]


def test_pull_events_follow_the_last_watermark_sent() -> None:
    model = Subscriptions()
    model.publish(_change(ChangeKind.CREATED, "old"))  # before the subscription: not told
    subscription = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    start = subscription.last_watermark_sent
    assert start == model.current_watermark(ROOM) == watermark(ROOM, 1)

    model.publish(_change(ChangeKind.CREATED))
    model.publish(_change(ChangeKind.DELETED, key="ck2"))
    batch = model.get_events(subscription, start)
    assert _kinds(batch) == ["CreatedEvent", "FreeBusyChangedEvent", "DeletedEvent", "FreeBusyChangedEvent"]
    assert [e.watermark for e in batch.events] == [watermark(ROOM, 2)] * 2 + [watermark(ROOM, 3)] * 2
    assert (batch.previous_watermark, batch.more_events) == (start, False)
    assert batch.events[2].change_key == "ck2"

    # Only the last watermark sent is accepted: not the first one again, not a made-up one.
    for stale in (start, watermark(ROOM, 2), "bm90IGEgd2F0ZXJtYXJr", "%%%"):
        with pytest.raises(SubscriptionError) as caught:
            model.get_events(subscription, stale)
        assert caught.value.code == "ErrorInvalidWatermark"

    # Nothing new: a StatusEvent with the mailbox's current watermark (which the next call must pass).
    status = model.get_events(subscription, watermark(ROOM, 3))
    assert _kinds(status) == ["StatusEvent"]
    assert status.events[0].watermark == watermark(ROOM, 3) == subscription.last_watermark_sent
    model.publish(_change(ChangeKind.MODIFIED))
    assert _kinds(model.get_events(subscription, watermark(ROOM, 3))) == ["ModifiedEvent", "FreeBusyChangedEvent"]


def test_event_types_filter_and_the_watermark_moves_past_unwanted_changes() -> None:
    model = Subscriptions()
    created_only = model.subscribe("pull", WRITER, ROOM, frozenset({"CreatedEvent"}))
    other_room = model.subscribe("pull", WRITER, "room2@example.org", CALENDAR_EVENTS)
    model.publish(_change(ChangeKind.MODIFIED))
    model.publish(_change(ChangeKind.CREATED, "item-2"))
    model.publish(_change(ChangeKind.DELETED))
    batch = model.get_events(created_only, created_only.last_watermark_sent)
    assert [(e.kind, e.item_id) for e in batch.events] == [("CreatedEvent", "item-2")]
    status = model.get_events(created_only, watermark(ROOM, 2))
    assert _kinds(status) == ["StatusEvent"]
    assert status.events[0].watermark == watermark(ROOM, 3)
    assert _kinds(model.get_events(other_room, other_room.last_watermark_sent)) == ["StatusEvent"]


def test_more_events_pages_by_fifty_changes() -> None:
    model = Subscriptions()
    subscription = model.subscribe("pull", WRITER, ROOM, frozenset({"CreatedEvent"}))
    for number in range(PULL_BATCH * 2 + 20):
        model.publish(_change(ChangeKind.CREATED, f"item-{number}"))
    pages = []
    last = subscription.last_watermark_sent
    while True:
        batch = model.get_events(subscription, last)
        pages.append((len(batch.events), batch.more_events))
        last = batch.events[-1].watermark or ""
        if not batch.more_events:
            break
    assert pages == [(50, True), (50, True), (20, False)]


def test_repeated_modifications_collapse_into_the_last_one() -> None:
    model = Subscriptions()
    subscription = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    model.publish(_change(ChangeKind.CREATED, key="k1"))
    for key in ("k2", "k3", "k4"):
        model.publish(_change(ChangeKind.MODIFIED, key=key))
    model.publish(_change(ChangeKind.MODIFIED, "item-2", key="other"))
    batch = model.get_events(subscription, subscription.last_watermark_sent)
    assert [(e.kind, e.item_id, e.change_key) for e in batch.events if e.kind != "FreeBusyChangedEvent"] == [
        ("CreatedEvent", "item-1", "k1"), ("ModifiedEvent", "item-1", "k4"), ("ModifiedEvent", "item-2", "other")]
    assert subscription.last_watermark_sent == watermark(ROOM, 5)


def test_subscribe_from_a_watermark_replays_what_followed() -> None:
    model = Subscriptions(history_size=3)
    first = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    model.publish(_change(ChangeKind.CREATED))
    model.publish(_change(ChangeKind.MODIFIED))
    again = model.subscribe("pull", WRITER, ROOM, frozenset({"ModifiedEvent"}), start=watermark(ROOM, 1))
    assert again.last_watermark_sent == watermark(ROOM, 1)
    assert _kinds(model.get_events(again, watermark(ROOM, 1))) == ["ModifiedEvent"]
    for bad in (watermark("room2@example.org", 1), watermark(ROOM, 9), "garbage"):
        with pytest.raises(SubscriptionError) as caught:
            model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS, start=bad)
        assert caught.value.code == "ErrorInvalidWatermark"
    # Two more changes push the first ones out of the (3 long) event table: too old to start from, and the
    # subscription that has not read them has lost them.
    model.publish(_change(ChangeKind.DELETED))
    model.publish(_change(ChangeKind.CREATED, "item-2"))
    with pytest.raises(SubscriptionError) as caught:
        model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS, start=watermark(ROOM, 0))
    assert caught.value.code == "ErrorInvalidWatermark"
    with pytest.raises(SubscriptionError) as caught:
        model.get_events(first, first.last_watermark_sent)
    assert caught.value.code == "ErrorReadEventsFailed"
    assert first.id not in model.active


def test_a_subscription_belongs_to_its_creator() -> None:
    model = Subscriptions()
    pull = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    streaming = model.subscribe("streaming", WRITER, ROOM, CALENDAR_EVENTS)
    assert model.get(pull.id, Caller("domain\\WRITER")) is pull  # account names are case-insensitive

    def code(subscription_id: str, caller: Caller, kind: Any = None) -> str:
        with pytest.raises(SubscriptionError) as caught:
            model.get(subscription_id, caller, kind)
        return caught.value.code

    assert code(pull.id, Caller("DOMAIN\\reader")) == "ErrorSubscriptionAccessDenied"
    assert code("unknown", WRITER) == "ErrorSubscriptionNotFound"
    assert code(streaming.id, WRITER, "pull") == "ErrorInvalidPullSubscriptionId"
    assert code(pull.id, WRITER, "streaming") == "ErrorInvalidSubscription"
    # Impersonating: a pull subscription belongs to the impersonated mailbox, a streaming one to the account.
    imp_pull = model.subscribe("pull", Caller("imp@example.org", ROOM), ROOM, CALENDAR_EVENTS)
    imp_stream = model.subscribe("streaming", Caller("imp@example.org", ROOM), ROOM, CALENDAR_EVENTS)
    assert model.get(imp_pull.id, Caller("other@example.org", ROOM)) is imp_pull
    assert code(imp_pull.id, Caller("imp@example.org")) == "ErrorSubscriptionAccessDenied"
    assert model.get(imp_stream.id, Caller("imp@example.org")) is imp_stream
    model.unsubscribe(pull.id, WRITER)
    assert code(pull.id, WRITER) == "ErrorSubscriptionNotFound"


def test_subscriptions_expire() -> None:
    model = Subscriptions()
    pull = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS, timeout_minutes=1, now=T0)
    model.get_events(pull, pull.last_watermark_sent, now=T0 + dt.timedelta(seconds=50))  # polling keeps it alive
    assert model.get(pull.id, WRITER, now=T0 + dt.timedelta(seconds=100)) is pull
    with pytest.raises(SubscriptionError) as caught:
        model.get(pull.id, WRITER, now=T0 + dt.timedelta(seconds=111))
    assert caught.value.code == "ErrorExpiredSubscription"
    with pytest.raises(SubscriptionError) as caught:
        model.get(pull.id, WRITER, now=T0 + dt.timedelta(seconds=112))
    assert caught.value.code == "ErrorSubscriptionNotFound"

    streaming = model.subscribe("streaming", WRITER, ROOM, CALENDAR_EVENTS, now=T0)
    connection = model.connect([streaming.id], WRITER, now=T0)
    assert model.get(streaming.id, WRITER, now=T0 + dt.timedelta(hours=2)) is streaming  # connected: alive
    model.disconnect(connection, now=T0 + dt.timedelta(hours=2))
    assert model.get(streaming.id, WRITER, now=T0 + dt.timedelta(hours=2, minutes=29)) is streaming
    with pytest.raises(SubscriptionError):
        model.get(streaming.id, WRITER, now=T0 + dt.timedelta(hours=2, minutes=31))


def test_streaming_connections() -> None:
    model = Subscriptions()
    one = model.subscribe("streaming", WRITER, ROOM, CALENDAR_EVENTS)
    two = model.subscribe("streaming", WRITER, "room2@example.org", frozenset({"DeletedEvent"}))
    pull = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    first = model.connect([one.id, two.id, pull.id, "bogus"], WRITER)
    assert first.subscriptions == [one, two]
    assert model.take_errors(first) == [("ErrorInvalidSubscription", pull.id), ("ErrorSubscriptionNotFound", "bogus")]
    assert not model.has_work(first)

    model.publish(_change(ChangeKind.CREATED))
    model.publish(_change(ChangeKind.CREATED, "gone", mailbox="room2@example.org"))
    model.publish(_change(ChangeKind.DELETED, "gone", mailbox="room2@example.org"))
    assert first.ready.is_set()
    assert model.has_work(first)
    batches, errors = model.take_stream(first)
    assert errors == []
    assert [(b.subscription_id, _kinds(b)) for b in batches] == [
        (one.id, ["CreatedEvent", "FreeBusyChangedEvent"]), (two.id, ["DeletedEvent"])]
    assert all(e.watermark is None for b in batches for e in b.events)  # streaming events carry no watermark
    assert batches[0].previous_watermark is None

    # A new connection takes `one` over; unsubscribing `two` tells the connection serving it.
    second = model.connect([one.id], WRITER)
    assert first.subscriptions == [two]
    assert model.take_errors(first) == [("ErrorNewEventStreamConnectionOpened", one.id)]
    model.unsubscribe(two.id, WRITER)
    assert first.subscriptions == []
    assert model.take_errors(first) == [("ErrorSubscriptionUnsubscribed", two.id)]
    assert model.has_work(first)  # nothing left to serve: it must end
    model.disconnect(first)
    assert one.connection is second


def test_a_stream_takes_at_most_a_hundred_changes_at_a_time() -> None:
    model = Subscriptions()
    subscription = model.subscribe("streaming", WRITER, ROOM, frozenset({"CreatedEvent"}))
    connection = model.connect([subscription.id], WRITER)
    for number in range(STREAM_BATCH + 5):
        model.publish(_change(ChangeKind.CREATED, f"item-{number}"))
    sizes = []
    while model.pending(subscription):
        batches, _ = model.take_stream(connection)
        sizes.append(sum(len(b.events) for b in batches))
    assert sizes == [100, 5]


async def test_wait_wakes_on_a_change_a_timeout_and_shutdown() -> None:
    model = Subscriptions()
    subscription = model.subscribe("streaming", WRITER, ROOM, CALENDAR_EVENTS)
    connection = model.connect([subscription.id], WRITER)
    assert await model.wait(connection, 0.01) is False
    asyncio.get_running_loop().call_soon(model.publish, _change(ChangeKind.CREATED))
    assert await asyncio.wait_for(model.wait(connection, 30), 5) is True
    model.take_stream(connection)
    asyncio.get_running_loop().call_soon(model.shutdown)
    assert await asyncio.wait_for(model.wait(connection, 30), 5) is True
    assert model.closing


def test_the_simulator_state_publishes_every_calendar_change() -> None:
    calendars = Calendars()
    calendars.add_mailbox(ROOM)
    model = Subscriptions()
    calendars.listeners.append(model.publish)
    subscription = model.subscribe("pull", WRITER, ROOM, CALENDAR_EVENTS)
    item = calendars.create(ROOM, StoredItem(id="", change_key="", mailbox=ROOM, subject="x"))
    calendars.update(item.id, None, lambda stored: None)
    calendars.delete(item.id)
    batch = model.get_events(subscription, subscription.last_watermark_sent)
    assert [e.kind for e in batch.events if e.kind != "FreeBusyChangedEvent"] == [
        "CreatedEvent", "ModifiedEvent", "DeletedEvent"]
    assert {e.item_id for e in batch.events} == {item.id}


# -- through exchangelib -------------------------------------------------------------------------------------------

UTC = EWSTimeZone("UTC")


def _on_loop(simulator: EmbeddedSimulator, work: Callable[[SimulatorState], T]) -> T:
    """Runs `work` on the simulator's own loop, where its state lives."""

    async def run() -> T:
        return work(simulator.state)

    result: T = simulator.call(run())
    return result


def _set(simulator: EmbeddedSimulator, **knobs: Any) -> None:
    def apply(state: SimulatorState) -> None:
        for name, value in knobs.items():
            setattr(state.subscriptions, name, value)

    _on_loop(simulator, apply)


def _eventually(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Waits until `condition` holds (checked every 20 ms), failing after `timeout` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.02)


def _create_stored(simulator: EmbeddedSimulator, count: int, mailbox: str = ROOM) -> list[str]:
    """Items created as Outlook would (not through EWS), each a change the subscriptions see."""

    def create(state: SimulatorState) -> list[str]:
        return [state.calendars.create(mailbox, StoredItem(
            id="", change_key="", mailbox=mailbox, subject=f"Outlook {number}",
            start=dt.datetime(2031, 3, 10, 9, tzinfo=dt.UTC), end=dt.datetime(2031, 3, 10, 10, tzinfo=dt.UTC),
            origin="outlook")).id for number in range(count)]

    return _on_loop(simulator, create)


def _booking(room: Any, subject: str = "Booking") -> CalendarItem:
    item = CalendarItem(folder=room.calendar, subject=subject, start=EWSDateTime(2031, 3, 10, 9, tzinfo=UTC),
                        end=EWSDateTime(2031, 3, 10, 10, tzinfo=UTC), legacy_free_busy_status="Busy")
    item.save(send_meeting_invitations=SEND_TO_NONE)
    return item


def _calendar(room: Any, smtp: str) -> Calendar:
    return Calendar(root=Root(account=room), _distinguished_id=DistinguishedFolderId(
        id="calendar", mailbox=Mailbox(email_address=smtp)))


def _described(notification: Any) -> list[tuple[str, str | None]]:
    return [(type(event).__name__, event.item_id.id if getattr(event, "item_id", None) else None)
            for event in notification.events]


class StreamLog:
    """What the simulator streamed (each envelope as OK, Closed, Notifications or its error code), to wait on."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, operation: str, payload: bytes) -> None:
        if operation != "GetStreamingEvents":
            return
        message = etree.fromstring(payload).find(f".//{{{M}}}GetStreamingEventsResponseMessage")
        assert message is not None
        status = message.findtext(f"{{{M}}}ConnectionStatus")
        has_notifications = message.find(f"{{{M}}}Notifications") is not None
        summary = status or ("Notifications" if has_notifications else message.findtext(f"{{{M}}}ResponseCode"))
        with self._changed:
            self.bodies.append(summary or "?")
            self._changed.notify_all()

    def wait_for(self, body: str, count: int = 1, timeout: float = 10) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.bodies.count(body) >= count, timeout), (body, self.bodies)


@pytest.fixture
def stream_log(simulator: EmbeddedSimulator) -> StreamLog:
    log = StreamLog()
    _on_loop(simulator, lambda state: state.response_observers.append(log))
    return log


class Streamer:
    """Reads a stream on its own thread (exchangelib blocks until the stream ends)."""

    def __init__(self, calendar: Any, subscription_id: str, **kwargs: Any) -> None:
        self.notifications: list[Any] = []
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(calendar, subscription_id, kwargs), daemon=True)
        self._thread.start()

    def _read(self, calendar: Any, subscription_id: str, kwargs: dict[str, Any]) -> None:
        try:
            for notification in calendar.get_streaming_events(subscription_id, connection_timeout=1, **kwargs):
                self.notifications.append(notification)
        except Exception as failure:  # handed to the test thread
            self.failure = failure

    def join(self, timeout: float = 10) -> Streamer:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        return self


@pytest.fixture(autouse=True)
def _short_streams(simulator: EmbeddedSimulator) -> None:
    # ConnectionTimeout is whole minutes; tests end streams after a few seconds and send heartbeats often.
    _set(simulator, max_stream_seconds=5.0, heartbeat_seconds=0.2)


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_pull_tells_creates_updates_and_deletes(account: AccountFactory, simulator: EmbeddedSimulator,
                                                auth: str) -> None:
    room = account(auth=auth)
    subscription_id, start = room.calendar.subscribe_to_pull(timeout=10)
    item = _booking(room)
    created_key = item.changekey
    item.subject = "Booking (moved)"
    item.save(update_fields=["subject"], send_meeting_invitations=SEND_TO_NONE)
    item_id, modified_key = item.id, item.changekey
    item.delete(send_meeting_cancellations=SEND_TO_NONE)

    notification = next(room.calendar.get_events(subscription_id, start))
    assert notification.subscription_id == subscription_id
    assert (notification.previous_watermark, notification.more_events) == (start, False)
    assert _described(notification) == [
        ("CreatedEvent", item_id), ("FreeBusyChangedEvent", item_id), ("ModifiedEvent", item_id),
        ("FreeBusyChangedEvent", item_id), ("DeletedEvent", item_id), ("FreeBusyChangedEvent", item_id)]
    created, _, modified, *_ = notification.events
    assert (created.item_id.changekey, modified.item_id.changekey) == (created_key, modified_key)
    assert created.parent_folder_id.id == room.calendar.id
    assert created.timestamp is not None
    assert created.watermark != start
    last = notification.events[-1].watermark

    # Nothing since: one StatusEvent whose watermark the next poll passes.
    status = next(room.calendar.get_events(subscription_id, last))
    assert _described(status) == [("StatusEvent", None)]
    _create_stored(simulator, 1)
    later = next(room.calendar.get_events(subscription_id, status.events[0].watermark))
    assert [name for name, _ in _described(later)] == ["CreatedEvent", "FreeBusyChangedEvent"]
    # Passing an older watermark is refused, as Exchange does.
    with pytest.raises(ErrorInvalidWatermark):
        next(room.calendar.get_events(subscription_id, start))
    assert room.calendar.unsubscribe(subscription_id) is True

    # A new subscription from an old watermark is told everything since.
    replay_id, replay_start = room.calendar.subscribe_to_pull(watermark=start, event_types=["DeletedEvent"])
    assert replay_start == start
    replayed = next(room.calendar.get_events(replay_id, replay_start))
    assert _described(replayed) == [("DeletedEvent", item_id)]
    with pytest.raises(ErrorInvalidWatermark):
        room.calendar.subscribe_to_pull(watermark="bm90IG9uZSBvZiBvdXJz")


def test_more_events_pages_and_what_exchangelibs_own_loop_does(account: AccountFactory,
                                                               simulator: EmbeddedSimulator) -> None:
    room = account()
    subscription_id, start = room.calendar.subscribe_to_pull(event_types=["CreatedEvent"])
    created = _create_stored(simulator, PULL_BATCH * 2 + 7)
    seen: list[str] = []
    pages: list[bool] = []
    last = start
    while True:  # the way to page: pass the watermark of the last event received
        notification = next(room.calendar.get_events(subscription_id, last))
        seen += [event.item_id.id for event in notification.events]
        pages.append(notification.more_events)
        last = notification.events[-1].watermark
        if not notification.more_events:
            break
    assert pages == [True, True, False]
    assert seen == created

    # exchangelib's get_events() loops on MoreEvents but sends its first watermark again: Exchange refuses that.
    _create_stored(simulator, PULL_BATCH + 1)
    exchangelib_pages = room.calendar.get_events(subscription_id, last)
    first = next(exchangelib_pages)
    assert (len(first.events), first.more_events) == (PULL_BATCH, True)
    with pytest.raises(ErrorInvalidWatermark):
        next(exchangelib_pages)


def test_unsubscribe_then_the_subscription_is_gone(account: AccountFactory) -> None:
    room = account()
    subscription_id, start = room.calendar.subscribe_to_pull()
    assert room.calendar.unsubscribe(subscription_id) is True
    with pytest.raises(ErrorSubscriptionNotFound):
        next(room.calendar.get_events(subscription_id, start))
    with pytest.raises(ErrorSubscriptionNotFound):
        room.calendar.unsubscribe(subscription_id)


def test_only_the_creator_can_use_a_subscription(account: AccountFactory) -> None:
    mine = account(user="DOMAIN\\writer")
    theirs = account(user="DOMAIN\\reader")
    subscription_id, start = mine.calendar.subscribe_to_pull()
    streaming_id = mine.calendar.subscribe_to_streaming()
    with pytest.raises(ErrorSubscriptionAccessDenied):
        next(theirs.calendar.get_events(subscription_id, start))
    with pytest.raises(ErrorSubscriptionAccessDenied):
        theirs.calendar.unsubscribe(subscription_id)
    with pytest.raises(ErrorSubscriptionAccessDenied):
        list(theirs.calendar.get_streaming_events(streaming_id, connection_timeout=1))
    assert _described(next(mine.calendar.get_events(subscription_id, start))) == [("StatusEvent", None)]
    with pytest.raises(ErrorInvalidPullSubscriptionId):
        next(mine.calendar.get_events(streaming_id, start))
    with pytest.raises(ErrorInvalidSubscription):
        list(mine.calendar.get_streaming_events(subscription_id, connection_timeout=1))


def test_subscribing_needs_read_access_to_an_existing_mailbox(account: AccountFactory) -> None:
    free_busy_only = account(user="DOMAIN\\fbonly")
    calendar = Calendar.resolve(account=free_busy_only, folder=_calendar(free_busy_only, ROOM))  # a FolderId
    with pytest.raises(ErrorAccessDenied):
        calendar.subscribe_to_pull()
    with pytest.raises(ErrorAccessDenied):
        calendar.subscribe_to_streaming()
    room = account()
    with pytest.raises(ErrorNonExistentMailbox):
        SubscribeToPull(account=room).get(
            folders=[DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address="nobody@example.org"))],
            event_types=["CreatedEvent"], watermark=None, timeout=10)
    reader = account(user="DOMAIN\\reader")
    assert reader.calendar.subscribe_to_pull()[0]


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_impersonation_and_the_delegate_access_option(account: AccountFactory, simulator: EmbeddedSimulator,
                                                      auth: str) -> None:
    _set(simulator, refuse_delegate_access=True)
    room = account(ROOM, user="imp@example.org", auth=auth, access=IMPERSONATION)
    subscription_id, start = room.calendar.subscribe_to_pull()
    item = _booking(room)
    notification = next(room.calendar.get_events(subscription_id, start))
    assert _described(notification)[0] == ("CreatedEvent", item.id)
    delegate = account(ROOM, user="DOMAIN\\writer", auth=auth)
    with pytest.raises(ErrorSubscriptionDelegateAccessNotSupported):
        delegate.calendar.subscribe_to_pull()
    _set(simulator, refuse_delegate_access=False)
    assert delegate.calendar.subscribe_to_streaming()


def test_subscribe_to_all_folders_of_the_own_mailbox(account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    room = account(ROOM, user="imp@example.org", access=IMPERSONATION)
    subscription_id, start = SubscribeToPull(account=room).get(
        folders=None, event_types=["CreatedEvent"], watermark=None, timeout=10)
    [created] = _create_stored(simulator, 1)
    assert _described(next(room.calendar.get_events(subscription_id, start))) == [("CreatedEvent", created)]
    delegate = account(ROOM, user="DOMAIN\\writer")  # a service account without a mailbox of its own
    with pytest.raises(ErrorNonExistentMailbox):
        SubscribeToPull(account=delegate).get(folders=None, event_types=["CreatedEvent"], watermark=None, timeout=10)


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_streaming_tells_changes_as_they_happen(account: AccountFactory, simulator: EmbeddedSimulator,
                                                stream_log: StreamLog, auth: str) -> None:
    room = account(auth=auth)
    subscription_id = room.calendar.subscribe_to_streaming()
    streamer = Streamer(room.calendar, subscription_id, max_notifications_returned=1)
    stream_log.wait_for("OK")  # connected
    item = _booking(room)
    streamer.join()
    assert streamer.failure is None
    [notification] = streamer.notifications
    assert notification.subscription_id == subscription_id
    assert _described(notification) == [("CreatedEvent", item.id), ("FreeBusyChangedEvent", item.id)]
    assert notification.events[0].watermark is None  # Exchange streams no watermarks
    assert notification.events[0].item_id.changekey == item.changekey
    # exchangelib hung up after one notification: the subscription is free for the next connection.
    _eventually(lambda: _on_loop(simulator, lambda state: state.subscriptions.active[subscription_id].connection)
                is None, "the connection to be released")


def test_a_stream_ends_with_closed_when_its_time_is_up(account: AccountFactory, simulator: EmbeddedSimulator,
                                                       stream_log: StreamLog) -> None:
    _set(simulator, max_stream_seconds=1.0)
    room = account()
    subscription_id = room.calendar.subscribe_to_streaming(event_types=["CreatedEvent"])
    created = _create_stored(simulator, 2)  # before the connection: told when it opens
    notifications = list(room.calendar.get_streaming_events(subscription_id, connection_timeout=1))
    assert [[event.item_id.id for event in n.events] for n in notifications] == [created]
    assert stream_log.bodies[0] == "OK"
    assert stream_log.bodies[1] == "Notifications"
    assert stream_log.bodies[-1] == "Closed"
    assert set(stream_log.bodies[2:-1]) <= {"OK"}  # heartbeats
    # The subscription outlives the connection: the next stream tells what happened in between.
    later = _create_stored(simulator, 1)
    notifications = list(room.calendar.get_streaming_events(subscription_id, connection_timeout=1))
    assert [[event.item_id.id for event in n.events] for n in notifications] == [later]


def test_streaming_an_unknown_subscription(account: AccountFactory, stream_log: StreamLog) -> None:
    room = account()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(room.calendar.get_streaming_events("bogus", connection_timeout=1))
    stream_log.wait_for("Closed")
    assert stream_log.bodies == ["ErrorSubscriptionNotFound", "Closed"]


def test_unsubscribing_ends_the_stream(account: AccountFactory, stream_log: StreamLog) -> None:
    room = account()
    subscription_id = room.calendar.subscribe_to_streaming()
    streamer = Streamer(room.calendar, subscription_id)
    stream_log.wait_for("OK")
    room.calendar.unsubscribe(subscription_id)
    streamer.join()
    # Exchange says ErrorSubscriptionUnsubscribed; exchangelib 5.6.0 misspells that class, so it cannot map it.
    assert isinstance(streamer.failure, TransportError)
    assert "ErrorSubscriptionUnsubscribed" in str(streamer.failure)
    stream_log.wait_for("Closed")
    assert stream_log.bodies[-2:] == ["ErrorSubscriptionUnsubscribed", "Closed"]


def test_a_second_connection_takes_the_subscription_over(account: AccountFactory, stream_log: StreamLog) -> None:
    room = account()
    subscription_id = room.calendar.subscribe_to_streaming()
    first = Streamer(room.calendar, subscription_id)
    stream_log.wait_for("OK")
    second = Streamer(room.calendar, subscription_id, max_notifications_returned=1)
    first.join()
    assert isinstance(first.failure, ErrorNewEventStreamConnectionOpened)
    item = _booking(room)
    second.join()
    assert second.failure is None
    assert _described(second.notifications[0])[0] == ("CreatedEvent", item.id)


def test_streams_end_promptly_when_the_server_shuts_down(account: AccountFactory, simulator: EmbeddedSimulator,
                                                        stream_log: StreamLog) -> None:
    _set(simulator, max_stream_seconds=None, heartbeat_seconds=45.0)  # nothing else would end this stream
    room = account()
    streamer = Streamer(room.calendar, room.calendar.subscribe_to_streaming())
    stream_log.wait_for("OK")
    _on_loop(simulator, lambda state: state.subscriptions.shutdown())
    streamer.join(timeout=5)
    assert streamer.failure is None
    assert streamer.notifications == []
    assert stream_log.bodies == ["OK", "Closed"]
