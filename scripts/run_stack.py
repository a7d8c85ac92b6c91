"""`make run`: the whole Spacesync stack on this machine, with demo data.

Starts the local Kafka and PostgreSQL (scripts/infra.sh) unless KAFKA_BOOTSTRAP_SERVERS and
SPACESYNC_POSTGRES_DSN point elsewhere, runs every service and the Kafka lag exporter as processes (logs in
.local/logs/), waits until each is ready, loads the demo data (spacesync.exchange_simulator.demo, once), and stops
the services on Ctrl+C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from spacesync.common.secrets import generate_key
from spacesync.exchange_simulator import demo

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("SPACESYNC_STATE_DIR", ROOT / ".local"))
ADMIN_TOKEN = os.environ.get("SPACESYNC_ADMIN_TOKEN", "demo-admin-token")


@dataclass
class Service:
    name: str
    module: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SIMULATOR = Service("exchange-simulator", "spacesync.exchange_simulator", 8090)
BOOKING = Service("booking-service", "spacesync.booking_service", 8081)
WRITER = Service("exchange-writer", "spacesync.exchange_writer", 8082)
POLLER = Service("exchange-poller", "spacesync.exchange_poller", 8083)
AVAILABILITY = Service("availability-service", "spacesync.availability_service", 8084)
LAG_EXPORTER = Service("kafka-lag-exporter", "spacesync.common.kafka.lag_exporter", 8085)
# The simulator first: it is the embedded default Exchange (a test double with the demo library's rooms,
# demo_seed.yaml), and booking-service tests the demo location's connection against it.
SERVICES = [SIMULATOR, BOOKING, WRITER, POLLER, AVAILABILITY, LAG_EXPORTER]


def secret_keys() -> str:
    """The key that encrypts Exchange passwords: SPACESYNC_SECRET_KEYS, else one made once for this machine
    (kept in .local/, so passwords saved earlier still decrypt)."""
    if os.environ.get("SPACESYNC_SECRET_KEYS"):
        return os.environ["SPACESYNC_SECRET_KEYS"]
    path = STATE / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generate_key())
        path.chmod(0o600)
    return path.read_text().strip()


def infrastructure_env() -> dict[str, str]:
    # The simulator keeps its calendars across runs, like the services' database: Sync IDs stay valid.
    env = {"SPACESYNC_ADMIN_TOKEN": ADMIN_TOKEN, "SPACESYNC_SECRET_KEYS": secret_keys(),
           "SPACESYNC_SIMULATOR_STATE_FILE": str(STATE / "exchange-simulator-state.json")}
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("SPACESYNC_POSTGRES_DSN"):
        print("using Kafka and PostgreSQL from the environment")
        return env
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "up"], check=True)
    exports = subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "env"], check=True,
                             capture_output=True, text=True).stdout
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def start(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path = STATE / "logs" / f"{service.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", service.module], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **env, "SPACESYNC_HTTP_PORT": str(service.port)})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{service.name} exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                print(f"{service.name:<20} ready at {service.url}  (log: {log_path})")
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"{service.name} not ready after 90 s; see {log_path}")


def main() -> None:
    env = infrastructure_env()
    processes = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for service in SERVICES:
            processes.append(start(service, env))
        try:
            location_id = demo.load(demo.DemoSettings(booking_url=BOOKING.url, simulator_url=SIMULATOR.url,
                                                      admin_token=SecretStr(ADMIN_TOKEN)))
        except demo.DemoError as error:
            raise SystemExit(f"demo data not loaded: {error}") from None
        tomorrow = demo.tomorrow()
        print(f"""
Spacesync is running. Try:
  curl -s {BOOKING.url}/v1/spaces
  open {BOOKING.url}/docs        (OpenAPI; admin token: {ADMIN_TOKEN})
  make events                         (the CloudEvents on Kafka, as they arrive)
  curl -s {SIMULATOR.url}/admin/mailboxes/room-101@library.example.org/items
                                      (Room 101's Exchange calendar in the EWS simulator:
                                       {SIMULATOR.url}/EWS/Exchange.asmx, LIBRARY\\svc-spacesync / demo-password)
  curl -s {WRITER.url}/metrics | grep spacesync_writer   (the exchange-writer)
  curl -s "{AVAILABILITY.url}/v1/locations/{location_id}/slots?start={tomorrow}"
                                      (tomorrow's public day grid: available or not)
  curl -s -H "Authorization: Bearer {ADMIN_TOKEN}" \\
       "{AVAILABILITY.url}/v1/admin/locations/{location_id}/slots?start={tomorrow}"
                                      (the admin grid: booked by whom, 'BUSY in Outlook' with the organizer)
  curl -s {POLLER.url}/metrics | grep spacesync_poller   (the exchange-poller: rooms watched, picture age)
  curl -s {LAG_EXPORTER.url}/metrics | grep kafka_consumergroup_lag
                                      (each consumer group's lag per partition, for Prometheus)
Ctrl+C stops the services (Kafka and PostgreSQL keep running: make infra-down).""")
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    crashed = [s.name for s, p in zip(SERVICES, processes, strict=False) if p.returncode not in (0, -15, None)]
    if crashed and not stopping:
        raise SystemExit(f"stopped because {', '.join(crashed)} exited; see {STATE / 'logs'}")


if __name__ == "__main__":
    main()
