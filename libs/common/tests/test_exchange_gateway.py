"""The Exchange gateway with real exchangelib against the real EWS simulator (no mocks).

Each test gets a simulator with the demo seed (its own port and state) and a gateway; exchangelib's process-wide
protocol cache is emptied after each test. With SPACESYNC_EWS_SCHEMA_DIR set, every EWS answer is also checked
against messages.xsd (as in the simulator's own tests).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib.resources
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from exchangelib import close_connections
from exchangelib import errors as ews
from exchangelib.protocol import CachingProtocol
from prometheus_client import REGISTRY

from spacesync.common.events.catalog import ExchangeAccess, ExchangeAuth
from spacesync.common.exchange import (
    Appointment,
    ConnectionProblem,
    ExchangeError,
    ExchangeGateway,
    ExchangeServer,
    GatewaySettings,
    ItemGone,
    ItemRef,
    service_endpoint,
)
from spacesync.common.exchange.errors import Call, classify
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.seed import Seed, load_seed
from spacesync.testing import wait_until
from spacesync.testing.exchange import SchemaCheck

WRITER = "LIBRARY\\svc-spacesync"
IMPERSONATOR = "svc-impersonation@library.example.org"
READONLY = "LIBRARY\\svc-readonly"
PASSWORD = "demo-password"
ROOM = "room-101@library.example.org"
ROOM2 = "room-102@library.example.org"
JANE = {"name": "Jane Librarian", "smtp": "jane.librarian@library.example.org"}
START = dt.datetime(2030, 3, 4, 9, tzinfo=dt.UTC)
AUTHS = [pytest.param(ExchangeAuth.NTLM, id="ntlm"), pytest.param(ExchangeAuth.BASIC, id="basic")]


# -- fixtures -----------------------------------------------------------------------------------------------------


def demo_seed() -> Seed:
    return load_seed(Path(str(importlib.resources.files("spacesync.exchange_simulator") / "demo_seed.yaml")))


@pytest.fixture
def simulator() -> Iterator[EmbeddedSimulator]:
    check = SchemaCheck()
    with EmbeddedSimulator(demo_seed()) as sim:
        sim.state.response_observers.append(check)
        yield sim
    assert not check.failures, "\n".join(check.failures)


def settings(**changes: Any) -> GatewaySettings:
    return GatewaySettings(**{"timeout_seconds": 10.0, "test_timeout_seconds": 4.0, "max_connections": 4,
                              "worker_threads": 8, "verify_tls": True, "ca_bundle": None, **changes})


@pytest.fixture
async def gateway() -> AsyncIterator[ExchangeGateway]:
    made = ExchangeGateway(settings())
    yield made
    await made.close()
    close_connections()  # exchangelib caches protocols per process


@pytest.fixture
async def admin(simulator: EmbeddedSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.base_url, timeout=10) as client:
        yield client


def server(sim: EmbeddedSimulator | str, username: str = WRITER, password: str = PASSWORD,
           auth: ExchangeAuth = ExchangeAuth.NTLM, access: ExchangeAccess = ExchangeAccess.DELEGATE) -> ExchangeServer:
    endpoint = sim if isinstance(sim, str) else sim.ews_url
    return ExchangeServer(endpoint=endpoint, username=username, password=password, auth_type=auth, access=access)


def appointment(slot: str = "slot-1", start: dt.datetime = START, hours: int = 1, **changes: Any) -> Appointment:
    fields: dict[str, Any] = {"slot_id": slot, "booking_id": "booking-7", "subject": "Ada Lovelace",
                              "body": "Booked on the library website.\nPatron: Ada Lovelace", "start": start,
                              "end": start + dt.timedelta(hours=hours), "location": "Study Room 101", **changes}
    return Appointment(**fields)


async def items(admin: httpx.AsyncClient, mailbox: str = ROOM) -> list[Any]:
    answer = await admin.get(f"/admin/mailboxes/{quote(mailbox)}/items")
    answer.raise_for_status()
    found: list[Any] = answer.json()["items"]
    return found


def stamps(item: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in item["extended_properties"] if p["set"] == "PublicStrings"}


async def add_fault(admin: httpx.AsyncClient, **spec: Any) -> None:
    answer = await admin.post("/admin/faults", json=spec)
    assert answer.status_code == 201, answer.text


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def failure(work: Any) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        await work
    return caught.value


def requests_seen(state: Any, operation: str | None = None, outcome: str | None = None) -> int:
    """EWS requests the simulator answered (401 legs of the NTLM handshake included), by operation / outcome."""
    total = 0.0
    for metric in state.metrics.requests.collect():
        for found in metric.samples:
            labels = found.labels
            if found.name.endswith("_total") and operation in (None, labels["operation"]) \
                    and outcome in (None, labels["outcome"]):
                total += found.value
    return int(total)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- service_endpoint (no infrastructure) ------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("mail.example.org", "https://mail.example.org/EWS/Exchange.asmx"),
    ("  mail.example.org:8443 ", "https://mail.example.org:8443/EWS/Exchange.asmx"),
    ("https://mail.example.org", "https://mail.example.org/EWS/Exchange.asmx"),
    ("https://mail.example.org/", "https://mail.example.org/EWS/Exchange.asmx"),
    ("http://127.0.0.1:8080/EWS/Exchange.asmx", "http://127.0.0.1:8080/EWS/Exchange.asmx"),
    ("https://outlook.office365.com/ews/exchange.asmx", "https://outlook.office365.com/ews/exchange.asmx"),
])
def test_service_endpoint(given: str, expected: str) -> None:
    assert service_endpoint(given) == expected


@pytest.mark.parametrize("given", ["ftp://mail.example.org", "https://", "https:///EWS/Exchange.asmx"])
def test_service_endpoint_refuses_what_is_not_a_host_or_url(given: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an http"):
        service_endpoint(given)


def test_server_key_and_repr_hide_the_password() -> None:
    one = server("https://mail.example.org/EWS/Exchange.asmx", password="Secret-1")
    assert "Secret-1" not in one.key
    assert "Secret-1" not in repr(one)
    assert one.key != replace(one, password="Secret-2").key
    assert one.key.startswith("LIBRARY\\svc-spacesync@mail.example.org#")


# -- connection test ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", AUTHS)
async def test_connection_reports_the_server(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                             auth: ExchangeAuth) -> None:
    before = sample("spacesync_ews_requests_total", operation="test_connection", outcome="ok")
    report = await gateway.test_connection(server(simulator, auth=auth))
    assert report.endpoint == simulator.ews_url
    assert report.username == WRITER
    assert report.server_version == "Exchange 2016 (15.1.2507)"
    assert 0 < report.seconds < 4
    assert "Exchange 2016 (15.1.2507)" in report.message
    assert requests_seen(simulator.state, operation="ConvertId", outcome="ErrorInvalidIdMalformed") == 1
    assert sample("spacesync_ews_requests_total", operation="test_connection", outcome="ok") == before + 1


@pytest.mark.parametrize("auth", AUTHS)
async def test_wrong_password_fails_fast_without_retrying(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                                          auth: ExchangeAuth, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    error = await failure(gateway.test_connection(server(simulator, password="Wr0ng-Passw0rd", auth=auth)))
    assert time.monotonic() - started < 2
    assert error.problem == ConnectionProblem.WRONG_CREDENTIALS
    assert not error.transient
    assert WRITER in error.message
    assert simulator.host in error.message
    # One unauthenticated request and the NTLM legs, or one Basic request: no retry loop.
    assert sum(simulator.state.operation_counts.values()) <= (3 if auth == ExchangeAuth.NTLM else 1)
    texts = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    basic = base64.b64encode(f"{WRITER}:Wr0ng-Passw0rd".encode()).decode()
    assert not [text for text in texts if "Wr0ng-Passw0rd" in text or basic in text]


async def test_host_not_found(gateway: ExchangeGateway) -> None:
    error = await failure(gateway.test_connection(server("https://nonexistent.invalid/EWS/Exchange.asmx")))
    assert error.problem == ConnectionProblem.HOST_NOT_FOUND
    assert "nonexistent.invalid" in error.message


def test_an_unreadable_ca_bundle_stops_the_gateway_at_start(tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello")
    for bundle in (tmp_path / "missing.pem", tmp_path / "not-a-ca.pem"):
        with pytest.raises(ValueError, match="SPACESYNC_EXCHANGE_CA_BUNDLE"):
            ExchangeGateway(settings(ca_bundle=str(bundle)))


async def test_not_reachable(gateway: ExchangeGateway) -> None:
    port = free_port()  # nothing listens there any more
    error = await failure(gateway.test_connection(server(f"http://127.0.0.1:{port}/EWS/Exchange.asmx")))
    assert error.problem == ConnectionProblem.NOT_REACHABLE
    assert error.transient
    assert f"127.0.0.1:{port}" in error.message


async def test_tls_to_a_plain_http_port(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    error = await failure(gateway.test_connection(server(f"https://127.0.0.1:{simulator.port}/EWS/Exchange.asmx")))
    assert error.problem == ConnectionProblem.TLS


async def test_not_ews_when_the_path_is_not_ews(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    error = await failure(gateway.test_connection(server(simulator.base_url + "/owa/")))
    assert error.problem == ConnectionProblem.NOT_EWS
    assert "404" in error.message
    assert "/EWS/Exchange.asmx" in error.message


@pytest.mark.parametrize("auth", AUTHS)
async def test_not_ews_when_a_web_server_answers_html(gateway: ExchangeGateway, auth: ExchangeAuth) -> None:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html><body><h1>Welcome to our intranet</h1></body></html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    async with serving(app) as base:
        error = await failure(gateway.test_connection(server(base + "/EWS/Exchange.asmx", auth=auth)))
    assert error.problem == ConnectionProblem.NOT_EWS


async def test_timeout_when_the_server_never_answers() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel accepts connections; nobody ever reads or answers
    port = listener.getsockname()[1]
    quick = ExchangeGateway(settings(test_timeout_seconds=1.0))
    try:
        started = time.monotonic()
        error = await failure(quick.test_connection(server(f"http://127.0.0.1:{port}/EWS/Exchange.asmx")))
        assert time.monotonic() - started < 2
        assert error.problem == ConnectionProblem.TIMEOUT
        assert error.transient
    finally:
        listener.close()
        await quick.close()
        close_connections()


# -- TLS with our own CA bundle ----------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (PEM files: certificate, key): an internal CA's server."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Spacesync test Exchange")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "exchange.pem", tmp_path / "exchange.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class serving:  # used like a function: `async with serving(app, tls) as base_url`
    """Runs an aiohttp app on 127.0.0.1 (a free port), with TLS when given a context."""

    def __init__(self, app: web.Application, tls: ssl.SSLContext | None = None) -> None:
        self.runner = web.AppRunner(app, access_log=None)
        self.tls = tls

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


def tls_proxy(simulator: EmbeddedSimulator) -> web.Application:
    """HTTPS in front of the simulator, request by request (fine for Basic; NTLM authenticates connections)."""

    async def forward(request: web.Request) -> web.Response:
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() in ("authorization", "content-type", "x-anchormailbox")}
        async with httpx.AsyncClient() as client:
            answer = await client.post(simulator.ews_url, content=await request.read(), headers=headers)
        response = web.Response(status=answer.status_code, body=answer.content,
                                headers={"Content-Type": answer.headers.get("content-type", "text/xml")})
        for offer in answer.headers.get_list("www-authenticate"):
            response.headers.add("WWW-Authenticate", offer)
        return response

    app = web.Application()
    app.router.add_post("/EWS/Exchange.asmx", forward)
    return app


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_untrusted_certificate_then_trusted_with_the_ca_bundle(
        simulator: EmbeddedSimulator, certificate: tuple[Path, Path]) -> None:
    async with serving(tls_proxy(simulator), server_tls(certificate)) as base:
        target = server(base + "/EWS/Exchange.asmx", auth=ExchangeAuth.BASIC)
        default = ExchangeGateway(settings())
        trusting = ExchangeGateway(settings(ca_bundle=str(certificate[0])))
        blind = ExchangeGateway(settings(verify_tls=False))
        try:
            error = await failure(default.test_connection(target))
            assert error.problem == ConnectionProblem.TLS
            assert "not trusted" in error.message
            assert "CA" in error.message
            # Also for the calls themselves (exchangelib's HTTP adapter), not only the probe.
            error = await failure(default.find_stamped(target, ROOM, "slot-1"))
            assert error.problem == ConnectionProblem.TLS
            close_connections()

            report = await trusting.test_connection(target)
            assert report.server_version == "Exchange 2016 (15.1.2507)"
            assert await trusting.find_stamped(target, ROOM, "slot-1") == []

            assert (await blind.test_connection(target)).server_version.startswith("Exchange 2016")
        finally:
            for made in (default, trusting, blind):
                await made.close()
            close_connections()


# -- 'Save & Test' of a pairing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "access", "mailbox"), [
    pytest.param(WRITER, ExchangeAccess.DELEGATE, ROOM, id="delegate"),
    pytest.param(IMPERSONATOR, ExchangeAccess.IMPERSONATION, ROOM2, id="impersonation"),
])
async def test_check_resource_ok(simulator: EmbeddedSimulator, gateway: ExchangeGateway, username: str,
                                 access: ExchangeAccess, mailbox: str) -> None:
    await gateway.check_resource(server(simulator, username, access=access), mailbox)
    assert requests_seen(simulator.state, operation="GetFolder", outcome="NoError") == 1
    assert requests_seen(simulator.state, operation="CreateItem") == 0  # the check creates nothing


async def test_check_resource_unknown_mailbox(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    error = await failure(gateway.check_resource(server(simulator), "room-999@library.example.org"))
    assert error.problem == ConnectionProblem.MAILBOX_NOT_FOUND
    assert "room-999@library.example.org" in error.message


async def test_check_resource_unknown_mailbox_with_impersonation(simulator: EmbeddedSimulator,
                                                                 gateway: ExchangeGateway) -> None:
    target = server(simulator, IMPERSONATOR, access=ExchangeAccess.IMPERSONATION)
    error = await failure(gateway.check_resource(target, "room-999@library.example.org"))
    assert error.problem == ConnectionProblem.MAILBOX_NOT_FOUND


async def test_check_resource_read_only_account(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    error = await failure(gateway.check_resource(server(simulator, READONLY), ROOM))
    assert error.problem == ConnectionProblem.ACCESS_DENIED
    assert not error.transient
    assert READONLY in error.message
    assert ROOM in error.message
    assert "Editor" in error.message
    assert "impersonation" in error.message


async def test_check_resource_impersonation_not_granted(simulator: EmbeddedSimulator,
                                                        gateway: ExchangeGateway) -> None:
    error = await failure(gateway.check_resource(server(simulator, READONLY, access=ExchangeAccess.IMPERSONATION),
                                                 ROOM))
    assert error.problem == ConnectionProblem.ACCESS_DENIED
    assert "impersonate" in error.message


async def test_check_resource_is_time_bounded(simulator: EmbeddedSimulator, admin: httpx.AsyncClient) -> None:
    await add_fault(admin, kind="latency", latency_ms=1500, operations=["GetFolder"])
    quick = ExchangeGateway(settings(test_timeout_seconds=0.5))
    try:
        started = time.monotonic()
        error = await failure(quick.check_resource(server(simulator), ROOM))
        assert time.monotonic() - started < 1.5
        assert error.problem == ConnectionProblem.TIMEOUT
    finally:
        await quick.close()
        close_connections()


# -- items ----------------------------------------------------------------------------------------------------------


async def test_create_puts_a_stamped_busy_utc_appointment_in_the_room(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    ok_before = sample("spacesync_ews_requests_total", operation="create", outcome="ok")
    berlin_start = START.astimezone(dt.timezone(dt.timedelta(hours=1)))  # the same instant, another offset
    ref = await gateway.create(server(simulator), ROOM, appointment(start=berlin_start))
    assert ref.item_id
    assert ref.change_key
    [item] = await items(admin)
    assert item["id"] == ref.item_id
    assert item["change_key"] == ref.change_key
    assert (item["start"], item["end"]) == ("2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z")
    assert (item["start_time_zone"], item["end_time_zone"]) == ("UTC", "UTC")
    assert item["free_busy"] == "Busy"
    assert item["reminder_is_set"] is False
    assert (item["subject"], item["location"], item["body_type"]) == ("Ada Lovelace", "Study Room 101", "Text")
    assert item["body"] == "Booked on the library website.\nPatron: Ada Lovelace"
    assert stamps(item) == {"SpacesyncSlotId": "slot-1", "SpacesyncBookingId": "booking-7"}
    assert sample("spacesync_ews_requests_total", operation="create", outcome="ok") == ok_before + 1
    assert sample("spacesync_ews_request_seconds_count", operation="create") >= 1


async def test_create_with_impersonation(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                         admin: httpx.AsyncClient) -> None:
    target = server(simulator, IMPERSONATOR, access=ExchangeAccess.IMPERSONATION, auth=ExchangeAuth.BASIC)
    ref = await gateway.create(target, ROOM2, appointment())
    assert [item["id"] for item in await items(admin, ROOM2)] == [ref.item_id]
    assert await gateway.find_stamped(target, ROOM2, "slot-1") == [ref]


async def test_create_refused_for_a_read_only_account(simulator: EmbeddedSimulator,
                                                      gateway: ExchangeGateway) -> None:
    error = await failure(gateway.create(server(simulator, READONLY), ROOM, appointment()))
    assert error.problem == ConnectionProblem.ACCESS_DENIED


async def test_find_stamped_finds_only_that_slot(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    target = server(simulator)
    first = await gateway.create(target, ROOM, appointment("slot-1"))
    await gateway.create(target, ROOM, appointment("slot-2", start=START + dt.timedelta(hours=3)))
    assert await gateway.find_stamped(target, ROOM, "slot-1") == [first]
    assert await gateway.find_stamped(target, ROOM, "slot-9") == []
    assert await gateway.find_stamped(target, ROOM2, "slot-1") == []
    assert requests_seen(simulator.state, operation="FindItem", outcome="NoError") == 3


async def test_update_moves_the_appointment(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                            admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    ref = await gateway.create(target, ROOM, appointment())
    moved = await gateway.update(target, ROOM, ref, appointment(start=START + dt.timedelta(days=1), hours=2,
                                                                subject="Ada Lovelace (moved)", location="Room 2"))
    assert moved.item_id == ref.item_id
    assert moved.change_key != ref.change_key
    [item] = await items(admin)
    assert (item["start"], item["end"]) == ("2030-03-05T09:00:00Z", "2030-03-05T11:00:00Z")
    assert (item["subject"], item["location"], item["change_key"]) == ("Ada Lovelace (moved)", "Room 2",
                                                                      moved.change_key)
    assert stamps(item) == {"SpacesyncSlotId": "slot-1", "SpacesyncBookingId": "booking-7"}


async def test_update_overwrites_an_outlook_change(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                                   admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    ref = await gateway.create(target, ROOM, appointment())
    changed = await admin.patch(f"/admin/mailboxes/{quote(ROOM)}/meetings/{quote(ref.item_id, safe='')}",
                                json={"subject": "Edited in Outlook"})
    assert changed.status_code == 200, changed.text
    # Our change key is stale now: the booking is the truth (AlwaysOverwrite).
    moved = await gateway.update(target, ROOM, ref, appointment(subject="Ada Lovelace"))
    [item] = await items(admin)
    assert item["subject"] == "Ada Lovelace"
    assert item["change_key"] == moved.change_key
    await admin.patch(f"/admin/mailboxes/{quote(ROOM)}/meetings/{quote(ref.item_id, safe='')}",
                      json={"subject": "Edited again"})
    await gateway.delete(target, ROOM, moved)  # a stale change key does not keep it alive either
    assert await items(admin) == []


async def test_update_after_delete_is_item_gone_and_delete_twice_is_fine(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    ref = await gateway.create(target, ROOM, appointment())
    gone_before = sample("spacesync_ews_requests_total", operation="update", outcome="item_gone")
    await gateway.delete(target, ROOM, ref)
    assert await items(admin) == []
    await gateway.delete(target, ROOM, ref)
    with pytest.raises(ItemGone) as caught:
        await gateway.update(target, ROOM, ref, appointment())
    assert not caught.value.transient
    assert sample("spacesync_ews_requests_total", operation="update", outcome="item_gone") == gone_before + 1
    assert requests_seen(simulator.state, operation="DeleteItem") == 2


async def test_update_of_an_item_deleted_in_outlook_is_item_gone(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    ref = await gateway.create(target, ROOM, appointment())
    answer = await admin.delete(f"/admin/mailboxes/{quote(ROOM)}/meetings/{quote(ref.item_id, safe='')}")
    assert answer.status_code == 204
    with pytest.raises(ItemGone):
        await gateway.update(target, ROOM, ref, appointment())
    await gateway.delete(target, ROOM, ref)


async def test_view_shows_our_appointments_and_outlook_meetings(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    ours = await gateway.create(target, ROOM, appointment(start=START + dt.timedelta(hours=4)))
    booked = await admin.post(f"/admin/mailboxes/{quote(ROOM)}/meetings", json={
        "organizer": JANE, "subject": "Staff meeting", "start": "2030-03-04T10:00:00+01:00",
        "end": "2030-03-04T11:00:00+01:00", "free_busy": "OOF",
        "recurrence": {"pattern": "weekly", "count": 3, "time_zone": "Europe/Berlin"}})
    assert booked.status_code == 201, booked.text
    entries = await gateway.view(target, ROOM, START - dt.timedelta(days=1), START + dt.timedelta(days=20))
    assert [(e.start, e.subject) for e in entries] == [
        (START, "Staff meeting"), (START + dt.timedelta(hours=4), "Ada Lovelace"),
        (START + dt.timedelta(days=7), "Staff meeting"), (START + dt.timedelta(days=14), "Staff meeting")]
    mine = entries[1]
    assert (mine.item_id, mine.slot_id, mine.booking_id, mine.busy_status) == (ours.item_id, "slot-1", "booking-7",
                                                                               "Busy")
    assert mine.end - mine.start == dt.timedelta(hours=1)
    outlook = [e for e in entries if e.subject == "Staff meeting"]
    assert all(e.slot_id is None and e.booking_id is None for e in outlook)
    assert all(e.organizer == "Jane Librarian" and e.busy_status == "OOF" for e in outlook)
    assert len({e.item_id for e in outlook}) == 3  # occurrences, each with its own id
    assert all(e.start.utcoffset() == dt.timedelta(0) for e in entries)
    assert await gateway.view(target, ROOM, START + dt.timedelta(days=30), START + dt.timedelta(days=31)) == []


async def test_a_view_is_one_find_item_with_organizer_names_or_without(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    await gateway.create(target, ROOM, appointment(start=START + dt.timedelta(hours=4)))
    booked = await admin.post(f"/admin/mailboxes/{quote(ROOM)}/meetings", json={
        "organizer": JANE, "subject": "Staff meeting", "start": START.isoformat(),
        "end": (START + dt.timedelta(hours=1)).isoformat(), "recurrence": {"pattern": "weekly", "count": 3}})
    assert booked.status_code == 201, booked.text
    span = (START - dt.timedelta(days=1), START + dt.timedelta(days=20))

    def answered() -> tuple[int, int]:
        return (requests_seen(simulator.state, "FindItem", "NoError"),
                requests_seen(simulator.state, "GetItem", "NoError"))

    before = answered()
    named = await gateway.view(target, ROOM, *span)
    unnamed = await gateway.view(target, ROOM, *span, organizer=False)

    after = answered()
    assert (after[0] - before[0], after[1] - before[1]) == (2, 0)  # one FindItem per view, no GetItem
    outlook = [e for e in named if e.slot_id is None]
    assert [e.organizer for e in outlook] == ["Jane Librarian"] * 3  # FindItem gives the name (no address)
    assert all(e.organizer is None for e in unnamed)
    assert [replace(e, organizer=None) for e in named] == unnamed  # the rest, stamps included, is the same
    assert [(e.slot_id, e.booking_id) for e in unnamed if e.slot_id] == [("slot-1", "booking-7")]


async def test_naive_times_are_refused(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await gateway.create(server(simulator), ROOM, appointment(start=START.replace(tzinfo=None)))


# -- faults, throttling ------------------------------------------------------------------------------------------


async def test_server_busy_backs_off_only_that_server(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    busy = server(simulator)
    other = server(simulator, IMPERSONATOR, access=ExchangeAccess.IMPERSONATION)
    await gateway.find_stamped(busy, ROOM, "slot-1")
    await gateway.find_stamped(other, ROOM2, "slot-1")
    throttled_before = sample("spacesync_ews_throttled_total")
    await add_fault(admin, kind="server_busy", scope="account", target=WRITER, count=1, back_off_ms=1500)

    asked = time.monotonic()
    error = await failure(gateway.find_stamped(busy, ROOM, "slot-1"))
    assert error.problem == ConnectionProblem.THROTTLED
    assert error.transient
    assert error.back_off == 1.5
    assert sample("spacesync_ews_throttled_total") == throttled_before + 1

    answered: list[float] = []
    simulator.state.response_observers.append(lambda _operation, _payload: answered.append(time.monotonic()))
    waiting = asyncio.create_task(gateway.find_stamped(busy, ROOM, "slot-1"))
    started = time.monotonic()
    assert await gateway.find_stamped(other, ROOM2, "slot-1") == []  # another account: not delayed
    assert time.monotonic() - started < 1.0
    assert len(answered) == 1
    assert not waiting.done()

    assert await waiting == []
    assert len(answered) == 2
    # The throttled account's next request reached Exchange only after the back-off it was given.
    assert answered[1] >= asked + 1.5


async def test_http_503_is_throttling_with_retry_after(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                                       admin: httpx.AsyncClient) -> None:
    await add_fault(admin, kind="http_503", retry_after_s=3, count=1)
    error = await failure(gateway.find_stamped(server(simulator), ROOM, "slot-1"))
    assert error.problem == ConnectionProblem.THROTTLED
    assert error.back_off == 3.0


async def test_throttled_check_does_not_wait_past_its_time(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    await gateway.find_stamped(target, ROOM, "slot-1")
    await add_fault(admin, kind="server_busy", scope="account", target=WRITER, count=1, back_off_ms=60_000)
    assert (await failure(gateway.find_stamped(target, ROOM, "slot-1"))).problem == ConnectionProblem.THROTTLED
    seen = sum(simulator.state.operation_counts.values())
    started = time.monotonic()
    error = await failure(gateway.check_resource(target, ROOM))
    assert error.problem == ConnectionProblem.THROTTLED
    assert error.back_off is not None
    assert error.back_off > 50
    assert time.monotonic() - started < 0.5
    assert sum(simulator.state.operation_counts.values()) == seen


async def test_http_500_is_a_server_error(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                          admin: httpx.AsyncClient) -> None:
    await add_fault(admin, kind="http_500", count=1, operations=["CreateItem"])
    target = server(simulator)
    error = await failure(gateway.create(target, ROOM, appointment()))
    assert error.problem == ConnectionProblem.SERVER_ERROR
    assert error.transient
    assert (await gateway.create(target, ROOM, appointment())).item_id


async def test_dropped_connection_is_not_throttling(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                                    admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    # Several sessions in the pool: exchangelib then reports a connection error as ErrorServerBusy.
    await asyncio.gather(*(gateway.find_stamped(target, ROOM, f"slot-{n}") for n in range(4)))
    await add_fault(admin, kind="drop", count=1)
    error = await failure(gateway.find_stamped(target, ROOM, "slot-1"))
    assert error.problem == ConnectionProblem.NOT_REACHABLE
    assert error.transient
    assert await gateway.find_stamped(target, ROOM, "slot-1") == []  # no back-off recorded


async def test_server_going_down_then_up(simulator: EmbeddedSimulator, gateway: ExchangeGateway,
                                         admin: httpx.AsyncClient) -> None:
    target = server(simulator)
    await gateway.find_stamped(target, ROOM, "slot-1")
    await add_fault(admin, kind="down")
    error = await failure(gateway.find_stamped(target, ROOM, "slot-1"))
    assert error.problem == ConnectionProblem.NOT_REACHABLE
    assert (await admin.delete("/admin/faults")).status_code == 204
    assert await gateway.find_stamped(target, ROOM, "slot-1") == []


async def test_calls_per_server_are_bounded(simulator: EmbeddedSimulator, admin: httpx.AsyncClient) -> None:
    await add_fault(admin, kind="latency", latency_ms=200, scope="account", target=WRITER)
    bounded = ExchangeGateway(settings(max_connections=2))
    peak = 0

    def observe(_operation: str, _payload: bytes) -> None:
        nonlocal peak
        peak = max(peak, simulator.state.gate.current(WRITER))

    try:
        await bounded.find_stamped(server(simulator), ROOM, "warm-up")
        simulator.state.response_observers.append(observe)
        await asyncio.gather(*(bounded.find_stamped(server(simulator), ROOM, f"slot-{n}") for n in range(6)))
        assert 1 <= peak <= 2
    finally:
        await bounded.close()
        close_connections()


async def test_a_cancelled_call_is_counted_as_cancelled_not_as_an_error(
        simulator: EmbeddedSimulator, gateway: ExchangeGateway, admin: httpx.AsyncClient) -> None:
    """A poller losing its lock or a service shutting down cancels its calls in flight: those are no Exchange
    failures (SpacesyncExchangeErrorsHigh counts every outcome but ok, item_gone, rejected, throttled, cancelled)."""
    await gateway.find_stamped(server(simulator), ROOM, "warm-up")
    await add_fault(admin, kind="latency", latency_ms=2000, scope="account", target=WRITER)
    errors = sample("spacesync_ews_requests_total", operation="find_stamped", outcome="error")
    cancelled = sample("spacesync_ews_requests_total", operation="find_stamped", outcome="cancelled")
    call = asyncio.create_task(gateway.find_stamped(server(simulator), ROOM, "slot-1"))
    await wait_until(lambda: simulator.state.gate.current(WRITER) >= 1, message="the call reached Exchange")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert sample("spacesync_ews_requests_total", operation="find_stamped", outcome="error") == errors
    assert sample("spacesync_ews_requests_total", operation="find_stamped", outcome="cancelled") == cancelled + 1


# -- settings change ----------------------------------------------------------------------------------------------


def cached_passwords(endpoint: str) -> list[str]:
    return [credentials.password for (cached_endpoint, credentials) in CachingProtocol._protocol_cache
            if cached_endpoint == endpoint]


async def test_forget_after_a_password_change(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    old = server(simulator)
    await gateway.find_stamped(old, ROOM, "slot-1")
    assert cached_passwords(simulator.ews_url) == [PASSWORD]

    async def change_password() -> None:
        authenticator = simulator.state.authenticator
        next(a for a in authenticator.accounts if a.username == WRITER).password = "N3w-password"
        authenticator.close()
        authenticator.__post_init__()  # rewrites the NTLM password file from the seed

    simulator.call(change_password())
    # NTLM authenticated the open connection, not each request: the cached sessions still work, as with IIS.
    assert await gateway.find_stamped(old, ROOM, "slot-1") == []

    gateway.forget(old)
    assert cached_passwords(simulator.ews_url) == []
    error = await failure(gateway.find_stamped(old, ROOM, "slot-1"))  # a new connection, a new handshake
    assert error.problem == ConnectionProblem.WRONG_CREDENTIALS
    gateway.forget(old)

    new = replace(old, password="N3w-password")
    assert await gateway.find_stamped(new, ROOM, "slot-1") == []
    assert (await gateway.test_connection(new)).username == WRITER
    assert cached_passwords(simulator.ews_url) == ["N3w-password"]


async def test_close_leaves_nothing_cached(simulator: EmbeddedSimulator) -> None:
    made = ExchangeGateway(settings())
    await made.find_stamped(server(simulator), ROOM, "slot-1")
    await made.find_stamped(server(simulator, auth=ExchangeAuth.BASIC, username=IMPERSONATOR,
                                   access=ExchangeAccess.IMPERSONATION), ROOM2, "slot-1")
    assert len(cached_passwords(simulator.ews_url)) == 2
    await made.close()
    assert cached_passwords(simulator.ews_url) == []
    with pytest.raises(RuntimeError, match="closed"):
        await made.find_stamped(server(simulator), ROOM, "slot-1")


async def test_mailboxes_of_one_server_share_its_protocol(simulator: EmbeddedSimulator,
                                                         gateway: ExchangeGateway) -> None:
    # Many mailboxes of one server in parallel share its Configuration and protocol (one version probe).
    target = server(simulator)
    rooms = [ROOM, ROOM2, "room-201@library.example.org", "room-202@library.example.org"]
    views = await asyncio.gather(*(gateway.view(target, room, START, START + dt.timedelta(days=1)) for room in rooms))
    assert views == [[], [], [], []]
    assert requests_seen(simulator.state, operation="ConvertId", outcome="ErrorInvalidIdMalformed") == 1
    assert cached_passwords(simulator.ews_url) == [PASSWORD]


async def test_a_tested_endpoint_needs_no_version_probe(simulator: EmbeddedSimulator,
                                                       gateway: ExchangeGateway) -> None:
    await gateway.test_connection(server(simulator))
    other = server(simulator, IMPERSONATOR, access=ExchangeAccess.IMPERSONATION, auth=ExchangeAuth.BASIC)
    await gateway.create(other, ROOM2, appointment())
    assert requests_seen(simulator.state, operation="ConvertId", outcome="ErrorInvalidIdMalformed") == 1


async def test_an_unreadable_item_id_is_gone(simulator: EmbeddedSimulator, gateway: ExchangeGateway) -> None:
    target = server(simulator)
    broken = ItemRef("bm90LWFuLWl0ZW0taWQ=", "AAAA")
    with pytest.raises(ItemGone):
        await gateway.update(target, ROOM, broken, appointment())
    await gateway.delete(target, ROOM, broken)


def raised(*errors: BaseException) -> BaseException:
    """The last error, raised while handling the ones before it (as exchangelib chains them)."""
    caught: BaseException | None = None
    for error in errors:
        try:
            if caught is None:
                raise error
            try:
                raise caught
            except BaseException:
                raise error  # noqa: B904  # chained implicitly (__context__), as exchangelib does
        except BaseException as current:
            caught = current
    assert caught is not None
    return caught


@pytest.mark.parametrize(("error", "problem", "transient"), [
    pytest.param(ews.ErrorQuotaExceeded("full"), ConnectionProblem.SERVER_ERROR, False, id="quota"),
    pytest.param(ews.ErrorCalendarDurationIsTooLong("long"), ConnectionProblem.SERVER_ERROR, False, id="calendar"),
    pytest.param(ews.ErrorMailboxStoreUnavailable("down"), ConnectionProblem.SERVER_ERROR, True, id="store"),
    pytest.param(ews.ErrorInternalServerError("oops"), ConnectionProblem.SERVER_ERROR, True, id="internal"),
    pytest.param(ews.ErrorServerBusy("busy", back_off=5.0), ConnectionProblem.THROTTLED, True, id="busy"),
    pytest.param(ews.ErrorTooManyObjectsOpened("many"), ConnectionProblem.THROTTLED, True, id="objects"),
    pytest.param(ews.ErrorMailRecipientNotFound("who"), ConnectionProblem.MAILBOX_NOT_FOUND, False, id="recipient"),
    pytest.param(ews.ErrorFolderNotFound("none"), ConnectionProblem.ACCESS_DENIED, False, id="folder"),
    pytest.param(ews.RedirectError(url="https://other/owa"), ConnectionProblem.NOT_EWS, False, id="redirect"),
    pytest.param(ews.ErrorTimeoutExpired("slow"), ConnectionProblem.TIMEOUT, True, id="ews-timeout"),
])
def test_classify(error: BaseException, problem: ConnectionProblem, transient: bool) -> None:
    mapped = classify(error, Call(server("https://mail.example.org/EWS/Exchange.asmx"), "create", ROOM))
    assert mapped is not None
    assert (mapped.problem, mapped.transient) == (problem, transient)
    assert "mail.example.org" in mapped.message or ROOM in mapped.message


def test_classify_reads_the_network_cause_behind_server_busy() -> None:
    # exchangelib, with more than one session: connection refused -> ErrorTimeoutExpired -> ErrorServerBusy.
    chained = raised(ConnectionRefusedError(111, "Connection refused"),
                     requests.exceptions.ConnectionError("Max retries exceeded"),
                     ews.ErrorTimeoutExpired("Reraised from ConnectionError(...)"),
                     ews.ErrorServerBusy("Reraised from ErrorTimeoutExpired(...)", back_off=10))
    mapped = classify(chained, Call(server("https://mail.example.org/EWS/Exchange.asmx"), "view", ROOM))
    assert mapped is not None
    assert mapped.problem == ConnectionProblem.NOT_REACHABLE


def test_classify_leaves_bugs_alone() -> None:
    assert classify(TypeError("bug"), Call(server("https://mail.example.org"), "view")) is None
