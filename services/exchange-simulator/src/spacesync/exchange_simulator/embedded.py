"""A simulator on its own thread and event loop: for tests and tools whose EWS client (exchangelib) blocks."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from spacesync.exchange_simulator.app import EWS_PATH, STATE, create_app
from spacesync.exchange_simulator.seed import Seed
from spacesync.exchange_simulator.state import SimulatorState


class EmbeddedSimulator:
    """`with EmbeddedSimulator(seed) as sim:` serves on 127.0.0.1 (a free port unless given) until the block ends."""

    def __init__(self, seed: Seed, host: str = "127.0.0.1", port: int = 0, admin_token: str = "") -> None:
        self.seed = seed
        self.host = host
        self.port = port
        self.admin_token = admin_token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ews-simulator", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def state(self) -> SimulatorState:
        assert self.app is not None, "not started"
        return self.app[STATE]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ews_url(self) -> str:
        return self.base_url + EWS_PATH

    def call(self, work: Any) -> Any:
        """Runs a coroutine on the simulator's loop and returns its result (state is only touched there)."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result(timeout=30)

    def start(self) -> EmbeddedSimulator:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.app = create_app(self.seed, self.admin_token)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> EmbeddedSimulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
