"""The admin API: mailboxes and items, Outlook's side, counters, faults and limits, reset, the state file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_helpers import ROOM, assert_problem, client, items_url, meeting, meetings_url, on_loop
from ews_helpers import SEED, AccountFactory
from exchangelib import EWSDateTime, EWSTimeZone

from spacesync.exchange_simulator.calendar import CalendarItem, ExtendedKey, FreeBusy, Person
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.ews import availability, items
from spacesync.exchange_simulator.persistence import ItemView, load_state, save_state
from spacesync.exchange_simulator.seed import Seed
from spacesync.exchange_simulator.state import SimulatorState


@pytest.fixture
def admin(simulator: EmbeddedSimulator) -> Iterator[httpx.Client]:
    with client(simulator) as http:
        yield http


def book(admin: httpx.Client, body: dict[str, Any] | None = None, smtp: str = ROOM) -> dict[str, Any]:
    response = admin.post(meetings_url(smtp), json=body or meeting())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def listed(admin: httpx.Client, smtp: str = ROOM) -> list[dict[str, Any]]:
    response = admin.get(items_url(smtp))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def watch(sim: EmbeddedSimulator) -> list[tuple[str, str]]:
    """The changes the calendars tell their listeners (what notifications are made of), from now on."""
    seen: list[tuple[str, str]] = []
    on_loop(sim, lambda: sim.state.calendars.listeners.append(lambda change: seen.append(
        (change.kind.value, change.item_id))))
    return seen


# -- mailboxes and items ------------------------------------------------------------------------------------------


def test_mailboxes_come_from_the_seed(admin: httpx.Client) -> None:
    body = admin.get("/admin/mailboxes").json()
    assert [m["smtp"] for m in body["mailboxes"]] == [m["smtp"] for m in SEED["mailboxes"]]
    assert body["mailboxes"][0] == {"smtp": ROOM, "name": "Room 1", "kind": "room", "items": 0}
    assert admin.get("/admin/mailboxes/ROOM1@example.org").json()["name"] == "Room 1"
    assert_problem(admin.get("/admin/mailboxes/nobody@example.org"), 404)
    assert_problem(admin.get(items_url("nobody@example.org")), 404)
    assert_problem(admin.post(meetings_url("nobody@example.org"), json=meeting()), 404)


def test_items_show_every_field_with_extended_properties(admin: httpx.Client, simulator: EmbeddedSimulator) -> None:
    key = ExtendedKey("PublicStrings", "SpacesyncBookingId", "String")
    written = on_loop(simulator, lambda: simulator.state.calendars.create(ROOM, CalendarItem(
        id="", change_key="", mailbox=ROOM, subject="Booked by Spacesync",
        start=datetime(2030, 3, 4, 9, tzinfo=UTC), end=datetime(2030, 3, 4, 10, tzinfo=UTC),
        organizer=Person("Spacesync", "svc@example.org"), extended={key: "b-123"}, categories=("Sync",))))
    [item] = listed(admin)
    assert item["id"] == written.id
    assert item["change_key"] == written.change_key
    assert item["origin"] == "ews"
    assert item["start"] == "2030-03-04T09:00:00Z"
    assert item["organizer"] == {"name": "Spacesync", "smtp": "svc@example.org"}
    assert item["extended_properties"] == [
        {"set": "PublicStrings", "name": "SpacesyncBookingId", "type": "String", "value": "b-123"}]
    assert item["categories"] == ["Sync"]
    assert item["recurrence"] is None
    assert admin.get(items_url(item_id=written.id)).json() == item
    assert_problem(admin.get(items_url("room2@example.org", written.id)), 404)


# -- Outlook's side -----------------------------------------------------------------------------------------------


def test_outlook_books_moves_and_cancels_a_meeting(admin: httpx.Client, simulator: EmbeddedSimulator) -> None:
    changes = watch(simulator)
    response = admin.post(meetings_url(), json=meeting(free_busy="OOF"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == items_url(item_id=created["id"]).replace("@", "%40")
    assert admin.get(response.headers["location"]).json() == created
    assert created["origin"] == "outlook"
    assert created["location"] == "Room 1"  # Outlook puts the room's name there
    assert created["organizer"] == {"name": "Alice Organizer", "smtp": "alice@example.org"}
    assert (created["start"], created["end"], created["free_busy"]) == (
        "2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z", "OOF")

    # Only a new start: the meeting moves and keeps its length.
    moved = admin.patch(meetings_url(item_id=created["id"]), json={"start": "2030-03-05T14:00:00Z",
                                                                    "free_busy": "WorkingElsewhere"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["start"], moved.json()["end"]) == ("2030-03-05T14:00:00Z", "2030-03-05T15:00:00Z")
    assert moved.json()["free_busy"] == "WorkingElsewhere"
    assert moved.json()["change_key"] != created["change_key"]
    # Only a new end: longer.
    longer = admin.patch(meetings_url(item_id=created["id"]), json={"end": "2030-03-05T16:30:00Z",
                                                                     "subject": "Longer"},
                         headers={"If-Match": moved.json()["change_key"]})
    assert longer.status_code == 200, longer.text
    assert (longer.json()["start"], longer.json()["end"]) == ("2030-03-05T14:00:00Z", "2030-03-05T16:30:00Z")
    # A stale change key changes nothing.
    stale = admin.patch(meetings_url(item_id=created["id"]), json={"subject": "Stale"},
                        headers={"If-Match": created["change_key"]})
    assert_problem(stale, 412)
    assert listed(admin)[0]["subject"] == "Longer"

    assert admin.delete(meetings_url(item_id=created["id"])).status_code == 204
    assert listed(admin) == []
    assert_problem(admin.delete(meetings_url(item_id=created["id"])), 404)
    assert_problem(admin.patch(meetings_url(item_id=created["id"]), json={"subject": "x"}), 404)
    assert changes == [("CreatedEvent", created["id"]), ("ModifiedEvent", created["id"]),
                                               ("ModifiedEvent", created["id"]), ("DeletedEvent", created["id"])]


def test_outlook_can_move_a_meeting_the_sync_booked(admin: httpx.Client, simulator: EmbeddedSimulator) -> None:
    written = on_loop(simulator, lambda: simulator.state.calendars.create(ROOM, CalendarItem(
        id="", change_key="", mailbox=ROOM, start=datetime(2030, 3, 4, 9, tzinfo=UTC),
        end=datetime(2030, 3, 4, 10, tzinfo=UTC))))
    moved = admin.patch(meetings_url(item_id=written.id), json={"start": "2030-03-04T12:00:00+02:00"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["origin"], moved.json()["start"]) == ("ews", "2030-03-04T10:00:00Z")


def test_recurring_series_keeps_local_time_and_expands_in_a_window(admin: httpx.Client) -> None:
    # Mondays and Wednesdays at 10:00 in Berlin, across the switch to summer time on 2030-03-31.
    series = book(admin, meeting("2030-03-25T10:00:00+01:00", "2030-03-25T11:00:00+01:00", recurrence={
        "pattern": "weekly", "weekdays": ["Monday", "wednesday"], "count": 4, "time_zone": "Europe/Berlin"}))
    single = book(admin, meeting("2030-03-26T08:00:00Z", "2030-03-26T09:00:00Z", subject="Single"))
    assert series["recurrence"] == {"pattern": "weekly", "interval": 1, "weekdays": ["monday", "wednesday"],
                                    "count": 4, "until": None, "time_zone": "Europe/Berlin"}
    response = admin.get(items_url(), params={"start": "2030-03-26T00:00:00Z", "end": "2030-04-30T00:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(o["start"], o["type"], o["index"]) for o in body["occurrences"]] == [
        ("2030-03-26T08:00:00Z", "Single", None),
        ("2030-03-27T09:00:00Z", "Occurrence", 2),
        ("2030-04-01T08:00:00Z", "Occurrence", 3),  # 10:00 summer time
        ("2030-04-03T08:00:00Z", "Occurrence", 4),
    ]
    assert {o["item_id"] for o in body["occurrences"]} == {series["id"], single["id"]}
    assert [item["id"] for item in body["items"]] == [series["id"], single["id"]]
    # A "+" of an offset sent unencoded arrives as a space; it is still read as "+".
    unencoded = admin.get(items_url() + "?start=2030-04-01T00:00:00+01:00&end=2030-04-02T00:00:00+01:00")
    assert [o["index"] for o in unencoded.json()["occurrences"]] == [3]
    # Occurrences cannot be changed one by one here; the series can.
    occurrence_id = body["occurrences"][1]["id"]
    assert_problem(admin.patch(meetings_url(item_id=occurrence_id), json={"subject": "x"}), 422, "path.item_id")
    until = admin.patch(meetings_url(item_id=series["id"]), json={"recurrence": {
        "pattern": "daily", "until": "2030-03-27", "time_zone": "Europe/Berlin"}})
    assert until.status_code == 200, until.text
    assert admin.patch(meetings_url(item_id=series["id"]), json={"recurrence": None}).json()["recurrence"] is None


def test_item_ids_with_slash_and_plus_reach_the_item_routes(admin: httpx.Client) -> None:
    # Exchange's ids are base64 with "/" and "+": percent-encoded, they are one path segment.
    created = book(admin)
    assert admin.get(items_url(item_id=created["id"])).json()["id"] == created["id"]
    odd = "AAMk/AGI+ZmQ4=="
    for response in (admin.get(items_url(item_id=odd)), admin.delete(meetings_url(item_id=odd)),
                     admin.patch(meetings_url(item_id=odd), json={"subject": "x"})):
        assert f"no item {odd} in {ROOM}" in assert_problem(response, 404)["detail"]


MEETING_CASES: list[tuple[str, Any, str, str]] = [
    ("naive start", meeting(start="2030-03-04T10:00:00"), "body.start", "timezone"),
    ("end before start", meeting(end="2030-03-04T09:00:00+01:00"), "body.end", "must be after start"),
    ("end equals start", meeting(end="2030-03-04T10:00:00+01:00"), "body.end", "must be after start"),
    ("not a time", meeting(start="next monday"), "body.start", "datetime"),
    ("before time", meeting(start="0001-01-01T00:00:00+01:00", end="0001-01-01T01:00:00+01:00"), "body.start",
     "out of range"),
    ("end of time", meeting(start="9999-12-31T22:00:00Z", end="9999-12-31T23:00:00Z"), "body.start", "out of range"),
    ("NoData is not a status", meeting(free_busy="NoData"), "body.free_busy", "Busy"),
    ("unknown field", meeting(room="x"), "body.room", "Extra inputs"),
    ("no organizer", {k: v for k, v in meeting().items() if k != "organizer"}, "body.organizer", "required"),
    ("bad organizer address", meeting(organizer={"name": "A", "smtp": "alice"}), "body.organizer.smtp",
     "SMTP address"),
    ("control character", meeting(subject="Team\u0000meeting"), "body.subject", "U+0000"),
    ("subject too long", meeting(subject="x" * 256), "body.subject", "at most 255"),
    ("unknown zone", meeting(recurrence={"pattern": "daily", "count": 3, "time_zone": "Mars/Olympus"}),
     "body.recurrence.time_zone", "IANA"),
    ("count and until", meeting(recurrence={"pattern": "daily", "count": 3, "until": "2030-04-01"}),
     "body.recurrence.until", "not both"),
    ("weekdays on daily", meeting(recurrence={"pattern": "daily", "weekdays": ["monday"]}),
     "body.recurrence.weekdays", "only a weekly series"),
    ("unknown weekday", meeting(recurrence={"pattern": "weekly", "weekdays": ["someday"]}),
     "body.recurrence.weekdays.0", "monday"),
    ("zero interval", meeting(recurrence={"pattern": "daily", "interval": 0}), "body.recurrence.interval",
     "greater than or equal to 1"),
    ("unknown pattern", meeting(recurrence={"pattern": "monthly"}), "body.recurrence.pattern", "daily"),
    ("start off the weekdays", meeting(recurrence={"pattern": "weekly", "weekdays": ["tuesday"],
                                                   "time_zone": "Europe/Berlin"}), "body.start", "monday"),
    ("until before start", meeting(recurrence={"pattern": "daily", "until": "2030-03-01"}),
     "body.recurrence.until", "before the first occurrence"),
    ("longer than its interval", meeting(end="2030-03-05T11:00:00+01:00", recurrence={"pattern": "daily"}),
     "body.end", "between occurrences"),
    ("not an object", [meeting()], "body", "JSON object"),
]


@pytest.mark.parametrize(("body", "field", "reason"), [pytest.param(*case[1:], id=case[0]) for case in MEETING_CASES])
def test_invalid_meetings_are_refused_naming_the_field(admin: httpx.Client, simulator: EmbeddedSimulator, body: Any,
                                                       field: str, reason: str) -> None:
    changes = watch(simulator)
    problem = assert_problem(admin.post(meetings_url(), json=body), 422, field, reason)
    assert problem["type"] == "/problems/invalid-request"
    assert listed(admin) == []
    assert changes == []


def test_malformed_and_non_json_bodies(admin: httpx.Client) -> None:
    assert_problem(admin.post(meetings_url(), content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_problem(admin.post(meetings_url(), content=json.dumps(meeting()),
                              headers={"Content-Type": "text/plain"}), 415)
    assert_problem(admin.post(meetings_url(), content=b"\xff\xfe", headers={"Content-Type": "application/json"}), 400)
    assert listed(admin) == []


PATCH_CASES: list[tuple[str, Any, str, str]] = [
    ("nothing", {}, "body", "nothing to change"),
    ("null subject", {"subject": None}, "body.subject", "may not be null"),
    ("null start", {"start": None}, "body.start", "may not be null"),
    ("end before the kept start", {"end": "2030-03-04T08:00:00Z"}, "body.end", "before it starts"),
    ("end before the given start", {"start": "2030-03-04T12:00:00Z", "end": "2030-03-04T11:00:00Z"}, "body.end",
     "must be after start"),
    ("naive end", {"end": "2030-03-04T12:00:00"}, "body.end", "timezone"),
    ("unknown field", {"colour": "red"}, "body.colour", "Extra inputs"),
    ("series longer than its interval", {"recurrence": {"pattern": "daily"}, "end": "2030-03-05T10:00:00Z"},
     "body.end", "between occurrences"),
]


@pytest.mark.parametrize(("body", "field", "reason"), [pytest.param(*case[1:], id=case[0]) for case in PATCH_CASES])
def test_invalid_changes_are_refused_and_change_nothing(admin: httpx.Client, simulator: EmbeddedSimulator, body: Any,
                                                        field: str, reason: str) -> None:
    created = book(admin)
    changes = watch(simulator)
    assert_problem(admin.patch(meetings_url(item_id=created["id"]), json=body), 422, field, reason)
    assert listed(admin) == [created]
    assert changes == []


def test_item_of_another_mailbox_is_not_found(admin: httpx.Client) -> None:
    created = book(admin)
    assert_problem(admin.patch(meetings_url("room2@example.org", created["id"]), json={"subject": "x"}), 404)
    assert_problem(admin.delete(meetings_url("room2@example.org", created["id"])), 404)
    assert_problem(admin.delete(meetings_url(item_id="not-an-id")), 404)
    assert listed(admin) == [created]


@pytest.mark.parametrize(("query", "field", "reason"), [
    pytest.param({"start": "2030-01-01T00:00:00Z"}, "query.end", "both", id="only start"),
    pytest.param({"start": "2030-01-01T00:00:00", "end": "2030-01-02T00:00:00Z"}, "query.start", "timezone",
                 id="naive"),
    pytest.param({"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}, "query.end", "after start",
                 id="end before start"),
    pytest.param({"start": "2030-01-01T00:00:00Z", "end": "2033-01-01T00:00:00Z"}, "query.end", "731 days",
                 id="too long"),
    pytest.param({"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z", "limit": "3"}, "query.limit",
                 "Extra inputs", id="unknown parameter"),
])
def test_invalid_windows(admin: httpx.Client, query: dict[str, str], field: str, reason: str) -> None:
    assert_problem(admin.get(items_url(), params=query), 422, field, reason)


# -- request counters ---------------------------------------------------------------------------------------------


def test_request_counters_and_reset(admin: httpx.Client, account: AccountFactory) -> None:
    room = account()
    room.root.refresh()
    room.root.refresh()
    counted = admin.get("/admin/requests").json()
    # The version guess (ConvertId) carries the NTLM handshake's two 401 legs; then root and two refreshes.
    assert counted["operations"]["ConvertId"]["outcomes"]["http_401"] == 2
    get_folder = counted["operations"]["GetFolder"]
    assert get_folder == {"count": 3, "outcomes": {"NoError": 3}}
    assert counted["total"] == sum(op["count"] for op in counted["operations"].values())
    assert admin.post("/admin/requests/reset").status_code == 204
    assert admin.get("/admin/requests").json() == {"total": 0, "operations": {}}
    room.root.refresh()
    assert admin.get("/admin/requests").json()["operations"]["GetFolder"] == {"count": 1,
                                                                             "outcomes": {"NoError": 1}}


# -- faults and concurrency limits --------------------------------------------------------------------------------


def test_faults_are_added_listed_and_removed(admin: httpx.Client) -> None:
    response = admin.post("/admin/faults", json={"kind": "server_busy", "scope": "mailbox",
                                                 "target": "ROOM2@example.org", "count": 3, "back_off_ms": 250})
    assert response.status_code == 201, response.text
    fault = response.json()
    assert response.headers["location"] == f"/admin/faults/{fault['id']}"
    assert fault == {"id": fault["id"], "kind": "server_busy", "scope": "mailbox", "target": "ROOM2@example.org",
                     "operations": None, "count": 3, "back_off_ms": 250, "remaining": 3, "hits": 0,
                     "created": fault["created"]}
    down = admin.post("/admin/faults", json={"kind": "down"}).json()
    latency = admin.post("/admin/faults", json={"kind": "latency", "latency_ms": 10, "scope": "account",
                                                "target": "domain\\READER", "operations": ["GetItem"]}).json()
    assert latency["operations"] == ["GetItem"]
    listing = admin.get("/admin/faults").json()
    assert listing["down"] is True
    assert [f["id"] for f in listing["faults"]] == [fault["id"], down["id"], latency["id"]]
    assert admin.get(f"/admin/faults/{fault['id']}").json() == fault
    assert admin.delete(f"/admin/faults/{down['id']}").status_code == 204
    assert admin.get("/admin/faults").json()["down"] is False
    assert_problem(admin.delete(f"/admin/faults/{down['id']}"), 404)
    assert_problem(admin.get("/admin/faults/abc"), 404)
    assert admin.delete("/admin/faults").status_code == 204
    assert admin.get("/admin/faults").json() == {"down": False, "faults": []}
    # Ids are never reused.
    assert admin.post("/admin/faults", json={"kind": "drop"}).json()["id"] > latency["id"]


@pytest.mark.parametrize(("body", "field", "reason"), [
    pytest.param({"kind": "meltdown"}, "body.kind", "server_busy", id="unknown kind"),
    pytest.param({}, "body.kind", "required", id="no kind"),
    pytest.param({"kind": "drop", "scope": "room"}, "body.scope", "mailbox", id="unknown scope"),
    pytest.param({"kind": "drop", "scope": "mailbox"}, "body.target", "SMTP address", id="mailbox without target"),
    pytest.param({"kind": "drop", "scope": "account"}, "body.target", "user name", id="account without target"),
    pytest.param({"kind": "drop", "target": "room1@example.org"}, "body.target", "no target", id="target, no scope"),
    pytest.param({"kind": "drop", "scope": "mailbox", "target": "nobody@example.org"}, "body.target",
                 "no mailbox", id="unknown mailbox"),
    pytest.param({"kind": "drop", "scope": "account", "target": "DOMAIN\\ghost"}, "body.target", "no account",
                 id="unknown account"),
    pytest.param({"kind": "down", "scope": "mailbox", "target": "room1@example.org"}, "body.scope", "whole server",
                 id="scoped down"),
    pytest.param({"kind": "down", "count": 2}, "body.count", "until it is removed", id="down with count"),
    pytest.param({"kind": "drop", "count": 0}, "body.count", "greater than or equal to 1", id="count 0"),
    pytest.param({"kind": "latency", "back_off_ms": 100}, "body.back_off_ms", "only a server_busy fault",
                 id="parameter of another kind"),
    pytest.param({"kind": "server_busy", "back_off_ms": -1}, "body.back_off_ms", "greater than or equal to 0",
                 id="negative back off"),
    pytest.param({"kind": "latency", "latency_ms": 600_000}, "body.latency_ms", "less than or equal to",
                 id="latency too long"),
    pytest.param({"kind": "drop", "operations": ["Get Item"]}, "body.operations", "not an EWS operation",
                 id="bad operation"),
    pytest.param({"kind": "drop", "operations": []}, "body.operations", "at least 1", id="no operations"),
])
def test_invalid_faults_are_refused(admin: httpx.Client, body: dict[str, Any], field: str, reason: str) -> None:
    assert_problem(admin.post("/admin/faults", json=body), 422, field, reason)
    assert admin.get("/admin/faults").json()["faults"] == []


def test_concurrency_limit_overrides_the_seed() -> None:
    seed = Seed.model_validate({**SEED, "accounts": [{**SEED["accounts"][0], "max_concurrency": 3},
                                                     *SEED["accounts"][1:]]})
    with EmbeddedSimulator(seed) as sim, client(sim) as admin:
        url = "/admin/accounts/DOMAIN%5Cwriter/concurrency"
        assert admin.get(url).json() == {"account": "DOMAIN\\writer", "limit": 3, "seed_limit": 3,
                                         "overridden": False, "in_flight": 0}
        assert admin.put(url, json={"limit": 1}).json()["limit"] == 1
        assert admin.get("/admin/accounts/domain%5CWRITER/concurrency").json()["limit"] == 1
        assert sim.state.gate.limit_for("domain\\writer", 3) == 1
        unlimited = admin.put(url, json={"limit": None}).json()
        assert (unlimited["limit"], unlimited["overridden"]) == (None, True)
        accounts = admin.get("/admin/accounts").json()["accounts"]
        assert accounts[0]["concurrency"]["limit"] is None
        assert "password" not in json.dumps(accounts)
        assert admin.delete(url).status_code == 204
        assert admin.get(url).json()["limit"] == 3
        assert_problem(admin.put(url, json={"limit": 0}), 422, "body.limit", "greater than or equal to 1")
        assert_problem(admin.put(url, json={}), 422, "body.limit", "required")
        assert_problem(admin.put(url, json={"limit": "many"}), 422, "body.limit")
        assert_problem(admin.put("/admin/accounts/DOMAIN%5Cghost/concurrency", json={"limit": 1}), 404)
        assert admin.get(url).json()["limit"] == 3


# -- the admin API itself -----------------------------------------------------------------------------------------


def test_unknown_endpoints_and_methods_are_problems(admin: httpx.Client) -> None:
    assert_problem(admin.get("/admin/nothing"), 404)
    problem = assert_problem(admin.put("/admin/faults"), 405)
    assert "GET" in problem["detail"]


def test_admin_token() -> None:
    with EmbeddedSimulator(Seed.model_validate(SEED), admin_token="tok-123") as sim:
        with client(sim) as anonymous:
            problem = assert_problem(anonymous.get("/admin/mailboxes"), 401)
            assert "Bearer" in problem["detail"]
            assert_problem(anonymous.post("/admin/reset"), 401)
            assert_problem(anonymous.get("/admin/nothing"), 401)
            assert anonymous.get("/healthz").status_code == 200
        with client(sim, token="wrong") as wrong:
            assert_problem(wrong.get("/admin/mailboxes"), 401)
        with client(sim, token="tok-123") as allowed:
            assert allowed.get("/admin/mailboxes").status_code == 200


def test_reset_clears_calendars_faults_limits_and_counters(admin: httpx.Client, account: AccountFactory,
                                                           simulator: EmbeddedSimulator) -> None:
    book(admin)
    admin.post("/admin/faults", json={"kind": "latency", "latency_ms": 1})
    admin.put("/admin/accounts/DOMAIN%5Cwriter/concurrency", json={"limit": 5})
    account().root.refresh()
    changes = watch(simulator)
    assert admin.post("/admin/reset").status_code == 204
    assert listed(admin) == []
    assert admin.get("/admin/faults").json()["faults"] == []
    assert admin.get("/admin/accounts/DOMAIN%5Cwriter/concurrency").json()["overridden"] is False
    assert admin.get("/admin/requests").json()["total"] == 0
    assert changes == []  # silently
    assert book(admin)["origin"] == "outlook"


# -- the state file -------------------------------------------------------------------------------------------------


def test_state_is_saved_and_loaded(admin: httpx.Client, simulator: EmbeddedSimulator, tmp_path: Path) -> None:
    key = ExtendedKey("PublicStrings", "SpacesyncBookingId", "String")
    on_loop(simulator, lambda: simulator.state.calendars.create("room2@example.org", CalendarItem(
        id="", change_key="", mailbox="room2@example.org", start=datetime(2030, 3, 4, 9, tzinfo=UTC),
        end=datetime(2030, 3, 4, 10, tzinfo=UTC), extended={key: ("a", "b")}, free_busy=FreeBusy.TENTATIVE)))
    book(admin, meeting(recurrence={"pattern": "weekly", "interval": 2, "until": "2030-06-30",
                                    "time_zone": "Europe/Berlin"}))
    before = {smtp: listed(admin, smtp) for smtp in ("room1@example.org", "room2@example.org")}
    path = tmp_path / "state.json"
    saved = admin.post("/admin/state/save", json={"path": str(path)})
    assert saved.json() == {"path": str(path), "items": 2}
    assert admin.post("/admin/reset").status_code == 204
    assert listed(admin) == []
    loaded = admin.post("/admin/state/load", json={"path": str(path)})
    assert loaded.json() == {"path": str(path), "items": 2}
    assert {smtp: listed(admin, smtp) for smtp in before} == before
    # New items do not reuse a loaded item's running number.
    assert book(admin)["id"] not in {item["id"] for items in before.values() for item in items}


def test_state_file_errors(admin: httpx.Client, tmp_path: Path) -> None:
    created = book(admin)
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    assert_problem(admin.post("/admin/state/save", json={"path": str(other)}), 409)
    assert other.read_text() == '{"mine": true}'
    assert_problem(admin.post("/admin/state/save", json={"path": str(tmp_path / "x.txt")}), 422, "body.path", ".json")
    assert_problem(admin.post("/admin/state/save"), 422, "body.path", "no state file is configured")
    assert_problem(admin.post("/admin/state/load", json={"path": str(tmp_path / "missing.json")}), 404)
    assert_problem(admin.post("/admin/state/load", json={"path": str(other)}), 422)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "spacesync-exchange-simulator-state", "version": 1, "saved_at": "x"}')
    assert_problem(admin.post("/admin/state/load", json={"path": str(broken)}), 422)
    assert listed(admin) == [created]


def test_save_and_load_state_functions(tmp_path: Path) -> None:
    seed = Seed.model_validate(SEED)
    state = SimulatorState.from_seed(seed)
    item = state.calendars.create(ROOM, CalendarItem(
        id="", change_key="", mailbox=ROOM, subject="Kept", start=datetime(2030, 1, 1, 9, tzinfo=UTC),
        end=datetime(2030, 1, 1, 10, tzinfo=UTC), organizer=Person("A", "a@example.org"), origin="outlook"))
    path = tmp_path / "sub" / "state.json"
    assert save_state(state, path) == 1
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    restarted = SimulatorState.from_seed(seed)
    assert load_state(restarted, tmp_path / "none.json") is None
    assert load_state(restarted, path) == 1
    assert restarted.calendars.find(item.id) == item
    # A mailbox the seed no longer has is skipped.
    smaller = SimulatorState.from_seed(Seed.model_validate({"mailboxes": SEED["mailboxes"][1:], "accounts": []}))
    assert load_state(smaller, path) == 0


def test_item_view_covers_every_calendar_item_field() -> None:
    # A field added to CalendarItem must be added to ItemView too, or the admin API hides it and the state file
    # loses it.
    fields = {field.name for field in dataclasses.fields(CalendarItem)} - {"extended"} | {"extended_properties"}
    assert fields == set(ItemView.model_fields)


# -- Outlook's meetings as exchangelib sees them ----------------------------------------------------------------


@pytest.mark.skipif("FindItem" not in items.HANDLERS, reason="FindItem/GetItem are not implemented yet")
def test_outlook_meeting_shows_in_the_calendar_view(admin: httpx.Client, account: AccountFactory) -> None:
    book(admin, meeting("2030-03-04T10:00:00+01:00", "2030-03-04T11:00:00+01:00", subject="Outlook single"))
    book(admin, meeting("2030-03-05T09:00:00Z", "2030-03-05T09:30:00Z", subject="Outlook daily",
                        recurrence={"pattern": "daily", "count": 3}))
    room = account()
    zone = EWSTimeZone("UTC")
    start, end = EWSDateTime(2030, 3, 1, tzinfo=zone), EWSDateTime(2030, 3, 10, tzinfo=zone)
    seen = sorted((item.start.astimezone(zone), item.subject, item.organizer.email_address)
                  for item in room.calendar.view(start=start, end=end))
    assert seen == [
        (EWSDateTime(2030, 3, 4, 9, tzinfo=zone), "Outlook single", "alice@example.org"),
        (EWSDateTime(2030, 3, 5, 9, tzinfo=zone), "Outlook daily", "alice@example.org"),
        (EWSDateTime(2030, 3, 6, 9, tzinfo=zone), "Outlook daily", "alice@example.org"),
        (EWSDateTime(2030, 3, 7, 9, tzinfo=zone), "Outlook daily", "alice@example.org"),
    ]


@pytest.mark.skipif("GetUserAvailabilityRequest" not in availability.HANDLERS,
                    reason="GetUserAvailability is not implemented yet")
def test_outlook_free_busy_statuses_show_in_free_busy(admin: httpx.Client, account: AccountFactory) -> None:
    statuses = ["Busy", "OOF", "WorkingElsewhere", "Tentative"]
    for hour, status in enumerate(statuses, start=8):
        book(admin, meeting(f"2030-03-04T{hour:02}:00:00Z", f"2030-03-04T{hour:02}:30:00Z", free_busy=status))
    room = account()
    zone = EWSTimeZone("UTC")
    start = EWSDateTime(2030, 3, 4, tzinfo=zone)
    [info] = list(room.protocol.get_free_busy_info(accounts=[(ROOM, "Room", False)], start=start,
                                                   end=start + timedelta(days=1)))
    assert [event.busy_type for event in info.calendar_events] == statuses
