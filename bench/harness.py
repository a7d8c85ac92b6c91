"""What the benchmarks share: services as processes with fresh schemas and topics, CPU meters, percentiles.

Each bench runs every service as its own process (`python -m spacesync.<service>`), like production, with a fresh
Postgres schema per service, a fresh topic prefix and consumer groups; on exit the processes get SIGTERM, the
schemas are dropped and the topics deleted. Kafka and PostgreSQL come from the environment
(KAFKA_BOOTSTRAP_SERVERS, SPACESYNC_POSTGRES_DSN), a Docker engine, or scripts/ (as in the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import yaml

from spacesync.testing.exchange import rooms_seed
from spacesync.testing.infra import resolve_infra
from spacesync.testing.kafka import delete_topics

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * q) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used by each process, this one included ("bench"), and by the rest of the machine (Kafka, PostgreSQL,
    anything else running) between start() and stop(), as shares of one core; "machine": of all cores."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}

    def start(self) -> None:
        self._wall = time.monotonic()
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_jiffies()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        result = {name: (cpu_seconds(pid) - self._cpu[name]) / wall for name, pid in self.pids.items()}
        busy, total = machine_jiffies()
        machine = (busy - self._machine[0]) / max(1, total - self._machine[1])
        result["rest"] = max(0.0, machine * (os.cpu_count() or 1) - sum(result.values()))
        result["machine"] = machine
        return result


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    base: str


async def wait_ready(service: Service, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=service.base, timeout=2) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise SystemExit(f"{service.name} exited with code {service.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"{service.name} was not ready at {service.base}{path} within {timeout:.0f} s")


def stop_process(service: Service) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
    try:
        service.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=10)


class Processes:
    """Services as processes with a fresh topic prefix and schemas; stopped, dropped and deleted on exit.

    `simulator(rooms)` starts the EWS simulator with a temporary seed; `service(name, module, env)` starts a
    Spacesync service with the common environment (Kafka, Postgres, prefix, its own schema and consumer group).
    """

    def __init__(self, workdir: Path, tag: str) -> None:
        self.infra = resolve_infra(ROOT)
        run = uuid.uuid4().hex[:6]
        self.prefix = f"bench{tag}{run}."
        self.run = run
        self.tag = tag
        self.workdir = workdir
        self.services: dict[str, Service] = {}
        self.schemas: list[str] = []

    def common_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SPACESYNC_KAFKA_BOOTSTRAP_SERVERS": self.infra.kafka_bootstrap,
                "SPACESYNC_KAFKA_TOPIC_PREFIX": self.prefix, "SPACESYNC_POSTGRES_DSN": self.infra.postgres_dsn,
                "SPACESYNC_LOG_LEVEL": "WARNING", **extra}

    async def simulator(self, rooms: int, name: str = "simulator") -> Service:
        seed_file = self.workdir / "seed.yaml"
        seed_file.write_text(yaml.safe_dump(rooms_seed(rooms).model_dump(mode="json", exclude_none=True)))
        port = free_port()
        service = self.start(name, "spacesync.exchange_simulator", {
            **os.environ, "SPACESYNC_SIMULATOR_SEED_FILE": str(seed_file),
            "SPACESYNC_SIMULATOR_HTTP_PORT": str(port), "SPACESYNC_SIMULATOR_LOG_LEVEL": "WARNING"}, port)
        await wait_ready(service, "/healthz")
        return service

    async def service(self, name: str, module: str, env: dict[str, str], ready: str = "/readyz") -> Service:
        """A Spacesync service with its own schema (bench_<name>_<run>) and consumer group; waits until ready."""
        port = free_port()
        schema = f"bench_{name.replace('-', '_')}_{self.run}"
        self.schemas.append(schema)
        service = self.start(name, module, {**env, "SPACESYNC_HTTP_PORT": str(port), "SPACESYNC_SCHEMA_NAME": schema,
                                            "SPACESYNC_CONSUMER_GROUP": f"{self.prefix}{name}"}, port)
        await wait_ready(service, ready)
        return service

    def start(self, name: str, module: str, env: dict[str, str], port: int) -> Service:
        """Starts `python -m module`; its output (JSON logs) goes to a file, summarised at the end."""
        with (self.workdir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.services[name] = Service(name, process, f"http://127.0.0.1:{port}")
        return self.services[name]

    @property
    def pids(self) -> dict[str, int]:
        return {name: service.process.pid for name, service in self.services.items()}

    def log_summary(self) -> None:
        """What the processes logged (WARNING and up): counts per level and the first distinct messages."""
        for name in self.services:
            levels: dict[str, int] = {}
            firsts: dict[str, None] = {}
            for line in (self.workdir / f"{name}.log").read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    level, message = str(entry.get("level", "?")), str(entry.get("message", ""))
                except ValueError:
                    level, message = "text", line
                levels[level] = levels.get(level, 0) + 1
                if len(firsts) < 3:
                    firsts.setdefault(f"{level} {message[:160]}", None)
            if levels:
                counts = ", ".join(f"{count} {level}" for level, count in sorted(levels.items()))
                print(f"log of {name}: {counts}; first: " + " | ".join(firsts))

    async def close(self) -> None:
        for service in reversed(self.services.values()):
            await asyncio.to_thread(stop_process, service)
        self.log_summary()
        db = await asyncpg.connect(self.infra.postgres_dsn)
        try:
            for schema in self.schemas:
                await db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await db.close()
        with contextlib.suppress(Exception):
            await delete_topics(self.infra.kafka_bootstrap, [self.prefix])
        self.infra.close()
