"""Runs an ASGI app under uvicorn on a free loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from spacesync.testing.wait import wait_until


@dataclass
class RunningApp:
    app: FastAPI
    base_url: str
    client: httpx.AsyncClient


@asynccontextmanager
async def run_app(app: FastAPI, *, startup_timeout: float = 60.0) -> AsyncIterator[RunningApp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=10))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=startup_timeout, message="app startup")
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("the app stopped during startup")
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield RunningApp(app, base_url, client)
    finally:
        server.should_exit = True
        await task
        sock.close()
