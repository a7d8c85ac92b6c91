"""Composition root: the seed, the in-memory state, the EWS endpoint, the admin API, /metrics and /healthz."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from spacesync.exchange_simulator import admin
from spacesync.exchange_simulator.ews.endpoint import EwsEndpoint
from spacesync.exchange_simulator.seed import Seed
from spacesync.exchange_simulator.state import SimulatorState

STATE = web.AppKey("state", SimulatorState)
EWS_PATH = "/EWS/Exchange.asmx"


def create_app(seed: Seed, admin_token: str = "", state_file: Path | None = None) -> web.Application:
    state = SimulatorState.from_seed(seed)
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
        state.authenticator.close()

    app.router.add_post(EWS_PATH, endpoint.handle)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    admin.add_routes(app, state, admin_token)
    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(close)
    return app
