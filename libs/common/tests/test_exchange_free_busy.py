"""The gateway's free/busy read (GetUserAvailability) with real exchangelib against the EWS simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from exchangelib import close_connections

from spacesync.common.exchange import (
    BusyTime,
    ConnectionProblem,
    ExchangeError,
    ExchangeGateway,
    ExchangeServer,
    GatewaySettings,
)
from spacesync.common.exchange.availability import windows
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.seed import Access, Seed
from spacesync.testing.exchange import PASSWORD, READONLY, WRITER, SchemaCheck, SimulatorAdmin, room, rooms_seed

ROOMS = 150
DENIED = room(5)  # the free/busy-only account has no right at all on this one
NOBODY = "nobody@rooms.example.org"
MONDAY = dt.datetime(2030, 3, 4, tzinfo=dt.UTC)


def at(hours: float, days: int = 0) -> dt.datetime:
    return MONDAY + dt.timedelta(days=days, hours=hours)


# -- pure ---------------------------------------------------------------------------------------------------------


def test_windows_cut_at_62_days() -> None:
    assert windows(at(0), at(1)) == [(at(0), at(1))]
    [first, second] = windows(at(0), at(0, days=100))
    assert first == (at(0), at(0, days=62))
    assert second == (at(0, days=62), at(0, days=100))
    with pytest.raises(ValueError, match="before it starts"):
        windows(at(1), at(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        windows(at(0).replace(tzinfo=None), at(1))


# -- against the simulator ----------------------------------------------------------------------------------------


def seed() -> Seed:
    made = rooms_seed(ROOMS)
    made.accounts[1].rights[DENIED] = Access.NONE
    return made


@pytest.fixture(scope="module")
def simulator() -> Iterator[EmbeddedSimulator]:
    check = SchemaCheck()
    with EmbeddedSimulator(seed()) as sim:
        sim.state.response_observers.append(check)
        yield sim
    assert not check.failures, "\n".join(check.failures)


@pytest.fixture
async def admin(simulator: EmbeddedSimulator) -> AsyncIterator[SimulatorAdmin]:
    client = SimulatorAdmin(simulator)
    await client.http.post("/reset")
    yield client
    await client.close()


@pytest.fixture
async def gateway() -> AsyncIterator[ExchangeGateway]:
    made = ExchangeGateway(GatewaySettings(timeout_seconds=10.0, max_connections=4, worker_threads=4))
    yield made
    await made.close()
    close_connections()


def server(sim: EmbeddedSimulator, username: str = WRITER) -> ExchangeServer:
    return ExchangeServer(endpoint=sim.ews_url, username=username, password=PASSWORD)


def busy(answer: list[BusyTime] | ExchangeError) -> list[BusyTime]:
    assert isinstance(answer, list), answer
    return answer


async def answered(admin: SimulatorAdmin, operation: str) -> int:
    operations: dict[str, Any] = (await admin.requests())["operations"]
    count: int = operations.get(operation, {}).get("outcomes", {}).get("NoError", 0)
    return count


@pytest.mark.integration
async def test_more_than_100_mailboxes_take_one_request_per_100(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    first = await admin.book_meeting(room(0), at(9), at(10))
    last = await admin.book_meeting(room(ROOMS - 1), at(11), at(12), "OOF")
    mailboxes = [room(index) for index in range(ROOMS)]

    found = await gateway.free_busy(server(simulator), mailboxes, at(0), at(0, days=7))
    assert set(found) == set(mailboxes)
    assert busy(found[room(0)]) == [BusyTime(at(9), at(10), "Busy", first["id"])]
    assert busy(found[room(ROOMS - 1)]) == [BusyTime(at(11), at(12), "OOF", last["id"])]
    assert all(busy(found[mailbox]) == [] for mailbox in mailboxes[1:-1])
    assert await answered(admin, "GetUserAvailabilityRequest") == 2  # 100 + 50

    # The server's UTC definition is asked once per server and year, not before every request.
    await gateway.free_busy(server(simulator), mailboxes, at(0), at(0, days=7))
    assert await answered(admin, "GetUserAvailabilityRequest") == 4
    assert await answered(admin, "GetServerTimeZones") == 1


@pytest.mark.integration
async def test_statuses_free_is_not_listed_and_details_need_read_rights(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    booked = {status: await admin.book_meeting(room(1), at(hour), at(hour + 0.5), status)
              for hour, status in ((14, "Tentative"), (9, "Busy"), (10, "OOF"), (11, "WorkingElsewhere"),
                                   (12, "Free"))}
    found = await gateway.free_busy(server(simulator), [room(1)], at(0), at(24))
    assert busy(found[room(1)]) == [
        BusyTime(at(9), at(9.5), "Busy", booked["Busy"]["id"]),
        BusyTime(at(10), at(10.5), "OOF", booked["OOF"]["id"]),
        BusyTime(at(11), at(11.5), "WorkingElsewhere", booked["WorkingElsewhere"]["id"]),
        BusyTime(at(14), at(14.5), "Tentative", booked["Tentative"]["id"]),
    ]
    # Free/busy rights only: the same times, no item ids.
    readonly = await gateway.free_busy(server(simulator, READONLY), [room(1)], at(0), at(24))
    assert [(b.start, b.busy_status, b.item_id) for b in busy(readonly[room(1)])] == [
        (at(9), "Busy", None), (at(10), "OOF", None), (at(11), "WorkingElsewhere", None), (at(14), "Tentative", None)]


@pytest.mark.integration
async def test_a_weekly_meeting_is_busy_at_each_occurrence(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    series = await admin.book_meeting(room(2), at(10), at(11), recurrence={"pattern": "weekly", "count": 4})
    found = await gateway.free_busy(server(simulator), [room(2)], at(0), at(0, days=60))
    assert busy(found[room(2)]) == [BusyTime(at(10, days=7 * week), at(11, days=7 * week), "Busy", series["id"])
                                    for week in range(4)]


@pytest.mark.integration
async def test_a_long_window_is_read_in_62_day_pieces_without_doubles(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    across = await admin.book_meeting(room(3), at(23, days=61), at(2, days=62))  # over the cut
    later = await admin.book_meeting(room(3), at(9, days=90), at(10, days=90))
    found = await gateway.free_busy(server(simulator), [room(3)], at(0), at(0, days=100))
    assert busy(found[room(3)]) == [BusyTime(at(23, days=61), at(2, days=62), "Busy", across["id"]),
                                    BusyTime(at(9, days=90), at(10, days=90), "Busy", later["id"])]
    assert await answered(admin, "GetUserAvailabilityRequest") == 2


@pytest.mark.integration
async def test_unknown_and_denied_mailboxes_are_values_and_the_rest_is_answered(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    await admin.book_meeting(room(1), at(9), at(10))
    await admin.book_meeting(room(2), at(15), at(16), "OOF")  # after the failing ones in the same request
    given = [room(1), NOBODY, DENIED, room(2)]
    found = await gateway.free_busy(server(simulator, READONLY), given, at(0), at(24))
    assert busy(found[room(1)]) == [BusyTime(at(9), at(10), "Busy", None)]
    assert busy(found[room(2)]) == [BusyTime(at(15), at(16), "OOF", None)]
    missing, denied = found[NOBODY], found[DENIED]
    assert isinstance(missing, ExchangeError)
    assert missing.problem == ConnectionProblem.MAILBOX_NOT_FOUND
    assert NOBODY in missing.message
    assert isinstance(denied, ExchangeError)
    assert denied.problem == ConnectionProblem.ACCESS_DENIED
    assert DENIED in denied.message
    assert READONLY in denied.message
    assert await answered(admin, "GetUserAvailabilityRequest") == 1


@pytest.mark.integration
async def test_a_request_wide_failure_raises(
        simulator: EmbeddedSimulator, admin: SimulatorAdmin, gateway: ExchangeGateway) -> None:
    await admin.add_fault(kind="server_busy", operations=["GetUserAvailabilityRequest"], count=1, back_off_ms=0)
    with pytest.raises(ExchangeError) as caught:
        await gateway.free_busy(server(simulator), [room(1), room(2)], at(0), at(24))
    assert caught.value.problem == ConnectionProblem.THROTTLED
    found = await gateway.free_busy(server(simulator), [room(1), room(2)], at(0), at(24))  # the fault is used up
    assert busy(found[room(1)]) == []
