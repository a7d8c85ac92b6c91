"""The whole stack as local processes (`python -m <service>`, like `make run`) on free loopback ports, for tests
that need every service running for real: a Prometheus scraping them, promtool checking their /metrics.

Each stack is isolated on shared infrastructure: its own topic prefix and consumer groups (a run id appended to
the service name), the database it is given, a fresh secret key. Logs go to `workdir/logs/<service>.log`.

    async with LocalStack(infra.kafka_bootstrap, postgres_dsn, tmp_path) as stack:
        await stack.start_all()
        await stack.load_demo()
        await stack.stop("exchange-writer")      # SIGTERM, waits for the exit
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import uuid
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from spacesync.common.secrets import generate_key
from spacesync.testing.kafka import delete_topics
from spacesync.testing.wait import wait_until

SIMULATOR = "exchange-simulator"
BOOKING = "booking-service"
WRITER = "exchange-writer"
POLLER = "exchange-poller"
AVAILABILITY = "availability-service"
# The simulator first: booking-service tests a location's connection against it.
MODULES = {
    SIMULATOR: "spacesync.exchange_simulator",
    BOOKING: "spacesync.booking_service",
    WRITER: "spacesync.exchange_writer",
    POLLER: "spacesync.exchange_poller",
    AVAILABILITY: "spacesync.availability_service",
}
CONSUMERS = (BOOKING, WRITER, POLLER, AVAILABILITY)
LAG_EXPORTER = "kafka-lag-exporter"
ADMIN_TOKEN = "stack-admin-token"  # noqa: S105 - a test stack's admin token
# The simulator's demo seed (demo_seed.yaml): the sync account and its rooms.
EXCHANGE_ACCOUNT = {"username": "LIBRARY\\svc-spacesync", "password": "demo-password"}
ROOMS = ("room-101@library.example.org", "room-102@library.example.org", "room-201@library.example.org")
OUTLOOK_ORGANIZER = {"name": "Jane Librarian", "smtp": "jane.librarian@library.example.org"}
STOP_TIMEOUT = 30.0


@asynccontextmanager
async def fresh_database(server_dsn: str) -> AsyncIterator[str]:
    """A database of its own on the server of `server_dsn` (its DSN), dropped afterwards."""
    name = f"spacesync_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def whole_stack(kafka_bootstrap: str, server_dsn: str, workdir: Path,
                      env: dict[str, str] | None = None) -> AsyncIterator[LocalStack]:
    """Every service and the Kafka lag exporter started on a fresh database; afterwards all stopped, and the
    stack's topics and database deleted."""
    async with fresh_database(server_dsn) as dsn:
        stack = LocalStack(kafka_bootstrap, dsn, workdir, env=env or {})
        try:
            async with stack:
                await stack.start_all()
                await stack.start_lag_exporter()
                yield stack
        finally:
            await delete_topics(kafka_bootstrap, [stack.topic_prefix])


def free_port() -> int:
    """A port the OS says is free on 127.0.0.1 now (another process may take it before we bind it: rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class StackProcess:
    name: str
    port: int
    process: Process
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Demo:
    """What load_demo made: a location with one space per room, each paired with its room."""

    location_id: str
    space_ids: list[str]
    rooms: dict[str, str]  # space id -> mailbox


@dataclass
class Traffic:
    """What keep_booking's requests got: status code -> count."""

    answers: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1

    def __str__(self) -> str:
        return ", ".join(f"{count} x {status}" for status, count in sorted(self.answers.items()))


