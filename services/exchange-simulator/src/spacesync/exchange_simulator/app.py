"""Composition root: the seed, the in-memory state, the EWS endpoint, the admin API, /metrics and /healthz."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from spacesync.exchange_simulator import admin, persistence
from spacesync.exchange_simulator.ews.endpoint import EwsEndpoint
from spacesync.exchange_simulator.seed import Seed
from spacesync.exchange_simulator.state import SimulatorState

log = logging.getLogger(__name__)

STATE = web.AppKey("state", SimulatorState)
EWS_PATH = "/EWS/Exchange.asmx"


def create_app(seed: Seed, admin_token: str = "", state_file: Path | None = None) -> web.Application:
    state = SimulatorState.from_seed(seed)
    if state_file is not None:
        # Before the first request; a broken file raises persistence.StateFileError (a configuration error).
        persistence.load_state(state, state_file)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE] = state
    endpoint = EwsEndpoint(state)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(state.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stop_streams(_: web.Application) -> None:
        state.subscriptions.shutdown()  # open GetStreamingEvents answers end with ConnectionStatus Closed

    async def close(_: web.Application) -> None:
        if state_file is not None:
            try:
                persistence.save_state(state, state_file)
            except persistence.StateFileError:
                log.exception("calendars not saved")
        state.authenticator.close()

    app.router.add_post(EWS_PATH, endpoint.handle)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    admin.add_routes(app, state, admin_token, state_file=state_file)
    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(close)
    return app
