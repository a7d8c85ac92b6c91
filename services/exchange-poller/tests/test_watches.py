"""The notification adapter keeps one watch per server in line with the rooms (fake watches, no infra)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from spacesync.common.exchange import ConnectionProblem, ExchangeError, ExchangeServer
from spacesync.exchange_poller.watches import NO_NOTIFICATIONS, Watches


class FakeWatch:
    def __init__(self, server: ExchangeServer, on_change: Callable[[str], None]) -> None:
        self.server = server
        self.on_change = on_change
        self.mailboxes: list[str] = []
        self.problems: dict[str, ExchangeError] = {}
        self.closed = False
        self.stop = asyncio.Event()

    def watch(self, mailboxes: Collection[str]) -> None:
        self.mailboxes = list(mailboxes)

    async def run(self) -> None:
        await self.stop.wait()

    def mode(self, mailbox: str) -> str:
        return "streaming" if mailbox in self.mailboxes else NO_NOTIFICATIONS

    async def close(self) -> None:
        self.closed = True
        self.stop.set()


A = ExchangeServer("https://a.example.org/EWS/Exchange.asmx", "svc", "pw")
B = ExchangeServer("https://b.example.org/EWS/Exchange.asmx", "svc", "pw")


async def test_one_watch_per_server_with_exactly_its_mailboxes() -> None:
    made: list[FakeWatch] = []

    def factory(server: ExchangeServer, on_change: Callable[[str], None]) -> FakeWatch:
        made.append(FakeWatch(server, on_change))
        return made[-1]

    watches = Watches(factory, lambda _: None)
    watches.update({A: ["r2@x.org", "r1@x.org", "r1@x.org"], B: ["r3@x.org"]})
    assert [(w.server, w.mailboxes) for w in made] == [(A, ["r1@x.org", "r2@x.org"]), (B, ["r3@x.org"])]
    assert watches.mode("r3@x.org") == "streaming"
    assert watches.mode("r9@x.org") == NO_NOTIFICATIONS

    watches.update({A: ["r1@x.org"]})  # B's rooms are gone: its watch is closed
    await watches.close()
    assert len(made) == 2
    assert made[0].mailboxes == ["r1@x.org"]
    assert made[1].closed
    assert made[0].closed


async def test_without_notifications_nothing_is_watched() -> None:
    watches = Watches(None, lambda _: None)
    watches.update({A: ["r1@x.org"]})
    assert watches.mode("r1@x.org") == NO_NOTIFICATIONS
    await watches.close()


async def test_the_problem_of_a_mailbox_comes_from_its_server_s_watch() -> None:
    made: list[FakeWatch] = []

    def factory(server: ExchangeServer, on_change: Callable[[str], None]) -> FakeWatch:
        made.append(FakeWatch(server, on_change))
        return made[-1]

    watches = Watches(factory, lambda _: None)
    watches.update({A: ["r1@x.org"], B: ["r2@x.org"]})
    refused = ExchangeError(ConnectionProblem.ACCESS_DENIED, "notifications need ApplicationImpersonation")
    made[1].problems["r2@x.org"] = refused
    assert watches.problem("r2@x.org") is refused
    assert watches.problem("r1@x.org") is None
    await watches.close()