@dataclass
class LocalStack:
    kafka_bootstrap: str
    postgres_dsn: str
    workdir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Extra environment for every service (e.g. shorter poll intervals); per service: start(name, env=...).
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, StackProcess] = field(default_factory=dict)
    secret_keys: str = field(default_factory=generate_key)

    @property
    def topic_prefix(self) -> str:
        return f"stack{self.run_id}."

    def consumer_group(self, service: str) -> str:
        return f"{service}-{self.run_id}"

    def url(self, service: str) -> str:
        return self.processes[service].url

    def base_env(self) -> dict[str, str]:
        return {
            "SPACESYNC_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "SPACESYNC_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "SPACESYNC_KAFKA_TOPIC_PARTITIONS": "3",
            "SPACESYNC_POSTGRES_DSN": self.postgres_dsn,
            "SPACESYNC_POSTGRES_POOL_MIN_SIZE": "1",
            "SPACESYNC_ADMIN_TOKEN": ADMIN_TOKEN,
            "SPACESYNC_SECRET_KEYS": self.secret_keys,
            "SPACESYNC_LOG_LEVEL": "INFO",
            **self.env,
        }

    async def start(self, name: str, *, module: str | None = None, env: dict[str, str] | None = None,
                    ready_path: str = "/readyz", timeout: float = 90.0) -> StackProcess:
        """Starts one process and waits until `ready_path` answers 200 (a process that exits fails at once)."""
        port = free_port()
        service_env = {**os.environ, **self.base_env(), "SPACESYNC_HTTP_PORT": str(port)}
        if name in CONSUMERS:
            service_env |= {"SPACESYNC_CONSUMER_GROUP": self.consumer_group(name),
                            "SPACESYNC_INSTANCE_ID": f"{name}-{self.run_id}"}
        service_env |= env or {}
        log = self.workdir / "logs" / f"{name}.log"
        process = await spawn([sys.executable, "-m", module or MODULES[name]], log, env=service_env)
        running = self.processes[name] = StackProcess(name, port, process, log)
        async with httpx.AsyncClient(base_url=running.url, timeout=2) as client:
            async def ready() -> bool:
                if process.returncode is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(log)}")
                try:
                    return (await client.get(ready_path)).status_code == 200
                except httpx.HTTPError:
                    return False
            try:
                await wait_until(ready, timeout=timeout, interval=0.3, message=f"{name} ready at {running.url}")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{tail(log)}") from None
        return running

    async def start_all(self) -> None:
        for name in MODULES:
            await self.start(name)

    async def start_lag_exporter(self) -> StackProcess:
        """The Kafka lag exporter, reporting this stack's consumer groups and topics only, every second."""
        return await self.start(LAG_EXPORTER, module="spacesync.common.kafka.lag_exporter", env={
            "SPACESYNC_LAG_EXPORTER_GROUPS": f".*-{self.run_id}",
            "SPACESYNC_LAG_EXPORTER_TOPICS": re.escape(self.topic_prefix) + ".*",
            "SPACESYNC_LAG_EXPORTER_INTERVAL_SECONDS": "1"})

    async def stop(self, name: str) -> int:
        """SIGTERM (a graceful shutdown), then the exit code; killed when it does not stop in time."""
        return await terminate(self.processes.pop(name).process)

    async def close(self) -> None:
        for name in reversed(list(self.processes)):
            await self.stop(name)

    async def __aenter__(self) -> LocalStack:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    # -- demo data, through the public and admin APIs as an operator would ----------------------------------------

    def admin(self, service: str = BOOKING) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), timeout=30,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    async def load_demo(self) -> Demo:
        """A location connected to the simulator with one space per demo room, each paired ('Save & Test')."""
        hours = {day: [{"open": "00:00", "close": "24:00"}] for day in
                 ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
        async with self.admin() as admin:
            location = await _send(admin, "POST", "/v1/admin/locations", {"name": "Main Library", "timezone": "UTC"})
            category = await _send(admin, "POST", "/v1/admin/categories", {
                "location_id": location["location_id"], "name": "Study Rooms", "public_nicknames": False})
            await _send(admin, "PUT", f"/v1/admin/locations/{location['location_id']}/exchange", {
                "server": f"{self.url(SIMULATOR)}/EWS/Exchange.asmx", **EXCHANGE_ACCOUNT,
                "title_rule": "patron_name", "populate_organizer": True})
            rooms = {}
            for index, mailbox in enumerate(ROOMS):
                space = await _send(admin, "POST", "/v1/admin/spaces", {
                    "category_id": category["category_id"], "name": f"Room {index + 1}", "slot_minutes": 30,
                    "max_booking_minutes": 180, "opening_hours": hours})
                await _send(admin, "PUT", f"/v1/admin/spaces/{space['space_id']}/exchange", {"resource": mailbox})
                rooms[space["space_id"]] = mailbox
        return Demo(location["location_id"], list(rooms), rooms)

    async def keep_booking(self, space_ids: list[str], per_second: float, traffic: Traffic, *, limit: int = 2000,
                           conflict_every: int = 10) -> None:
        """Books distinct slots round the spaces at about `per_second` until cancelled or `limit` requests; every
        `conflict_every`-th request asks for a slot just booked (a 409, as patrons racing for a room)."""
        async with httpx.AsyncClient(base_url=self.url(BOOKING), timeout=30) as client:
            for index in range(limit):
                taken = index % conflict_every == conflict_every - 1 and index >= len(space_ids)
                slot = index - len(space_ids) if taken else index
                space = space_ids[slot % len(space_ids)]
                response = await book_half_hour(client, space, slot_start(2, slot // len(space_ids)))
                traffic.count(response.status_code)
                await asyncio.sleep(1 / per_second)  # pacing the load, not waiting for anything

    async def book_outlook_meeting(self, mailbox: str, start: datetime, minutes: int = 60) -> dict[str, Any]:
        """A meeting someone booked in Outlook (the simulator's admin API stands in for Outlook)."""
        async with httpx.AsyncClient(base_url=self.url(SIMULATOR), timeout=30) as client:
            return await _send(client, "POST", f"/admin/mailboxes/{mailbox}/meetings", {
                "organizer": OUTLOOK_ORGANIZER, "subject": "Staff meeting", "start": start.isoformat(),
                "end": (start + timedelta(minutes=minutes)).isoformat(), "free_busy": "Busy"})


def slot_start(days_ahead: int, index: int) -> datetime:
    """The index-th half hour of the day `days_ahead` from today (UTC): distinct slots for distinct indexes."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days_ahead)
    return day + timedelta(days=index // 48, minutes=30 * (index % 48))


async def book_half_hour(client: httpx.AsyncClient, space_id: str, start: datetime) -> httpx.Response:
    """POST /v1/bookings on booking-service's client: one patron, one 30-minute slot; the response as it came."""
    return await client.post("/v1/bookings", json={
        "patron": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
        "slots": [{"space_id": space_id, "start": start.isoformat(),
                   "end": (start + timedelta(minutes=30)).isoformat()}]})


async def _send(client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.request(method, path, json=body)
    if response.status_code >= 400:
        raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


async def spawn(command: list[str], log: Path, *, env: dict[str, str] | None = None) -> Process:
    """Starts `command` with its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(*command, stdout=output, stderr=asyncio.subprocess.STDOUT,
                                                    env=env)


async def terminate(process: Process, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, then the exit code; SIGKILL when it has not exited after `timeout` seconds."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
    return await process.wait()


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return f"(no log at {log})"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
