"""Real Kafka and PostgreSQL for tests, found in this order:

1. environment variables (KAFKA_BOOTSTRAP_SERVERS; SPACESYNC_POSTGRES_DSN or DATABASE_URL): used as they are;
2. a Docker engine: testcontainers start a Kafka (KRaft) and a PostgreSQL container;
3. otherwise: the project's scripts/ start a local Kafka and PostgreSQL as processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class KafkaControl:
    """Stops and starts the broker, for outage tests. Only where the tests own the broker."""

    stop_fn: Callable[[], object]
    start_fn: Callable[[], object]
    how: str

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_fn)

    async def start(self) -> None:
        await asyncio.to_thread(self.start_fn)


@dataclass
class Infra:
    kafka_bootstrap: str
    postgres_dsn: str
    kafka_control: KafkaControl | None
    origin: dict[str, str] = field(default_factory=dict)
    _cleanup: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        self._cleanup.close()


def resolve_infra(repo_root: Path) -> Infra:
    stack = ExitStack()
    scripts = LocalScripts(repo_root)
    origin: dict[str, str] = {}

    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("SPACESYNC_KAFKA_BOOTSTRAP_SERVERS")
    control: KafkaControl | None = None
    if kafka:
        origin["kafka"] = "environment"
        if scripts.available and kafka == scripts.kafka_bootstrap and scripts.running("kafka"):
            control = scripts.kafka_control()
    elif docker_available():
        kafka, control = _kafka_container(stack)
        origin["kafka"] = "testcontainers"
    else:
        kafka = scripts.start("kafka", stack)
        control = scripts.kafka_control()
        origin["kafka"] = "local process (scripts/kafka.sh)"

    postgres = os.environ.get("SPACESYNC_POSTGRES_DSN") or os.environ.get("DATABASE_URL")
    if postgres:
        origin["postgres"] = "environment"
    elif docker_available():
        postgres = _postgres_container(stack)
        origin["postgres"] = "testcontainers"
    else:
        postgres = scripts.start("postgres", stack)
        origin["postgres"] = "local process (scripts/postgres.sh)"
    return Infra(kafka, postgres, control, origin, stack)


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class LocalScripts:
    """scripts/kafka.sh and scripts/postgres.sh of the repository (real processes on 127.0.0.1)."""

    def __init__(self, repo_root: Path) -> None:
        self.root = repo_root
        self.available = (repo_root / "scripts" / "infra.sh").exists()
        self.kafka_bootstrap = f"127.0.0.1:{os.environ.get('SPACESYNC_KAFKA_PORT', '39092')}"
        pg_port = os.environ.get("SPACESYNC_PG_PORT", "35432")
        self.postgres_dsn = f"postgresql://spacesync:spacesync@127.0.0.1:{pg_port}/spacesync"

    def _run(self, name: str, command: str, *, check: bool = True) -> int:
        result = subprocess.run(["bash", str(self.root / "scripts" / f"{name}.sh"), command],
                                check=False, capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise RuntimeError(f"scripts/{name}.sh {command} failed:\n{result.stdout}\n{result.stderr}")
        return result.returncode

    def running(self, name: str) -> bool:
        return self._run(name, "status", check=False) == 0

    def start(self, name: str, stack: ExitStack) -> str:
        """Starts the service unless it already runs; stops it at the end only if the tests started it."""
        if not self.available:
            raise RuntimeError("no Kafka/PostgreSQL given (environment), no Docker engine, and no scripts/")
        if not self.running(name):
            self._run(name, "start")
            stack.callback(self._run, name, "stop", check=False)
        return self.kafka_bootstrap if name == "kafka" else self.postgres_dsn

    def kafka_control(self) -> KafkaControl:
        return KafkaControl(lambda: self._run("kafka", "stop"), lambda: self._run("kafka", "start"),
                            how="scripts/kafka.sh stop/start")


def _kafka_container(stack: ExitStack) -> tuple[str, KafkaControl]:
    from testcontainers.community.kafka import KafkaContainer

    container: Any = stack.enter_context(KafkaContainer().with_kraft())
    wrapped = container.get_wrapped_container()
    # A paused container keeps its port mapping, so clients reconnect to the same address afterwards.
    return container.get_bootstrap_server(), KafkaControl(wrapped.pause, wrapped.unpause, how="docker pause")


def _postgres_container(stack: ExitStack) -> str:
    from testcontainers.community.postgres import PostgresContainer

    container: Any = stack.enter_context(PostgresContainer("postgres:16", driver=None))
    url: str = container.get_connection_url()
    return url
