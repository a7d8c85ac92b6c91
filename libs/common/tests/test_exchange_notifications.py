"""CalendarWatch (streaming and pull subscriptions) with real exchangelib against the EWS simulator."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
from exchangelib import close_connections
from exchangelib.errors import ErrorSubscriptionDelegateAccessNotSupported, ErrorSubscriptionNotFound, TransportError
from prometheus_client import REGISTRY

from spacesync.common.events.catalog import ExchangeAccess
from spacesync.common.exchange import (
    ConnectionProblem,
    DelegateSubscriptionRefused,
    ExchangeGateway,
    ExchangeServer,
    GatewaySettings,
)
from spacesync.common.exchange.errors import Call, classify
from spacesync.common.exchange.notifications import CalendarWatch, WatchSettings
from spacesync.common.exchange.subscriptions import code_of, lost
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.notifications import Caller
from spacesync.exchange_simulator.seed import Access, Seed
from spacesync.exchange_simulator.state import SimulatorState
from spacesync.testing import wait_until
from spacesync.testing.exchange import (
    IMPERSONATOR,
    PASSWORD,
    WRITER,
    SchemaCheck,
    SimulatorAdmin,
    room,
    rooms_seed,
)

T = TypeVar("T")
DENIED = room(5)  # the writer has no right at all on this one
NOBODY = "nobody@rooms.example.org"
MONDAY = dt.datetime(2030, 3, 4, tzinfo=dt.UTC)


def at(hours: float) -> dt.datetime:
    return MONDAY + dt.timedelta(hours=hours)


# -- pure ---------------------------------------------------------------------------------------------------------


def test_back_off_doubles_up_to_the_maximum() -> None:
    settings = WatchSettings(resubscribe_backoff_seconds=2, resubscribe_backoff_max_seconds=10)
    assert [settings.back_off(failures) for failures in (1, 2, 3, 4)] == [2, 4, 8, 10]


def test_lost_subscriptions_are_told_apart_from_other_errors() -> None:
    assert lost(ErrorSubscriptionNotFound("gone")) is not None
    # exchangelib 5.6.0 has no class for ErrorSubscriptionUnsubscribed: it is a TransportError naming the code.
    unsubscribed = TransportError("Unknown ResponseCode in ResponseMessage: ErrorSubscriptionUnsubscribed (...)")
    assert code_of(unsubscribed) == "ErrorSubscriptionUnsubscribed"
    assert lost(unsubscribed) is not None
    assert lost(TransportError("something else")) is None


def test_delegate_access_refused_is_a_problem_of_its_own_and_not_transient() -> None:
    server = ExchangeServer(endpoint="https://mail.example.org/EWS/Exchange.asmx", username="LIBRARY\\svc",
                            password="pw-secret")
    refused = ErrorSubscriptionDelegateAccessNotSupported("Subscriptions are not supported for delegate user access.")
    mapped = classify(refused, Call(server, "subscribe", "room@example.org"))
    assert isinstance(mapped, DelegateSubscriptionRefused)
    assert not mapped.transient
    assert mapped.message.startswith("Exchange at mail.example.org:443 refuses calendar notifications to "
                                     "'LIBRARY\\svc'")
    assert "pw-secret" not in mapped.message


# -- against the simulator ----------------------------------------------------------------------------------------


def seed() -> Seed:
    made = rooms_seed(8)
    made.accounts[0].rights[DENIED] = Access.NONE
    return made


@pytest.fixture
def simulator() -> Iterator[EmbeddedSimulator]:
    check = SchemaCheck()
    with EmbeddedSimulator(seed()) as sim:
        sim.state.response_observers.append(check)
        # Heartbeats often, so a stream thread never sits long in a read.
        on_loop(sim, lambda state: setattr(state.subscriptions, "heartbeat_seconds", 0.5))
        yield sim
    assert not check.failures, "\n".join(check.failures)


def on_loop(sim: EmbeddedSimulator, work: Callable[[SimulatorState], T]) -> T:
    """Runs `work` on the simulator's event loop (its state is only touched there)."""
    async def run() -> T:
        return work(sim.state)
    result: T = sim.call(run())
    return result


