"""/healthz (the process is alive), /readyz (its dependencies answer) and /metrics (Prometheus).

The checks' outcomes are also the gauge spacesync_dependency_up, refreshed on every /readyz and every scrape: an
unready pod gets no traffic, so only this tells Prometheus that every replica has lost PostgreSQL or Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

Check = Callable[[], Awaitable[None]]

DEPENDENCY_UP = Gauge(
    "spacesync_dependency_up",
    "1 if the dependency answered this instance's last readiness check, 0 if it failed or timed out.",
    ["dependency", "required"])


@dataclass
class HealthChecks:
    """Readiness checks by name. `required` ones decide readiness; `informational` ones are reported only."""

    required: dict[str, Check] = field(default_factory=dict)
    informational: dict[str, Check] = field(default_factory=dict)
    timeout: float = 2.0

    async def run(self) -> tuple[bool, dict[str, str]]:
        names = [*self.required, *self.informational]
        checks = [*self.required.values(), *self.informational.values()]
        results = await asyncio.gather(*(self._one(check) for check in checks))
        report = dict(zip(names, results, strict=True))
        for name, result in report.items():
            DEPENDENCY_UP.labels(dependency=name, required=str(name in self.required).lower()).set(
                1 if result == "ok" else 0)
        ready = all(report[name] == "ok" for name in self.required)
        return ready, report

    async def _one(self, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
        except Exception as error:
            return f"failing: {type(error).__name__}: {error}"[:300]
        return "ok"


def health_router(checks: HealthChecks) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Dependencies answer; 503 otherwise")
    async def readyz() -> JSONResponse:
        ready, report = await checks.run()
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": report},
                            status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        await checks.run()  # spacesync_dependency_up no older than this scrape, even where nothing probes /readyz
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
