"""/healthz (the process is alive), /readyz (its dependencies answer) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Check = Callable[[], Awaitable[None]]


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
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