@pytest.fixture
async def admin(simulator: EmbeddedSimulator) -> AsyncIterator[SimulatorAdmin]:
    client = SimulatorAdmin(simulator)
    yield client
    await client.close()


@pytest.fixture
async def gateway() -> AsyncIterator[ExchangeGateway]:
    # One connection per server: a stream on the gateway's sessions would starve every other call.
    made = ExchangeGateway(GatewaySettings(timeout_seconds=10.0, max_connections=1, worker_threads=2))
    yield made
    await made.close()
    close_connections()


def fast(**changes: Any) -> WatchSettings:
    return WatchSettings(**{"pull_interval_seconds": 0.2, "resubscribe_backoff_seconds": 0.1,
                            "resubscribe_backoff_max_seconds": 1.0, **changes})


class Watching:
    """A CalendarWatch running in a task, with what it reported."""

    def __init__(self, gateway: ExchangeGateway, sim: EmbeddedSimulator, settings: WatchSettings,
                 server: ExchangeServer | None = None) -> None:
        self.changes: list[str] = []
        server = server or ExchangeServer(endpoint=sim.ews_url, username=WRITER, password=PASSWORD)
        self.watch = CalendarWatch(gateway, server, self.changes.append, settings)
        self.task: asyncio.Task[None] | None = None

    def start(self, *mailboxes: str) -> Watching:
        self.watch.watch(mailboxes)
        self.task = asyncio.create_task(self.watch.run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.watch.close()

    async def reported(self, mailbox: str, message: str) -> None:
        """Waits until `mailbox` is reported, then forgets what was reported."""
        await wait_until(lambda: mailbox in self.changes, timeout=10, message=message)
        self.changes.clear()


@pytest.fixture
async def watching(gateway: ExchangeGateway, simulator: EmbeddedSimulator) -> AsyncIterator[
        Callable[..., Watching]]:
    made: list[Watching] = []

    def make(settings: WatchSettings, server: ExchangeServer | None = None) -> Watching:
        made.append(Watching(gateway, simulator, settings, server))
        return made[-1]

    yield make
    for watching_ in made:
        await watching_.stop()


def subscriptions_of(sim: EmbeddedSimulator, mailbox: str) -> list[Any]:
    return on_loop(sim, lambda state: [s for s in state.subscriptions.active.values() if s.mailbox == mailbox])


def simulator_requests(sim: EmbeddedSimulator, operation: str, outcome: str) -> int:
    """EWS requests the simulator answered with this operation and (first) response code."""
    return int(sum(found.value for metric in sim.state.metrics.requests.collect() for found in metric.samples
                   if found.name.endswith("_total") and found.labels["operation"] == operation
                   and found.labels["outcome"] == outcome))


def refuse_delegate_subscriptions(sim: EmbeddedSimulator) -> None:
    on_loop(sim, lambda state: setattr(state.subscriptions, "refuse_delegate_access", True))


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("exchange-stream")]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def changes_are_reported(watching: Watching, admin: SimulatorAdmin, mailbox: str) -> None:
    meeting = await admin.book_meeting(mailbox, at(9), at(10))
    await watching.reported(mailbox, "the new meeting to be reported")
    await admin.move_meeting(mailbox, meeting["id"], start=at(13))
    await watching.reported(mailbox, "the move to be reported")
    await admin.cancel_meeting(mailbox, meeting["id"])
    await watching.reported(mailbox, "the cancellation to be reported")


@pytest.mark.integration
async def test_streaming_reports_created_moved_and_deleted_meetings(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway,
        watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast()).start(room(0), room(1))
    # Right after subscribing each mailbox is reported: events before the subscription are not told.
    await wait_until(lambda: {room(0), room(1)} <= set(watched.changes), message="the first reports")
    assert watched.watch.mode(room(0)) == watched.watch.mode(room(1)) == "streaming"
    await wait_until(lambda: on_loop(simulator, lambda state: len(state.subscriptions.connections) == 1),
                     message="one streaming connection for both")
    watched.changes.clear()
    before = sample("spacesync_ews_notifications_total", mode="streaming")

    await changes_are_reported(watched, admin, room(0))
    assert room(1) not in watched.changes
    assert sample("spacesync_ews_notifications_total", mode="streaming") >= before + 3

    # The stream holds a connection of its own: the gateway's one connection to this server stays free.
    started = time.monotonic()
    found = await gateway.free_busy(watched.watch.server, [room(1)], at(0), at(24))
    assert found[room(1)] == []
    assert time.monotonic() - started < 2


