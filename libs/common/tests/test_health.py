"""/readyz and /metrics report each dependency's check as spacesync_dependency_up (1 answers, 0 fails), so an
unready pod, which gets no traffic, still tells Prometheus which dependency it lost."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from spacesync.common.http.health import HealthChecks, health_router


def app_with(checks: HealthChecks) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(health_router(checks))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


class Switch:
    """A dependency check that fails while `down` is set."""

    def __init__(self) -> None:
        self.down = False

    async def check(self) -> None:
        if self.down:
            raise ConnectionError("connection refused")


async def passing() -> None:
    """A dependency that always answers."""


def dependency_up(exposition: str) -> dict[tuple[str, str], float]:
    """(dependency, required) -> value, as Prometheus would read it from a scrape."""
    return {(sample.labels["dependency"], sample.labels["required"]): sample.value
            for family in text_string_to_metric_families(exposition) if family.name == "spacesync_dependency_up"
            for sample in family.samples}


async def test_a_scrape_shows_each_check_as_1_or_0_without_any_readiness_probe() -> None:
    # Unique names: the gauge lives in the process-wide registry other tests share.
    db, broker = f"db-{uuid.uuid4().hex[:6]}", f"broker-{uuid.uuid4().hex[:6]}"
    failing = Switch()
    failing.down = True
    async with app_with(HealthChecks(required={db: failing.check}, informational={broker: passing})) as client:
        scraped = dependency_up((await client.get("/metrics")).text)
    assert scraped[(db, "true")] == 0
    assert scraped[(broker, "false")] == 1


async def test_the_gauge_follows_the_dependency_on_every_scrape_and_readyz() -> None:
    db = f"db-{uuid.uuid4().hex[:6]}"
    switch = Switch()
    async with app_with(HealthChecks(required={db: switch.check})) as client:
        assert dependency_up((await client.get("/metrics")).text)[(db, "true")] == 1
        switch.down = True
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"][db].startswith("failing: ConnectionError")
        assert dependency_up((await client.get("/metrics")).text)[(db, "true")] == 0
        switch.down = False
        assert dependency_up((await client.get("/metrics")).text)[(db, "true")] == 1


async def test_a_check_that_hangs_counts_as_failing_within_the_timeout() -> None:
    db = f"db-{uuid.uuid4().hex[:6]}"

    async def hangs() -> None:
        await asyncio.Event().wait()

    async with app_with(HealthChecks(required={db: hangs}, timeout=0.05)) as client:
        assert dependency_up((await client.get("/metrics")).text)[(db, "true")] == 0
