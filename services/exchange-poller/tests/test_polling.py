"""Rooms without notifications are polled: Exchange refuses subscriptions made with delegate access (as real
Exchange may), so a delegate location's rooms are read every poll interval (2 s here) while the full
reconciliation waits an hour; an impersonation location on the same server still gets notifications."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import close_connections
from poller_helpers import PollerUnderTest, at, ews_requests, periods
from prometheus_client import REGISTRY

from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import wait_until
from spacesync.testing.exchange import IMPERSONATOR, rooms_seed

pytestmark = pytest.mark.integration

POLL_SECONDS = 2.0
REFUSED = "ErrorSubscriptionDelegateAccessNotSupported"


@pytest.fixture(scope="module")
def simulator() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(rooms_seed(6)) as sim:
        async def refuse() -> None:  # on the simulator's loop, where its state lives
            sim.state.subscriptions.refuse_delegate_access = True

        sim.call(refuse())
        yield sim
    close_connections()


@pytest.fixture(scope="module")
def poller_options() -> dict[str, Any]:
    return {"poll_interval_seconds": POLL_SECONDS, "reconcile_interval_seconds": 3600}


def reads(trigger: str) -> float:
    return REGISTRY.get_sample_value("spacesync_poller_reads_total", {"read_mode": "view", "trigger": trigger}) or 0.0


async def test_a_delegate_room_without_notifications_is_polled_within_the_poll_interval(
        poller: PollerUnderTest) -> None:
    place = await poller.place()
    await wait_until(lambda: poller.poller.notification_problem(place.mailbox) is not None,
                     message="the watch to report the refusal")
    problem = poller.poller.notification_problem(place.mailbox)
    assert problem is not None
    assert "notifications need ApplicationImpersonation (location access: impersonation)" in problem
    assert poller.poller.notification_mode(place.mailbox) == "none"
    assert ews_requests(poller.sim, "Subscribe", REFUSED) == 1
    await poller.reader.wait_for(lambda r: r.key == place.space_id)  # the first read
    polls = reads("poll")

    await poller.admin.book_meeting(place.mailbox, at(3, 9), at(3, 10))

    # No notification and no reconciliation for an hour: only the poll can see it (a few intervals at most).
    found = await poller.reader.wait_for(lambda r: r.key == place.space_id and r.json["busy"] != [],
                                         timeout=POLL_SECONDS * 5)
    assert periods(found[-1].json) == [(at(3, 9), at(3, 10), "Busy")]
    assert reads("poll") > polls
    assert ews_requests(poller.sim, "Subscribe", REFUSED) == 1  # still the one refusal: nothing retried meanwhile


async def test_an_impersonation_room_gets_notifications_while_delegate_subscriptions_are_refused(
        poller: PollerUnderTest) -> None:
    place = await poller.place(username=IMPERSONATOR, access="impersonation")
    await wait_until(lambda: poller.poller.notification_mode(place.mailbox) == "streaming", timeout=30,
                     message="a streaming subscription with impersonation")
    assert poller.poller.notification_problem(place.mailbox) is None
    await poller.reader.wait_for(lambda r: r.key == place.space_id)
    changes = reads("change")

    await poller.admin.book_meeting(place.mailbox, at(4, 9), at(4, 10))

    found = await poller.reader.wait_for(lambda r: r.key == place.space_id and r.json["busy"] != [])
    assert periods(found[-1].json) == [(at(4, 9), at(4, 10), "Busy")]
    assert reads("change") > changes  # read on the notification (a streaming room is never polled)
