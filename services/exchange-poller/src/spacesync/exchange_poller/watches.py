"""Notification adapter: one calendar watch (streaming or pull subscriptions) per Exchange server, kept in line
with the rooms watched. A watch calls back with the mailbox of every change, and after every (re)subscription
(changes may have been missed while there was none)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from spacesync.common.exchange import ExchangeError, ExchangeServer

log = logging.getLogger(__name__)
NO_NOTIFICATIONS = "none"
RESTART_SECONDS = 30.0  # a watch that stopped on an unexpected error starts again after this


class Watch(Protocol):
    def watch(self, mailboxes: Collection[str]) -> None: ...
    async def run(self) -> None: ...
    def mode(self, mailbox: str) -> str: ...
    @property
    def problems(self) -> Mapping[str, ExchangeError]: ...
    async def close(self) -> None: ...


WatchFactory = Callable[[ExchangeServer, Callable[[str], None]], Watch]


class Watches:
    def __init__(self, factory: WatchFactory | None, on_change: Callable[[str], None]) -> None:
        self._factory = factory
        self._on_change = on_change
        self._watches: dict[ExchangeServer, tuple[Watch, asyncio.Task[None]]] = {}
        self._closing: dict[ExchangeServer, asyncio.Task[None]] = {}

    def update(self, servers: dict[ExchangeServer, list[str]]) -> None:
        """Watches exactly these mailboxes per server (must run on the event loop)."""
        if self._factory is None:
            return
        for server in [s for s in self._watches if s not in servers]:
            watch, task = self._watches.pop(server)
            closing = self._closing[server] = asyncio.create_task(self._stop(watch, task), name="watch-close")
            closing.add_done_callback(functools.partial(self._closed, server))
        for server, mailboxes in servers.items():
            if server not in self._watches:
                watch = self._factory(server, self._on_change)
                self._watches[server] = (watch, asyncio.create_task(self._run(server, watch), name="calendar-watch"))
            self._watches[server][0].watch(sorted(set(mailboxes)))

    def after_close(self, server: ExchangeServer, then: Callable[[ExchangeServer], None]) -> None:
        """Calls `then(server)` once the server's watch has closed (at once when it has none): closing unsubscribes
        through the server, so what the gateway keeps for it must stay until then."""
        closing = self._closing.get(server)
        if closing is None:
            then(server)
        else:
            closing.add_done_callback(lambda _: then(server))

    def _closed(self, server: ExchangeServer, done: asyncio.Task[None]) -> None:
        if self._closing.get(server) is done:
            del self._closing[server]

    def mode(self, mailbox: str) -> str:
        for watch, _ in self._watches.values():
            found = watch.mode(mailbox)
            if found != NO_NOTIFICATIONS:
                return found
        return NO_NOTIFICATIONS

    def problem(self, mailbox: str) -> ExchangeError | None:
        """Why the mailbox has no subscription now (None: it has one, or is not watched, or not yet tried)."""
        for watch, _ in self._watches.values():
            found = watch.problems.get(mailbox)
            if found is not None:
                return found
        return None

    async def close(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        await asyncio.gather(*(self._stop(watch, task) for watch, task in watches), *self._closing.values())

    @staticmethod
    async def _run(server: ExchangeServer, watch: Watch) -> None:
        while True:
            try:
                await watch.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # meanwhile the reconciliation still covers the rooms of this server
                log.exception("calendar watch stopped; starting it again in %.0f s", RESTART_SECONDS,
                              extra={"exchange_server": server.key})
            await asyncio.sleep(RESTART_SECONDS)

    @staticmethod
    async def _stop(watch: Watch, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(Exception):
            await watch.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