@pytest.mark.integration
async def test_pull_reports_created_moved_and_deleted_meetings(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast(streaming=False)).start(room(0), room(1))
    await wait_until(lambda: {room(0), room(1)} <= set(watched.changes), message="the first reports")
    assert watched.watch.mode(room(0)) == "pull"
    assert [s.kind for s in subscriptions_of(simulator, room(0))] == ["pull"]
    watched.changes.clear()
    await changes_are_reported(watched, admin, room(0))
    assert room(1) not in watched.changes


@pytest.mark.integration
async def test_more_than_one_page_of_pull_events(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast(streaming=False, pull_interval_seconds=3.0)).start(room(0))
    await watched.reported(room(0), "the first report")
    [subscription] = subscriptions_of(simulator, room(0))
    lost_before = sample("spacesync_ews_resubscribes_total", reason="lost")
    polls = await admin.requests()
    for hour in range(30):  # 60 changes before the next poll: more than one GetEvents answer holds (50)
        meeting = await admin.book_meeting(room(0), at(hour), at(hour + 0.5))
        await admin.cancel_meeting(room(0), meeting["id"])
    await watched.reported(room(0), "the changes")
    answered = (await admin.requests())["operations"]["GetEvents"]["outcomes"]["NoError"]
    assert answered - polls["operations"].get("GetEvents", {}).get("outcomes", {}).get("NoError", 0) >= 2
    # Paged with each answer's last watermark (exchangelib's own loop resends the first one, which Exchange
    # refuses): the subscription is still the first one, and later changes are still told.
    await admin.book_meeting(room(0), at(40), at(41))
    await watched.reported(room(0), "a change after the pages")
    assert [s.id for s in subscriptions_of(simulator, room(0))] == [subscription.id]
    assert sample("spacesync_ews_resubscribes_total", reason="lost") == lost_before


@pytest.mark.integration
@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "pull"])
async def test_a_subscription_the_server_drops_is_made_again_and_reported(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching],
        streaming: bool) -> None:
    watched = watching(fast(streaming=streaming)).start(room(0))
    await watched.reported(room(0), "the first report")
    [first] = subscriptions_of(simulator, room(0))
    lost_before = sample("spacesync_ews_resubscribes_total", reason="lost")

    if streaming:  # Exchange tells the connection ErrorSubscriptionUnsubscribed
        await wait_until(lambda: on_loop(simulator, lambda state: first.connection is not None),
                         message="the stream to be connected")
        on_loop(simulator, lambda state: state.subscriptions.unsubscribe(first.id, Caller(WRITER)))
    else:  # the next GetEvents gets ErrorSubscriptionNotFound
        on_loop(simulator, lambda state: state.subscriptions.active.pop(first.id))

    await watched.reported(room(0), "the report after subscribing again")
    [second] = subscriptions_of(simulator, room(0))
    assert second.id != first.id
    assert watched.watch.mode(room(0)) == ("streaming" if streaming else "pull")
    assert sample("spacesync_ews_resubscribes_total", reason="lost") == lost_before + 1
    await admin.book_meeting(room(0), at(9), at(10))
    await watched.reported(room(0), "a change on the new subscription")


