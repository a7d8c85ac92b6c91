"""`make run`: the whole Spacesync stack on this machine, with demo data.

Starts the local Kafka and PostgreSQL (scripts/infra.sh) unless KAFKA_BOOTSTRAP_SERVERS and
SPACESYNC_POSTGRES_DSN point elsewhere, runs every service as a process (logs in .local/logs/),
waits until each is ready, loads the demo catalog and bookings (once), and stops the services on Ctrl+C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from spacesync.common.secrets import generate_key

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("SPACESYNC_STATE_DIR", ROOT / ".local"))
ADMIN_TOKEN = os.environ.get("SPACESYNC_ADMIN_TOKEN", "demo-admin-token")
DEMO_LOCATION = "Main Library"


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
# The simulator first: it is the embedded default Exchange (a test double with the demo library's rooms,
# demo_seed.yaml), and booking-service tests the demo location's connection against it.
SERVICES = [SIMULATOR, BOOKING, WRITER, POLLER, AVAILABILITY]
DEMO_EXCHANGE = {"server": f"{SIMULATOR.url}/EWS/Exchange.asmx", "username": "LIBRARY\\svc-spacesync",
                 "password": "demo-password", "title_rule": "patron_name", "populate_organizer": True}
DEMO_PAIRING = {"Room 101": "room-101@library.example.org", "Room 102": "room-102@library.example.org",
                "Pod A": "room-201@library.example.org"}


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


def load_demo_data(base: str) -> str:
    """Loads the demo catalog, bookings and an Outlook meeting once; returns the demo location's id."""
    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    for known in admin.get("/v1/admin/locations").raise_for_status().json():
        if known["name"] == DEMO_LOCATION:
            print("demo data already loaded")
            return str(known["location_id"])
    weekdays = [{"open": "08:00", "close": "22:00"}]
    weekend = [{"open": "10:00", "close": "18:00"}]
    hours = {d: weekdays for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
    hours |= {"saturday": weekend, "sunday": weekend}
    location = _post(admin, "/v1/admin/locations", {"name": DEMO_LOCATION, "timezone": "Europe/London"})
    rooms = _post(admin, "/v1/admin/categories", {"location_id": location["location_id"],
                                                  "name": "Group Study Rooms", "public_nicknames": True})
    pods = _post(admin, "/v1/admin/categories", {"location_id": location["location_id"],
                                                 "name": "Quiet Study Pods", "public_nicknames": False})
    spaces = [
        _post(admin, "/v1/admin/spaces", {"category_id": category["category_id"], "name": name, "slot_minutes": 30,
                                          "max_booking_minutes": longest, "opening_hours": hours})
        for category, name, longest in ((rooms, "Room 101", 180), (rooms, "Room 102", 180), (pods, "Pod A", 120))
    ]
    connect_to_exchange(admin, location["location_id"], spaces)
    tomorrow = (datetime.now(ZoneInfo("Europe/London")) + timedelta(days=1)).date()
    for space, hour, patron, nickname in ((spaces[0], 14, ("Ada", "Lovelace"), "Analytical Engines"),
                                          (spaces[2], 16, ("Alan", "Turing"), None)):
        start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, hour, tzinfo=ZoneInfo("Europe/London"))
        body: dict[str, Any] = {
            "patron": {"first_name": patron[0], "last_name": patron[1], "email": f"{patron[0].lower()}@example.org"},
            "slots": [{"space_id": space["space_id"], "start": start.astimezone(UTC).isoformat(),
                       "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat()}]}
        if nickname:
            body["public_nickname"] = nickname
        _post(httpx.Client(base_url=base, timeout=10), "/v1/bookings", body)
    book_outlook_meeting(tomorrow)
    print(f"demo data loaded: {DEMO_LOCATION}, 2 categories, {len(spaces)} spaces, 2 bookings for {tomorrow}")
    return str(location["location_id"])


def connect_to_exchange(admin: httpx.Client, location_id: str, spaces: list[dict[str, Any]]) -> None:
    """Connects the demo location to the simulator and pairs its spaces with rooms ('Save & Test')."""
    connected = _send(admin, "PUT", f"/v1/admin/locations/{location_id}/exchange", DEMO_EXCHANGE)
    print(connected.get("message", "location connected to Exchange"))
    for space in spaces:
        resource = DEMO_PAIRING[space["name"]]
        _send(admin, "PUT", f"/v1/admin/spaces/{space['space_id']}/exchange", {"resource": resource})
        print(f"  {space['name']:<10} paired with {resource}")


def book_outlook_meeting(day: date) -> None:
    """A staff meeting booked in Outlook in Room 102 (the simulator's admin API stands in for Outlook): the
    exchange-poller reads it, its slots leave the public view and show as 'BUSY in Outlook' to admins."""
    start = datetime(day.year, day.month, day.day, 10, tzinfo=ZoneInfo("Europe/London"))
    _post(httpx.Client(base_url=SIMULATOR.url, timeout=10),
          f"/admin/mailboxes/{DEMO_PAIRING['Room 102']}/meetings",
          {"organizer": {"name": "Jane Librarian", "smtp": "jane.librarian@library.example.org"},
           "subject": "Staff meeting", "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(),
           "free_busy": "Busy"})
    print(f"  Outlook meeting in Room 102 on {day} 10:00-12:00 (Europe/London), booked in the simulator")


def _send(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.request(method, path, json=body)
    if response.status_code >= 400:
        raise SystemExit(f"{method} {path} failed: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code >= 400:
        raise SystemExit(f"POST {path} failed: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


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
        location_id = load_demo_data(BOOKING.url)
        tomorrow = (datetime.now(ZoneInfo("Europe/London")) + timedelta(days=1)).date()
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
