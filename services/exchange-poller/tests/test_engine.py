"""The engine's decisions with a fake gateway and store (no infra): what a catalog change drops, what a room's
failure leaves standing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from spacesync.common.events import ExchangeConnection, FreeBusyState, LocationState, SpaceState
from spacesync.common.events.catalog import OpeningHours
from spacesync.common.exchange import BusyTime, CalendarEntry, ConnectionProblem, ExchangeError, ExchangeServer
from spacesync.common.secrets import SecretBox, generate_key
from spacesync.exchange_poller import store
from spacesync.exchange_poller.domain import MAX_PICTURE_BYTES
from spacesync.exchange_poller.engine import Poller
from spacesync.exchange_poller.reads import ReadMode
from spacesync.exchange_poller.store import RoomRecord
from spacesync.exchange_poller.watches import Watches
from spacesync.testing import wait_until

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
SECRETS = SecretBox(generate_key())
ALL_DAY = OpeningHours.model_validate({day: [{"open": "00:00", "close": "24:00"}] for day in OpeningHours.WEEKDAYS})


class FakeConn:
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class FakeDb:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield FakeConn()


class FakeGateway:
    def __init__(self) -> None:
        self.forgotten: list[ExchangeServer] = []
        self.entries: dict[str, list[CalendarEntry] | ExchangeError] = {}
        self.busy: dict[str, list[BusyTime]] = {}

    def forget(self, server: ExchangeServer) -> None:
        self.forgotten.append(server)

    async def view(self, server: ExchangeServer, mailbox: str, start: datetime, end: datetime, *,
                   organizer: bool = True) -> list[CalendarEntry]:
        found = self.entries.get(mailbox, [])
        if isinstance(found, ExchangeError):
            raise found
        return found

    async def free_busy(self, server: ExchangeServer, mailboxes: Sequence[str], start: datetime, end: datetime,
                        ) -> dict[str, list[BusyTime] | ExchangeError]:
        return {mailbox: list(self.busy.get(mailbox, [])) for mailbox in mailboxes}


class FakeStore:
    """The store functions the engine calls, in memory; `broken` spaces fail to publish (a database error)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.locations: list[LocationState] = []
        self.spaces: list[SpaceState] = []
        self.published: list[FreeBusyState] = []
        self.broken: set[str] = set()
        self.recording = asyncio.Event()  # a read's outcome (an error) is being recorded
        self.errors_held: asyncio.Event | None = None  # recording waits for it
        for name in ("catalog", "room_records", "publish", "record_read", "first_seen"):
            monkeypatch.setattr(store, name, getattr(self, name))

    async def catalog(self, conn: Any) -> tuple[list[LocationState], list[SpaceState]]:
        return list(self.locations), list(self.spaces)

    async def room_records(self, conn: Any) -> dict[str, RoomRecord]:
        return {}

    async def publish(self, conn: Any, state: FreeBusyState, digest: str, items_digest: str | None,
                      read_mode: str | None) -> RoomRecord:
        if state.space_id in self.broken:
            raise ConnectionError("the database went away")
        self.published.append(state)
        return RoomRecord(state.location_id, state.mailbox, digest, items_digest, state.sequence, None)

    async def record_read(self, conn: Any, space_id: str, location_id: str, **_: Any) -> None:
        self.recording.set()
        if self.errors_held is not None:
            await self.errors_held.wait()

    async def first_seen(self, conn: Any, space_id: str, item_ids: set[str], now: datetime) -> dict[str, datetime]:
        return {item_id: now for item_id in item_ids}


def location(location_id: str = "loc-1", *, version: int = 1, rotated: bool = False, **options: Any) -> LocationState:
    return LocationState(location_id=location_id, version=version, name="Main Library", timezone="UTC",
                         updated_at=NOW, exchange=ExchangeConnection(
                             server="https://mail.example.org", username="svc",
                             password_encrypted=SECRETS.encrypt("new" if rotated else "pw"), **options))


def space(space_id: str, mailbox: str, location_id: str = "loc-1") -> SpaceState:
    return SpaceState(space_id=space_id, location_id=location_id, category_id="cat-1", version=1, name=space_id,
                      slot_minutes=30, max_booking_minutes=240, opening_hours=ALL_DAY, updated_at=NOW,
                      exchange_resource=mailbox, paired_at=NOW)


