"""A location's Outlook/Exchange connection: tested before it is saved, the password write-only and encrypted."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from booking_exchange_helpers import (
    PASSWORD,
    assert_problem,
    closed_port,
    connect,
    fresh_room,
    pair,
    pairing_url,
    settings_url,
)
from booking_helpers import ADMIN, SECRET_KEY, Room, Service, make_room

from spacesync.common.db.pool import connect as connect_db
from spacesync.common.secrets import SecretBox
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import KafkaReader, Record
from spacesync.testing.exchange import WRITER


async def location_events(reader: KafkaReader, room: Room, count: int) -> list[Record]:
    return await reader.wait_for(lambda r: r.key == room.location_id and r.ce_type == "location.upserted",
                                 count=count)


async def stored_password(service: Service, room: Room) -> str | None:
    conn = await connect_db(service.settings.postgres.dsn.get_secret_value(), service.settings.schema_name)
    try:
        token: str | None = await conn.fetchval(
            "SELECT exchange_password_encrypted FROM locations WHERE id = $1::uuid", room.location_id)
        return token
    finally:
        await conn.close()


async def test_connect_confirms_and_the_password_never_leaves_encrypted(
        service: Service, room: Room, ews: EmbeddedSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    box = SecretBox(SECRET_KEY)
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        saved = await connect(service, room, ews)
        assert saved.status_code == 200, saved.text
        body = saved.json()
        assert body["message"].startswith(f"Connected to {ews.ews_url} as {WRITER}"), body
        settings = body["settings"]
        assert settings["password_set"] is True
        assert (settings["endpoint"], settings["auth_type"], settings["access"]) == (ews.ews_url, "ntlm", "delegate")
        assert settings["verified_at"] is not None

        [_, upserted] = await location_events(reader, room, 2)  # created, connected
    token = upserted.json["exchange"]["password_encrypted"]
    assert box.decrypt(token) == PASSWORD
    assert PASSWORD.encode() not in upserted.value
    column = await stored_password(service, room)
    assert column is not None
    assert column != PASSWORD
    assert box.decrypt(column) == PASSWORD

    shown = [saved, *[await service.http.get(url, headers=ADMIN) for url in (
        settings_url(room), f"/v1/admin/locations/{room.location_id}", "/v1/admin/locations")]]
    for answer in shown:
        assert answer.status_code == 200, answer.text
        assert PASSWORD not in answer.text
        assert "gAAAAA" not in answer.text, "not even the encrypted password is shown"
    assert shown[1].json() == settings
    # Every record at DEBUG, exchangelib's included, with its arguments and extra fields.
    leaked = [record for record in caplog.records if PASSWORD in str(record.__dict__)]
    assert not leaked, leaked
    assert any(record.message == "exchange settings saved" for record in caplog.records)


async def test_wrong_password_is_refused_fast_and_nothing_is_saved(service: Service, room: Room,
                                                                   ews: EmbeddedSimulator) -> None:
    started = time.monotonic()
    refused = await connect(service, room, ews, password="not-the-password")
    elapsed = time.monotonic() - started
    body = assert_problem(refused, 422, "/problems/exchange-connection")
    assert body["problem"] == "wrong_credentials"
    assert elapsed < 5, elapsed
    assert "not-the-password" not in refused.text
    assert_problem(await service.http.get(settings_url(room), headers=ADMIN), 404)
    location = await service.http.get(f"/v1/admin/locations/{room.location_id}", headers=ADMIN)
    assert (location.json()["version"], location.json()["exchange"]) == (1, None)
    assert await stored_password(service, room) is None


@pytest.mark.parametrize(("server", "problem"), [
    ("https://no-such-host.invalid/EWS/Exchange.asmx", "host_not_found"),
    (f"http://127.0.0.1:{closed_port()}/EWS/Exchange.asmx", "not_reachable"),
])
async def test_a_server_that_cannot_be_reached_says_why(service: Service, room: Room, server: str,
                                                        problem: str) -> None:
    refused = await service.http.put(settings_url(room), headers=ADMIN, json={
        "server": server, "username": WRITER, "password": PASSWORD})
    body = assert_problem(refused, 422, "/problems/exchange-connection")
    assert body["problem"] == problem, body
    assert body["detail"], body
    assert await stored_password(service, room) is None


@pytest.mark.parametrize(("where", "problem"), [
    ("/admin/mailboxes", "not_an_ews_endpoint"),  # a web server, but not EWS
    ("https", "tls"),  # https to a port that speaks plain http
])
async def test_a_server_that_is_not_ews_says_why(service: Service, room: Room, ews: EmbeddedSimulator, where: str,
                                                 problem: str) -> None:
    server = f"https://{ews.host}:{ews.port}" if where == "https" else ews.base_url + where
    refused = await service.http.put(settings_url(room), headers=ADMIN, json={
        "server": server, "username": WRITER, "password": PASSWORD})
    assert assert_problem(refused, 422, "/problems/exchange-connection")["problem"] == problem


async def test_a_server_that_does_not_answer_times_out_within_the_test_budget(
        service: Service, room: Room, ews: EmbeddedSimulator) -> None:
    async with httpx.AsyncClient(base_url=ews.base_url) as simulator:
        added = await simulator.post("/admin/faults", json={"kind": "latency", "latency_ms": 6000, "count": 1})
        assert added.status_code == 201, added.text
    started = time.monotonic()
    refused = await connect(service, room, ews)
    elapsed = time.monotonic() - started
    assert assert_problem(refused, 422, "/problems/exchange-connection")["problem"] == "timeout"
    assert elapsed < service.settings.exchange.test_timeout_seconds + 1, elapsed
    assert await stored_password(service, room) is None


async def test_options_change_without_the_password_and_without_a_new_test(service: Service, room: Room,
                                                                           ews: EmbeddedSimulator) -> None:
    first = (await connect(service, room, ews)).json()["settings"]
    options = {"server": ews.ews_url, "username": WRITER, "title_rule": "public_nickname", "populate_organizer": True}
    saved = await service.http.put(settings_url(room), headers=ADMIN, json=options)
    assert saved.status_code == 200, saved.text
    assert "not tested again" in saved.json()["message"]
    settings = saved.json()["settings"]
    assert (settings["title_rule"], settings["populate_organizer"]) == ("public_nickname", True)
    assert settings["populate_organizer_since"] is not None
    assert settings["verified_at"] == first["verified_at"]
    again = await service.http.put(settings_url(room), headers=ADMIN, json=options)
    assert again.json()["message"] == "Nothing changed."
    assert again.json()["settings"] == settings


async def test_disconnect_waits_until_no_space_is_paired(service: Service, room: Room,
                                                          ews: EmbeddedSimulator) -> None:
    await connect(service, room, ews)
    assert (await pair(service, room, fresh_room())).status_code == 200
    async with KafkaReader(service.settings.kafka.bootstrap_servers, service.topic("catalog.events")) as reader:
        assert_problem(await service.http.delete(settings_url(room), headers=ADMIN), 409, "/problems/spaces-paired")
        assert (await service.http.delete(pairing_url(room), headers=ADMIN)).status_code == 200
        gone = await service.http.delete(settings_url(room), headers=ADMIN)
        assert gone.status_code == 200, gone.text
        assert "no longer connected" in gone.json()["message"]
        [*_, last] = await location_events(reader, room, 3)
    assert last.json["exchange"] is None
    assert_problem(await service.http.get(settings_url(room), headers=ADMIN), 404)
    assert_problem(await service.http.delete(settings_url(room), headers=ADMIN), 404)
    assert await stored_password(service, room) is None


def bad_settings(server: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(name, body, field, reason fragment)"""
    good = {"server": server, "username": WRITER, "password": "s3cret-Passw0rd"}
    return [
        ("no password on first connect", {**good, "password": None}, "body.password", "required to connect"),
        ("empty password", {**good, "password": ""}, "body.password", "must not be empty"),
        ("unknown auth type", {**good, "auth_type": "kerberos"}, "body.auth_type", "'ntlm' or 'basic'"),
        ("unknown access", {**good, "access": "owner"}, "body.access", "'delegate' or 'impersonation'"),
        ("unknown title rule", {**good, "title_rule": "subject"}, "body.title_rule", "patron_name"),
        ("nonsense server", {**good, "server": "ftp://mail.example.org"}, "body.server", "neither a host name"),
        ("credentials in the URL", {**good, "server": "https://u:p@mail.example.org"}, "body.server",
         "must not contain credentials"),
        ("bad port", {**good, "server": "mail.example.org:http"}, "body.server", "invalid port"),
        ("no username", {k: v for k, v in good.items() if k != "username"}, "body.username", "Field required"),
        ("control character", {**good, "username": "LIBRARY\\svc\u0000"}, "body.username", "pattern"),
        ("unknown field", {**good, "domain": "LIBRARY"}, "body.domain", "Extra inputs"),
        ("Basic over plain http", {**good, "server": "http://mail.example.org", "auth_type": "basic"},
         "body.auth_type", "use an https:// server, or NTLM"),
    ]


async def test_bad_settings_name_the_field_and_change_nothing(service: Service, ews: EmbeddedSimulator) -> None:
    room = await make_room(service)
    for name, body, field, reason in bad_settings(ews.ews_url):
        refused = await service.http.put(settings_url(room), headers=ADMIN, json=body)
        problem = assert_problem(refused, 422, field=field)
        assert reason in {e["field"]: e["reason"] for e in problem["errors"]}[field], (name, problem)
        assert "s3cret-Passw0rd" not in refused.text, name
    location = await service.http.get(f"/v1/admin/locations/{room.location_id}", headers=ADMIN)
    assert (location.json()["version"], location.json()["exchange"]) == (1, None)


async def test_admin_token_is_required(service: Service, room: Room) -> None:
    for method, url in (("GET", settings_url(room)), ("PUT", settings_url(room)), ("DELETE", pairing_url(room)),
                        ("POST", pairing_url(room) + "/import")):
        assert_problem(await service.http.request(method, url, json={}), 401)
