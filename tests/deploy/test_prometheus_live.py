"""A real Prometheus scraping the whole stack running locally (every service a process, the Kafka lag exporter,
the real alert rules): every dashboard query returns data, and stopping the exchange-writer while bookings keep
arriving fires SpacesyncConsumerLagGrowing for its consumer group.

The stack runs on free ports with its own topic prefix, consumer groups (`<service>-<run id>`) and database.
Prometheus strips the run id and the prefix from the lag exporter's labels (metric_relabel_configs), so the
rules see the production names (consumergroup="exchange-writer", topic="booking.events") unchanged.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from spacesync.testing import Infra, dashboard, wait_until
from spacesync.testing.kafka import produce
from spacesync.testing.prometheus import PrometheusServer, run_prometheus
from spacesync.testing.stack import (
    AVAILABILITY,
    CONSUMERS,
    LAG_EXPORTER,
    ROOMS,
    SIMULATOR,
    WRITER,
    Demo,
    LocalStack,
    Traffic,
    slot_start,
    whole_stack,
)
from spacesync.testing.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "rules" / "spacesync.rules.yml"
DASHBOARD = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "dashboards" / "spacesync.json"
LAG_ALERT = "SpacesyncConsumerLagGrowing"
BOOKINGS_PER_SECOND = 2.0
# Quicker than production so a short test sees every stage: rooms polled and reconciled, lag measured often.
FAST = {"SPACESYNC_POLL_INTERVAL_SECONDS": "2", "SPACESYNC_RECONCILE_INTERVAL_SECONDS": "5",
        "SPACESYNC_LAG_INTERVAL_SECONDS": "2"}


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with whole_stack(infra.kafka_bootstrap, infra.postgres_dsn, tmp_path_factory.mktemp("stack"),
                           env=FAST) as stack:
        yield stack


@pytest.fixture(scope="module")
async def prometheus(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrometheusServer]:
    jobs = {name: [f"127.0.0.1:{process.port}"] for name, process in stack.processes.items()}
    relabel = {LAG_EXPORTER: [
        {"source_labels": ["consumergroup"], "regex": f"(.+)-{stack.run_id}", "target_label": "consumergroup",
         "replacement": "$1"},
        {"source_labels": ["topic"], "regex": re.escape(stack.topic_prefix) + "(.+)", "target_label": "topic",
         "replacement": "$1"},
    ]}
    async with run_prometheus(require_tool("prometheus"), tmp_path_factory.mktemp("prometheus"), jobs, [RULES],
                              relabel=relabel) as server:
        yield server


async def test_every_dashboard_query_returns_data_and_the_lag_alert_fires_when_the_writer_stops(
        stack: LocalStack, prometheus: PrometheusServer) -> None:
    demo = await stack.load_demo()
    traffic = Traffic()
    load = asyncio.create_task(stack.keep_booking(demo.space_ids, BOOKINGS_PER_SECOND, traffic))
    try:
        await provoke_what_the_dashboard_shows(stack, demo)
        await every_query_returns_data(prometheus)
        assert not await lag_alerts(prometheus), "the lag alert fires while every consumer keeps up"
        assert not load.done(), f"the bookings stopped: {load.exception() if not load.cancelled() else 'cancelled'}"

        stopped = time.monotonic()
        # uvicorn re-raises SIGTERM once it has shut down gracefully; SIGKILL (-9) would mean it hung.
        assert await stack.stop(WRITER) in (0, -signal.SIGTERM), "the writer did not shut down on SIGTERM"
        firing = await wait_until(lambda: lag_alerts(prometheus, state="firing", group=WRITER),
                                  timeout=alert_deadline(), interval=2, message=f"{LAG_ALERT} firing for {WRITER}")
        took = time.monotonic() - stopped
        print(f"\n{LAG_ALERT} fired {took:.0f} s after the writer stopped ({traffic}); labels {firing[0]['labels']}")
        assert {alert["labels"]["topic"] for alert in firing} == {"booking.events"}
        assert not [a for a in await lag_alerts(prometheus) if a["labels"]["consumergroup"] != WRITER]
    finally:
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)


async def provoke_what_the_dashboard_shows(stack: LocalStack, demo: Demo) -> None:
    """Beyond the steady bookings: an Outlook meeting (the poller publishes it), slot views read, throttling and a
    failing room read (retries, errors), and an event no consumer can read (dead letters)."""
    async with httpx.AsyncClient(base_url=stack.url(SIMULATOR) + "/admin", timeout=30) as simulator:
        for fault in ({"kind": "server_busy", "operations": ["CreateItem"], "count": 2, "back_off_ms": 100},
                      {"kind": "http_500", "scope": "mailbox", "target": ROOMS[2], "operations": ["FindItem"],
                       "count": 3}):
            (await simulator.post("/faults", json=fault)).raise_for_status()
    await stack.book_outlook_meeting(ROOMS[1], slot_start(1, 20))
    await produce(stack.kafka_bootstrap, stack.topic_prefix + "booking.events", b"not an event", key=b"x")
    day = slot_start(2, 0).date().isoformat()
    async with stack.admin(AVAILABILITY) as availability:
        for path in (f"/v1/locations/{demo.location_id}/slots", f"/v1/admin/locations/{demo.location_id}/slots"):
            (await availability.get(path, params={"start": day})).raise_for_status()


async def every_query_returns_data(prometheus: PrometheusServer, timeout: float = 180) -> None:
    """Waits until each dashboard query has returned at least one number (not NaN); fails naming those that never
    did. A query that answered once is not asked again."""
    waiting = {str(query): dashboard.substitute(query.expr)
               for query in dashboard.queries(dashboard.load(DASHBOARD))}

    async def all_answered() -> bool:
        for name, expr in list(waiting.items()):
            if has_numbers(await prometheus.query(expr)):
                del waiting[name]
        return not waiting

    try:
        await wait_until(all_answered, timeout=timeout, interval=2, message="every dashboard query to return data")
    except AssertionError:
        raise AssertionError("dashboard queries without data:\n" + "\n".join(waiting)) from None


def has_numbers(result: list[dict[str, Any]]) -> bool:
    values = [series["value"][1] for series in result if "value" in series]
    return any(not math.isnan(float(value)) for value in values)


async def lag_alerts(prometheus: PrometheusServer, *, state: str | None = None,
                     group: str | None = None) -> list[dict[str, Any]]:
    """The lag alert's instances for our consumer groups (pending or firing, or only `state`)."""
    return [alert for alert in await prometheus.alerts()
            if alert["labels"].get("alertname") == LAG_ALERT
            and alert["labels"].get("consumergroup") in ((group,) if group else CONSUMERS)
            and (state is None or alert["state"] == state)]


def alert_deadline() -> float:
    """The lag alert's `for:` plus its windows and the time for the lag to build: 5 minutes at most."""
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
             if rule.get("alert") == LAG_ALERT]
    assert rules, f"{RULES} has no {LAG_ALERT}"
    hold = max(parse_duration(rule.get("for", "0s")) for rule in rules)
    return min(300.0, hold + 150.0)


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts, f"not a Prometheus duration: {text!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


def test_durations_are_read_like_prometheus() -> None:
    assert parse_duration("2m") == 120
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30).total_seconds()
    assert parse_duration("500ms") == 0.5
