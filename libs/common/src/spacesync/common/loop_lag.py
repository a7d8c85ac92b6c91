"""Event-loop lag: how late a 100 ms timer fires. A busy or blocked loop delays every request and message."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

EVENT_LOOP_LAG = Histogram(
    "spacesync_event_loop_lag_seconds", "How late the event loop ran a timer (blocking work shows here)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

INTERVAL = 0.1


async def watch_event_loop() -> None:
    """Runs until cancelled."""
    while True:
        expected = time.perf_counter() + INTERVAL
        await asyncio.sleep(INTERVAL)
        EVENT_LOOP_LAG.observe(max(0.0, time.perf_counter() - expected))
