"""The demo data (`python -m spacesync.exchange_simulator.demo`): what it asks for, in which order, and once.

Against a stand-in for booking-service and the simulator's admin API (a recording HTTP server); the real services
are exercised by `make run` and docker compose.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from spacesync.exchange_simulator import demo
from spacesync.exchange_simulator.seed import load_seed
from spacesync.exchange_simulator.settings import DEMO_SEED


@dataclass
class Recorder:
    """Answers like booking-service and the simulator would, and records every request."""

    locations: list[dict[str, Any]] = field(default_factory=list)
    refuse: str = ""  # a path answered 422
    requests: list[tuple[str, str, str | None, Any]] = field(default_factory=list)  # method, path, auth, body

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == self.refuse:
            return 422, {"title": "Unprocessable", "detail": "refused for the test"}
        if (method, path) == ("GET", "/v1/admin/locations"):
            return 200, self.locations
        kind = {"locations": "location", "categories": "category", "spaces": "space"}.get(path.split("/")[-1], "")
        made = sum(1 for m, p, _, _ in self.requests if (m, p) == (method, path))
        return 201, {f"{kind}_id": f"{kind}-{made}", "message": "connected"}


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    recording = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            recording.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
            status, payload = recording.answer(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do  # http.server's names

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recording, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def settings(base: str) -> demo.DemoSettings:
    return demo.DemoSettings(booking_url=base, simulator_url=base, admin_token=SecretStr("t0ken"))


def test_loads_the_demo_library_through_the_apis(recorder: tuple[Recorder, str]) -> None:
    recording, base = recorder
    said: list[str] = []
    location_id = demo.load(settings(base), said.append)
    calls = [(method, path) for method, path, _, _ in recording.requests]
    assert calls[:3] == [("GET", "/v1/admin/locations"), ("POST", "/v1/admin/locations"),
                         ("POST", "/v1/admin/categories")]
    assert location_id == "location-1"
    connect = next(body for method, path, _, body in recording.requests if path.endswith("/exchange")
                   and "server" in body)
    assert connect["server"] == f"{base}/EWS/Exchange.asmx"
    pairings = [body["resource"] for _, path, _, body in recording.requests
                if path.startswith("/v1/admin/spaces/") and path.endswith("/exchange")]
    assert pairings == list(demo.PAIRING.values())
    spaces = {body["name"]: f"space-{n}" for n, body in enumerate(
        (body for _, path, _, body in recording.requests if path == "/v1/admin/spaces"), start=1)}
    assert [body["slots"][0]["space_id"] for _, path, _, body in recording.requests if path == "/v1/bookings"] \
        == [spaces["Room 101"], spaces["Pod A"]]
    # Admin calls carry the token, patrons' bookings do not.
    assert {auth for _, path, auth, _ in recording.requests if path.startswith("/v1/admin/")} == {"Bearer t0ken"}
    assert [auth for _, path, auth, _ in recording.requests if path == "/v1/bookings"] == [None, None]
    assert calls[-1] == ("POST", "/admin/mailboxes/room-102%40library.example.org/meetings")
    assert said[-1].startswith("demo data loaded: Main Library, 2 categories, 3 spaces, 2 bookings")


def test_a_second_run_finds_the_library_and_changes_nothing(recorder: tuple[Recorder, str]) -> None:
    recording, base = recorder
    recording.locations = [{"name": "Elsewhere", "location_id": "x"}, {"name": demo.LOCATION, "location_id": "l1"}]
    assert demo.load(settings(base), lambda _: None) == "l1"
    assert [(method, path) for method, path, _, _ in recording.requests] == [("GET", "/v1/admin/locations")]


def test_a_refused_request_stops_it_saying_which_and_why(recorder: tuple[Recorder, str]) -> None:
    recording, base = recorder
    recording.refuse = "/v1/admin/categories"
    with pytest.raises(demo.DemoError, match=r"POST /v1/admin/categories failed: 422 .*refused for the test"):
        demo.load(settings(base), lambda _: None)


def test_an_unreachable_service_is_named() -> None:
    with pytest.raises(demo.DemoError, match=r"GET http://127\.0\.0\.1:9/v1/admin/locations failed"):
        demo.load(settings("http://127.0.0.1:9"), lambda _: None)


def test_the_exchange_server_can_differ_from_where_the_demo_reaches_the_simulator() -> None:
    assert demo.DemoSettings(simulator_url="http://sim:8080/").ews_url() == "http://sim:8080/EWS/Exchange.asmx"
    assert demo.DemoSettings(exchange_server="https://ews.example/EWS/Exchange.asmx").ews_url() == \
        "https://ews.example/EWS/Exchange.asmx"


@pytest.mark.parametrize(("day", "utc_hour"), [(date(2026, 1, 15), 14), (date(2026, 7, 15), 13),
                                                (date(2026, 3, 29), 13)])  # winter, summer, the day clocks go on
def test_bookings_are_local_hours_sent_in_utc(day: date, utc_hour: int) -> None:
    body = demo.booking_request("s1", day, 14, ("Ada", "Lovelace"), "Engines")
    (slot,) = body["slots"]
    start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
    assert (start.utcoffset(), start.hour, end - start) == (timedelta(0), utc_hour, timedelta(hours=1))
    assert body["public_nickname"] == "Engines"
    assert "public_nickname" not in demo.booking_request("s1", day, 14, ("Alan", "Turing"), None)


def test_tomorrow_is_the_library_s_tomorrow() -> None:
    # 23:30 UTC on 15 July is already 16 July in London: tomorrow there is the 17th.
    assert demo.tomorrow(datetime(2026, 7, 15, 23, 30, tzinfo=UTC)) == date(2026, 7, 17)
    assert demo.tomorrow(datetime(2026, 1, 15, 23, 30, tzinfo=UTC)) == date(2026, 1, 16)


def test_the_demo_fits_the_spaces_and_the_seed() -> None:
    """Every paired room is a room of the demo seed, every booking and the meeting within opening hours."""
    rooms = {mailbox.smtp for mailbox in load_seed(DEMO_SEED).mailboxes if mailbox.kind == "room"}
    assert set(demo.PAIRING.values()) <= rooms
    assert set(demo.PAIRING) == {name for _, name, _ in demo.SPACES}
    assert demo.OUTLOOK_ROOM not in {space for space, *_ in demo.BOOKINGS}  # the meeting blocks a free room
    day = date(2026, 7, 18)  # a Saturday: the shortest hours
    opening = demo.opening_hours()[day.strftime("%A").lower()][0]
    for _, hour, *_ in demo.BOOKINGS:
        assert opening["open"] <= f"{hour:02d}:00"
        assert f"{hour + 1:02d}:00" <= opening["close"]
    meeting = demo.outlook_meeting(day)
    assert (meeting["start"][11:16], meeting["end"][11:16]) == ("10:00", "12:00")
    assert meeting["start"].endswith("+01:00")
