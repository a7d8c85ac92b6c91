"""HTTP metrics for every service: request latency per route and method (prometheus-fastapi-instrumentator)."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

# Fine enough around the 100 ms objective to read a p99 from the histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def instrument_http(app: FastAPI) -> None:
    Instrumentator(excluded_handlers=["/metrics", "/healthz", "/readyz"]).instrument(
        app, latency_lowr_buckets=LATENCY_BUCKETS)
