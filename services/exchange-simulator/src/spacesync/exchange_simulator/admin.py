"""JSON admin API: placeholder until implemented."""

from __future__ import annotations

from aiohttp import web

from spacesync.exchange_simulator.state import SimulatorState


def add_routes(app: web.Application, state: SimulatorState, token: str) -> None:
    return None
