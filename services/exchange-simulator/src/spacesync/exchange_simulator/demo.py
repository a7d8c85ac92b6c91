"""The demo data of `make run` and docker compose: `python -m spacesync.exchange_simulator.demo`.

Through booking-service's HTTP API (and the simulator's admin API, standing in for Outlook) it creates the demo
library once: a location connected to this simulator, two categories, three spaces paired with the demo seed's
rooms, two bookings tomorrow and a staff meeting booked in Outlook. Run again, it finds the location and stops.
It only makes HTTP calls (standard library: the images carry no HTTP client of their own), so it runs from any
image that has this package.

Configuration: SPACESYNC_DEMO_BOOKING_URL, SPACESYNC_DEMO_SIMULATOR_URL, SPACESYNC_DEMO_EXCHANGE_SERVER (the
EWS URL as booking-service and the Exchange services reach it: default the simulator's), SPACESYNC_ADMIN_TOKEN.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from spacesync.common.settings import load_settings

LOCATION = "Main Library"
TIMEZONE = ZoneInfo("Europe/London")
EXCHANGE_ACCOUNT = {"username": "LIBRARY\\svc-spacesync", "password": "demo-password",
                    "title_rule": "patron_name", "populate_organizer": True}
# Space -> the demo seed's room mailbox (demo_seed.yaml).
PAIRING = {"Room 101": "room-101@library.example.org", "Room 102": "room-102@library.example.org",
           "Pod A": "room-201@library.example.org"}
CATEGORIES = (("Group Study Rooms", True), ("Quiet Study Pods", False))  # name, public nicknames
SPACES = (("Group Study Rooms", "Room 101", 180), ("Group Study Rooms", "Room 102", 180),
          ("Quiet Study Pods", "Pod A", 120))  # category, name, longest booking in minutes
# Tomorrow's bookings: space, local hour, patron, public nickname.
BOOKINGS = (("Room 101", 14, ("Ada", "Lovelace"), "Analytical Engines"), ("Pod A", 16, ("Alan", "Turing"), None))
OUTLOOK_ROOM, OUTLOOK_HOUR, OUTLOOK_HOURS = "Room 102", 10, 2


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_DEMO_", extra="ignore", validate_by_name=True)

    booking_url: str = "http://127.0.0.1:8081"
    simulator_url: str = "http://127.0.0.1:8090"
    # Empty: <simulator_url>/EWS/Exchange.asmx (right when the services reach the simulator as this script does).
    exchange_server: str = ""
    admin_token: SecretStr = Field(default=SecretStr("demo-admin-token"),
                                   validation_alias=AliasChoices("SPACESYNC_DEMO_ADMIN_TOKEN", "SPACESYNC_ADMIN_TOKEN"))

    def ews_url(self) -> str:
        return self.exchange_server or f"{self.simulator_url.rstrip('/')}/EWS/Exchange.asmx"


class DemoError(Exception):
    """A request the demo needs was refused; the message says which and why."""


@dataclass(frozen=True)
class Api:
    """JSON over HTTP against one base URL, with an optional bearer token."""

    base: str
    token: str = ""
    timeout: float = 10.0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base.rstrip('/')}{path}", data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) URLs)
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise DemoError(f"{method} {path} failed: {error.code} {error.read().decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as error:
            raise DemoError(f"{method} {self.base}{path} failed: {error}") from None
        return json.loads(payload) if payload else None


def opening_hours() -> dict[str, list[dict[str, str]]]:
    weekdays = [{"open": "08:00", "close": "22:00"}]
    weekend = [{"open": "10:00", "close": "18:00"}]
    hours = {day: weekdays for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}
    return hours | {"saturday": weekend, "sunday": weekend}


def tomorrow(now: datetime | None = None) -> date:
    """Tomorrow in the demo library's time zone."""
    return ((now or datetime.now(UTC)).astimezone(TIMEZONE) + timedelta(days=1)).date()


def local_hour(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TIMEZONE)


def booking_request(space_id: str, day: date, hour: int, patron: tuple[str, str],
                    nickname: str | None) -> dict[str, Any]:
    """One hour from `hour` (local time) on `day`, sent in UTC as the API wants."""
    start = local_hour(day, hour)
    body: dict[str, Any] = {
        "patron": {"first_name": patron[0], "last_name": patron[1], "email": f"{patron[0].lower()}@example.org"},
        "slots": [{"space_id": space_id, "start": start.astimezone(UTC).isoformat(),
                   "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat()}]}
    if nickname:
        body["public_nickname"] = nickname
    return body


def outlook_meeting(day: date) -> dict[str, Any]:
    """A staff meeting as Outlook books it: the exchange-poller reads it and its slots show 'BUSY in Outlook'."""
    start = local_hour(day, OUTLOOK_HOUR)
    return {"organizer": {"name": "Jane Librarian", "smtp": "jane.librarian@library.example.org"},
            "subject": "Staff meeting", "start": start.isoformat(),
            "end": (start + timedelta(hours=OUTLOOK_HOURS)).isoformat(), "free_busy": "Busy"}


def load(settings: DemoSettings, say: Callable[[str], None] = print) -> str:
    """Creates the demo library unless a location of its name exists; returns that location's id."""
    token = settings.admin_token.get_secret_value()
    admin = Api(settings.booking_url, token)
    for known in admin.call("GET", "/v1/admin/locations"):
        if known["name"] == LOCATION:
            say("demo data already loaded")
            return str(known["location_id"])
    location = admin.call("POST", "/v1/admin/locations", {"name": LOCATION, "timezone": TIMEZONE.key})
    location_id = location["location_id"]
    categories = {name: admin.call("POST", "/v1/admin/categories", {"location_id": location_id, "name": name,
                                                                   "public_nicknames": public})["category_id"]
                  for name, public in CATEGORIES}
    spaces = {name: admin.call("POST", "/v1/admin/spaces", {
        "category_id": categories[category], "name": name, "slot_minutes": 30, "max_booking_minutes": longest,
        "opening_hours": opening_hours()})["space_id"] for category, name, longest in SPACES}
    connected = admin.call("PUT", f"/v1/admin/locations/{location_id}/exchange",
                           {"server": settings.ews_url(), **EXCHANGE_ACCOUNT})
    say(connected.get("message", "location connected to Exchange"))
    for name, resource in PAIRING.items():  # 'Save & Test': booking-service checks the room in Exchange
        admin.call("PUT", f"/v1/admin/spaces/{spaces[name]}/exchange", {"resource": resource})
        say(f"  {name:<10} paired with {resource}")
    day = tomorrow()
    public = Api(settings.booking_url)
    for space, hour, patron, nickname in BOOKINGS:
        public.call("POST", "/v1/bookings", booking_request(spaces[space], day, hour, patron, nickname))
    Api(settings.simulator_url).call("POST", f"/admin/mailboxes/{quote(PAIRING[OUTLOOK_ROOM])}/meetings",
                                     outlook_meeting(day))
    end = OUTLOOK_HOUR + OUTLOOK_HOURS
    say(f"  Outlook meeting in {OUTLOOK_ROOM} on {day} {OUTLOOK_HOUR}:00-{end}:00 ({TIMEZONE.key}), "
        "booked in the simulator")
    say(f"demo data loaded: {LOCATION}, {len(CATEGORIES)} categories, {len(SPACES)} spaces, "
        f"{len(BOOKINGS)} bookings for {day}")
    return str(location_id)


def main() -> None:
    settings = load_settings(DemoSettings)
    try:
        load(settings)
    except DemoError as error:
        raise SystemExit(f"demo data not loaded: {error}") from None


if __name__ == "__main__":
    main()