def entry(item_id: str, hour: int, organizer: str | None = None) -> CalendarEntry:
    start = NOW.replace(hour=hour, minute=0) + timedelta(days=1)
    return CalendarEntry(item_id=item_id, start=start, end=start + timedelta(hours=1), subject="Meeting",
                         busy_status="Busy", organizer=organizer, slot_id=None, booking_id=None)


def poller(gateway: FakeGateway, clock: Callable[[], datetime] = lambda: NOW) -> Poller:
    return Poller(FakeDb(), gateway, SECRETS, Watches(None, lambda mailbox: None),  # type: ignore[arg-type]
                  clock=clock)


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    return FakeStore(monkeypatch)


async def test_saving_location_options_that_keep_the_credentials_keeps_the_server(fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    first = location()
    fake_store.locations, fake_store.spaces = [first], [space("s1", "room1@example.org")]
    engine.catalog_changed()
    await engine.catch_up()

    # The names option turned on, a connection test passed: the same server and credentials.
    assert first.exchange is not None
    fake_store.locations = [first.model_copy(update={"version": 2, "exchange": first.exchange.model_copy(update={
        "populate_organizer": True, "populate_organizer_since": NOW, "verified_at": NOW})})]
    engine.catalog_changed()
    await engine.catch_up()
    assert gateway.forgotten == []

    # New credentials: the old server's cached connections go.
    fake_store.locations = [location(version=3, rotated=True)]
    engine.catalog_changed()
    await engine.catch_up()
    assert [server.password for server in gateway.forgotten] == ["pw"]


async def test_a_room_that_cannot_be_published_never_stops_the_others(fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    fake_store.locations = [location()]
    fake_store.spaces = [space("broken", "room1@example.org"), space("fine", "room2@example.org")]
    gateway.entries["room1@example.org"] = [entry("a", 9)]
    # room2 grants free/busy only: its view is refused and it joins a free/busy batch of the same read.
    gateway.entries["room2@example.org"] = ExchangeError(ConnectionProblem.ACCESS_DENIED, "free/busy only")
    gateway.busy["room2@example.org"] = [BusyTime(NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1),
                                                  "Busy", None)]
    fake_store.broken = {"broken"}
    engine.catalog_changed()

    await engine.catch_up()

    assert [state.space_id for state in fake_store.published] == ["fine"]
    assert len(fake_store.published[0].busy) == 1
    assert engine.read_mode("fine") is ReadMode.FREE_BUSY
    assert engine.last_error("broken") is not None
    assert engine.sequence("broken") is None


async def test_an_organizer_name_with_control_characters_is_published_cleaned(fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    fake_store.locations = [location(populate_organizer=True, populate_organizer_since=NOW - timedelta(days=1))]
    fake_store.spaces = [space("s1", "room1@example.org")]
    gateway.entries["room1@example.org"] = [entry("a", 9, organizer="Ada\x7fLovelace\x00")]
    engine.catalog_changed()

    await engine.catch_up()

    assert [[period.organizer for period in state.busy] for state in fake_store.published] == [["Ada Lovelace"]]


async def test_a_room_read_through_free_busy_tries_the_view_again_once_rights_come_back(
        fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    clock = [NOW]
    engine = poller(gateway, clock=lambda: clock[0])
    fake_store.locations, fake_store.spaces = [location()], [space("s1", "room1@example.org")]
    gateway.entries["room1@example.org"] = ExchangeError(ConnectionProblem.ACCESS_DENIED, "free/busy only")
    ours = entry("ours", 9)
    gateway.busy["room1@example.org"] = [BusyTime(ours.start, ours.end, "Busy", None)]  # our writer's appointment
    engine.catalog_changed()
    await engine.catch_up()
    assert engine.read_mode("s1") is ReadMode.FREE_BUSY

    # Editor rights granted again: the view shows the appointment is ours (stamped), free/busy cannot.
    gateway.entries["room1@example.org"] = [replace(ours, slot_id="source/booking/slot")]
    clock[0] = NOW + timedelta(minutes=5)
    await engine.reconcile()
    assert engine.read_mode("s1") is ReadMode.FREE_BUSY  # not asked on every read

    clock[0] = NOW + timedelta(hours=2)
    await engine.reconcile()
    assert engine.read_mode("s1") is ReadMode.VIEW
    assert [len(state.busy) for state in fake_store.published] == [1, 0]


async def test_a_failed_read_recorded_while_another_read_published_keeps_the_newer_picture(
        fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    fake_store.locations, fake_store.spaces = [location()], [space("s1", "room1@example.org")]
    first, second = entry("a", 9), entry("b", 11)
    gateway.entries["room1@example.org"] = [first]
    engine.catalog_changed()
    await engine.catch_up()
    room = engine.rooms["s1"]

    # A read fails (throttled) and its error is being recorded when another read publishes a second meeting.
    fake_store.errors_held = asyncio.Event()
    gateway.entries["room1@example.org"] = ExchangeError(ConnectionProblem.THROTTLED, "busy server")
    failing = asyncio.create_task(engine.read([room]))
    await fake_store.recording.wait()
    gateway.entries["room1@example.org"] = [first, second]
    await engine.read([room])
    fake_store.errors_held.set()
    assert await failing == 1

    # The second meeting is cancelled: the picture goes back to the first one, and that is news to readers.
    gateway.entries["room1@example.org"] = [first]
    await engine.read([room])
    assert [len(state.busy) for state in fake_store.published] == [1, 2, 1]


async def test_a_room_never_read_successfully_shows_its_picture_age_growing(fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    clock = [NOW]
    engine = poller(gateway, clock=lambda: clock[0])
    fake_store.locations = [location()]
    fake_store.spaces = [space("gone-mailbox", "nobody@example.org"), space("fine", "room2@example.org")]
    gateway.entries["nobody@example.org"] = ExchangeError(ConnectionProblem.MAILBOX_NOT_FOUND, "no such mailbox")
    engine.catalog_changed()
    await engine.catch_up()

    clock[0] = NOW + timedelta(minutes=10)
    engine.refresh_gauges()
    assert REGISTRY.get_sample_value("spacesync_poller_picture_age_seconds", {"space_id": "gone-mailbox"}) == 600
    assert REGISTRY.get_sample_value("spacesync_poller_picture_age_seconds", {"space_id": "fine"}) == 600

    fake_store.spaces = [space("fine", "room2@example.org")]  # unpaired: its gauge goes
    engine.catalog_changed()
    await engine.catch_up()
    engine.refresh_gauges()
    assert REGISTRY.get_sample_value("spacesync_poller_picture_age_seconds", {"space_id": "gone-mailbox"}) is None


class ClosingWatch:
    """A calendar watch whose close (unsubscribing through its server) waits for `unsubscribed`."""

    def __init__(self, server: ExchangeServer, unsubscribed: asyncio.Event) -> None:
        self.server = server
        self.unsubscribed = unsubscribed
        self.stopped = asyncio.Event()
        self.closed = False

    def watch(self, mailboxes: Collection[str]) -> None:
        pass

    async def run(self) -> None:
        await self.stopped.wait()

    def mode(self, mailbox: str) -> str:
        return "streaming"

    @property
    def problems(self) -> Mapping[str, ExchangeError]:
        return {}

    async def close(self) -> None:
        await self.unsubscribed.wait()
        self.closed = True
        self.stopped.set()


async def test_new_credentials_forget_the_old_server_only_after_its_watch_unsubscribed(
        fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    unsubscribed = asyncio.Event()
    made: list[ClosingWatch] = []

    def factory(server: ExchangeServer, on_change: Callable[[str], None]) -> ClosingWatch:
        made.append(ClosingWatch(server, unsubscribed))
        return made[-1]

    watches = Watches(factory, lambda mailbox: None)
    engine = Poller(FakeDb(), gateway, SECRETS, watches, clock=lambda: NOW)  # type: ignore[arg-type]
    fake_store.locations, fake_store.spaces = [location()], [space("s1", "room1@example.org")]
    engine.catalog_changed()
    await engine.catch_up()

    fake_store.locations = [location(version=2, rotated=True)]
    engine.catalog_changed()
    await engine.catch_up()
    # The old watch still unsubscribes with the old server: forgetting it now would make the gateway open it again
    # (and keep it for good).
    assert gateway.forgotten == []

    unsubscribed.set()
    await wait_until(lambda: gateway.forgotten, timeout=5, message="the old server forgotten")
    assert made[0].closed
    assert [server.password for server in gateway.forgotten] == ["pw"]
    await watches.close()


async def test_a_space_paired_to_another_mailbox_that_cannot_be_read_drops_the_old_mailbox_s_picture(
        fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    fake_store.locations, fake_store.spaces = [location()], [space("s1", "room1@example.org")]
    gateway.entries["room1@example.org"] = [entry("a", 9)]
    engine.catalog_changed()
    await engine.catch_up()

    # Paired again, to a mailbox the account may not read: room1's meetings are no longer this space's.
    gateway.entries["room2@example.org"] = ExchangeError(ConnectionProblem.MAILBOX_NOT_FOUND, "no such mailbox")
    fake_store.spaces = [space("s1", "room2@example.org").model_copy(update={"version": 2})]
    engine.catalog_changed()
    await engine.catch_up()
    await engine.reconcile()  # failing again publishes nothing more

    assert [(state.mailbox, len(state.busy)) for state in fake_store.published] == [
        ("room1@example.org", 1), (None, 0)]
    assert fake_store.published[1].sequence > fake_store.published[0].sequence
    assert (engine.last_error("s1") or "").startswith("mailbox_not_found")

    gateway.entries["room2@example.org"] = [entry("b", 11)]
    await engine.reconcile()
    assert [(state.mailbox, len(state.busy)) for state in fake_store.published][-1] == ("room2@example.org", 1)


async def test_a_room_with_notifications_whose_read_failed_is_read_again_at_the_next_poll(
        fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    closed = asyncio.Event()
    closed.set()
    watches = Watches(lambda server, on_change: ClosingWatch(server, closed), lambda mailbox: None)
    engine = Poller(FakeDb(), gateway, SECRETS, watches, clock=lambda: NOW)  # type: ignore[arg-type]
    fake_store.locations, fake_store.spaces = [location()], [space("s1", "room1@example.org")]
    gateway.entries["room1@example.org"] = ExchangeError(ConnectionProblem.THROTTLED, "busy server")
    engine.catalog_changed()
    await engine.catch_up()  # the notification's read is throttled
    assert engine.notification_mode("room1@example.org") == "streaming"

    gateway.entries["room1@example.org"] = [entry("a", 9)]
    await engine.poll()  # not a whole reconciliation later

    assert [len(state.busy) for state in fake_store.published] == [1]
    assert engine.last_error("s1") is None
    await watches.close()


def back_to_back(count: int, *, gap: timedelta = timedelta(0)) -> list[CalendarEntry]:
    start = NOW + timedelta(days=1)
    return [CalendarEntry(item_id=f"i{n}", start=start + n * (timedelta(minutes=15) + gap),
                          end=start + n * (timedelta(minutes=15) + gap) + timedelta(minutes=15), subject=None,
                          busy_status="Busy", organizer=None, slot_id=None, booking_id=None) for n in range(count)]


async def test_a_picture_too_large_for_one_kafka_message_is_merged_or_not_published(fake_store: FakeStore) -> None:
    gateway = FakeGateway()
    engine = poller(gateway)
    fake_store.locations = [location()]
    fake_store.spaces = [space("packed", "room1@example.org"), space("scattered", "room2@example.org"),
                         space("fine", "room3@example.org")]
    gateway.entries["room1@example.org"] = back_to_back(11_500)  # 15-minute meetings around the clock
    gateway.entries["room2@example.org"] = back_to_back(11_500, gap=timedelta(minutes=1))
    gateway.entries["room3@example.org"] = [entry("a", 9)]
    engine.catalog_changed()

    await engine.catch_up()

    published = {state.space_id: state for state in fake_store.published}
    assert sorted(published) == ["fine", "packed"]  # nothing the outbox relay could never send
    assert [(p.start, p.end) for p in published["packed"].busy] == [
        (NOW + timedelta(days=1), NOW + timedelta(days=1, minutes=15 * 11_500))]
    assert len(published["packed"].model_dump_json()) <= MAX_PICTURE_BYTES
    assert "too large" in (engine.last_error("scattered") or "")