@pytest.mark.integration
async def test_a_pull_subscription_that_fell_behind_is_made_again_and_reported(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    on_loop(simulator, lambda state: setattr(state.subscriptions, "history_size", 3))  # events kept per mailbox
    watched = watching(fast(streaming=False, pull_interval_seconds=2.0)).start(room(3))
    await watched.reported(room(3), "the first report")
    [first] = subscriptions_of(simulator, room(3))
    lost_before = sample("spacesync_ews_resubscribes_total", reason="lost")
    for hour in range(5):  # more changes than Exchange keeps before the next poll: ErrorReadEventsFailed
        await admin.book_meeting(room(3), at(hour), at(hour + 0.5))
    await watched.reported(room(3), "the report after subscribing again")
    assert sample("spacesync_ews_resubscribes_total", reason="lost") == lost_before + 1
    assert [s.id for s in subscriptions_of(simulator, room(3))] != [first.id]


@pytest.mark.integration
async def test_unwatched_mailboxes_are_unsubscribed_and_no_longer_reported(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast()).start(room(0), room(1))
    await wait_until(lambda: {room(0), room(1)} <= set(watched.changes), message="the first reports")
    watched.watch.watch([room(1), room(2)])
    await wait_until(lambda: not subscriptions_of(simulator, room(0)), message="room 0 to be unsubscribed")
    await wait_until(lambda: watched.watch.mode(room(2)) == "streaming", message="room 2 to be subscribed")
    assert watched.watch.mode(room(0)) == "none"
    watched.changes.clear()
    await admin.book_meeting(room(0), at(9), at(10))
    # room 2 joined the stream of room 1 (a new connection took both over): both are still told.
    await admin.book_meeting(room(2), at(9), at(10))
    await watched.reported(room(2), "room 2's change")
    await admin.book_meeting(room(1), at(9), at(10))
    await watched.reported(room(1), "room 1's change")
    assert room(0) not in watched.changes
    assert on_loop(simulator, lambda state: len(state.subscriptions.connections)) == 1


@pytest.mark.integration
async def test_mailbox_problems_are_kept_apart_and_retried(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast()).start(NOBODY, DENIED, room(0))
    await watched.reported(room(0), "the healthy mailbox")
    await wait_until(lambda: len(watched.watch.problems) == 2, message="both problems")
    assert watched.watch.problems[NOBODY].problem == ConnectionProblem.MAILBOX_NOT_FOUND
    assert watched.watch.problems[DENIED].problem == ConnectionProblem.ACCESS_DENIED
    assert watched.watch.mode(NOBODY) == watched.watch.mode(DENIED) == "none"
    attempts = sample("spacesync_ews_requests_total", operation="subscribe", outcome="access_denied")
    await wait_until(lambda: sample("spacesync_ews_requests_total", operation="subscribe",
                                    outcome="access_denied") > attempts, message="a retry")
    await admin.book_meeting(room(0), at(9), at(10))
    await watched.reported(room(0), "a change in the healthy mailbox")
    watched.watch.watch([room(0)])
    await wait_until(lambda: not watched.watch.problems, message="the problems of unwatched mailboxes to go")


@pytest.mark.integration
async def test_streams_that_keep_failing_fall_back_to_pull(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    await admin.add_fault(kind="drop", operations=["GetStreamingEvents"])
    watched = watching(fast(stream_failures_before_pull=2)).start(room(0))
    await wait_until(lambda: watched.watch.mode(room(0)) == "pull", message="the fall-back to pull")
    assert [s.kind for s in subscriptions_of(simulator, room(0))] == ["pull"]  # the streaming one is gone
    watched.changes.clear()
    await admin.book_meeting(room(0), at(9), at(10))
    await watched.reported(room(0), "a change, pulled")


@pytest.mark.integration
async def test_run_again_after_it_stopped(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[[WatchSettings], Watching]) -> None:
    watched = watching(fast()).start(room(0))
    await watched.reported(room(0), "the first report")
    assert watched.task is not None
    watched.task.cancel()
    await asyncio.gather(watched.task, return_exceptions=True)
    await wait_until(lambda: not stream_threads(), message="the stream to end with run()")
    [old] = subscriptions_of(simulator, room(0))

    watched.task = asyncio.create_task(watched.watch.run())
    await watched.reported(room(0), "the report after subscribing again")
    assert watched.watch.mode(room(0)) == "streaming"
    await wait_until(lambda: [s.id for s in subscriptions_of(simulator, room(0))] != [old.id],
                     message="the old subscription to be replaced")
    await admin.book_meeting(room(0), at(9), at(10))
    await watched.reported(room(0), "a change on the new stream")


@pytest.mark.integration
async def test_close_returns_promptly_and_ends_the_threads(
        simulator: EmbeddedSimulator, watching: Callable[[WatchSettings], Watching]) -> None:
    on_loop(simulator, lambda state: setattr(state.subscriptions, "heartbeat_seconds", 45.0))
    watched = watching(fast()).start(room(0), room(1))
    await wait_until(lambda: on_loop(simulator, lambda state: len(state.subscriptions.connections) == 1),
                     message="the stream to be connected")
    assert stream_threads()
    started = time.monotonic()
    await watched.stop()
    assert time.monotonic() - started < 3
    assert not stream_threads()
    assert not on_loop(simulator, lambda state: list(state.subscriptions.active))  # unsubscribed


REFUSED = "ErrorSubscriptionDelegateAccessNotSupported"


@pytest.mark.integration
async def test_delegate_access_refused_once_puts_every_mailbox_on_polling_without_asking_again(
        simulator: EmbeddedSimulator, watching: Callable[..., Watching]) -> None:
    refuse_delegate_subscriptions(simulator)
    gauge = sample("spacesync_ews_delegate_refused_mailboxes")
    watched = watching(fast()).start(room(0), room(1), room(2))  # back-off of other problems: 0.1 s to 1 s

    await wait_until(lambda: len(watched.watch.problems) == 3, message="the refusal for every mailbox")
    assert all(isinstance(problem, DelegateSubscriptionRefused) for problem in watched.watch.problems.values())
    message = watched.watch.problems[room(1)].message
    assert "notifications need ApplicationImpersonation (location access: impersonation)" in message
    assert "read by polling" in message
    assert PASSWORD not in message
    assert [watched.watch.mode(r) for r in (room(0), room(1), room(2))] == ["none"] * 3
    assert sample("spacesync_ews_delegate_refused_mailboxes") - gauge == 3
    assert simulator_requests(simulator, "Subscribe", REFUSED) == 1  # one mailbox asked for all

    watched.watch.watch([room(0), room(1), room(2), room(3)])  # a room paired later: refused without asking
    await wait_until(lambda: room(3) in watched.watch.problems, message="the new room's problem")
    assert simulator_requests(simulator, "Subscribe", REFUSED) == 1
    assert simulator_requests(simulator, "Subscribe", "NoError") == 0
    assert sample("spacesync_ews_delegate_refused_mailboxes") - gauge == 4

    watched.watch.watch([room(0)])  # unwatched mailboxes leave the gauge
    await wait_until(lambda: sample("spacesync_ews_delegate_refused_mailboxes") - gauge == 1,
                     message="the gauge to follow the mailboxes watched")


@pytest.mark.integration
async def test_delegate_access_is_asked_again_rarely_and_subscribes_every_mailbox_once_allowed(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[..., Watching]) -> None:
    refuse_delegate_subscriptions(simulator)
    watched = watching(fast(delegate_retry_seconds=0.3)).start(room(0), room(1), room(2))
    await wait_until(lambda: simulator_requests(simulator, "Subscribe", REFUSED) >= 3,
                     message="Exchange asked again after delegate_retry_seconds")
    assert simulator_requests(simulator, "Subscribe", "NoError") == 0

    on_loop(simulator, lambda state: setattr(state.subscriptions, "refuse_delegate_access", False))
    await wait_until(lambda: all(watched.watch.mode(r) == "streaming" for r in (room(0), room(1), room(2))),
                     message="every mailbox subscribed once Exchange allows it")
    assert not watched.watch.problems
    watched.changes.clear()
    await admin.book_meeting(room(2), at(9), at(10))
    await watched.reported(room(2), "a change, streamed")


@pytest.mark.integration
async def test_impersonation_gets_notifications_while_delegate_subscriptions_are_refused(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, watching: Callable[..., Watching]) -> None:
    refuse_delegate_subscriptions(simulator)
    impersonating = ExchangeServer(endpoint=simulator.ews_url, username=IMPERSONATOR, password=PASSWORD,
                                   access=ExchangeAccess.IMPERSONATION)
    watched = watching(fast(), impersonating).start(room(0), room(1))
    await wait_until(lambda: watched.watch.mode(room(0)) == watched.watch.mode(room(1)) == "streaming",
                     message="streaming subscriptions with impersonation")
    assert not watched.watch.problems
    watched.changes.clear()
    await changes_are_reported(watched, admin, room(1))
    assert simulator_requests(simulator, "Subscribe", REFUSED) == 0
