"""Runs an ASGI app with uvicorn: SIGTERM drains requests and runs the app's shutdown."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from spacesync.common.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our JSON logging is already configured
        access_log=False,  # latency and status are in the metrics; access logs would dominate the output
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
    )
