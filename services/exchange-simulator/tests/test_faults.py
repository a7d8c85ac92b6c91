"""Faults as real exchangelib meets them: every row of the error table, scopes, latency, the concurrency limit.

What exchangelib 5.6.0 raises (found here, FailFast unless said):
- ErrorServerBusy fault: ErrorServerBusy with .back_off (seconds); FaultTolerance sleeps and retries, and raises
  RateLimitError at once when the back off exceeds max_wait.
- HTTP 401 (wrong password): UnauthorizedError; FaultTolerance takes it for throttling (10 s back off).
- HTTP 503: ErrorServerBusy; FaultTolerance sleeps Retry-After and retries.
- HTTP 500 with HTML: MalformedResponseError, with either policy (no retry).
- Dropped connection, server down, connection refused: ErrorTimeoutExpired, with either policy, as long as the
  protocol has one session (exchangelib opens sessions on demand; with more than one open it lowers the pool and
  raises ErrorServerBusy under FailFast, or backs off RETRY_WAIT=10 s under FaultTolerance).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from admin_helpers import client, wait_for
from ews_helpers import PASSWORD, AccountFactory, requests_seen
from exchangelib import (
    DELEGATE,
    NTLM,
    Account,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FailFast,
    FaultTolerance,
    Version,
)
from exchangelib.errors import (
    ErrorServerBusy,
    ErrorTimeoutExpired,
    MalformedResponseError,
    RateLimitError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.version import EXCHANGE_2016
from lxml import etree

from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.faults import ConcurrencyGate, Faults, FaultSpec, request_mailboxes


@pytest.fixture
def admin(simulator: EmbeddedSimulator) -> Iterator[httpx.Client]:
    with client(simulator) as http:
        yield http


def add_fault(admin: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = admin.post("/admin/faults", json=spec)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def ready(make: AccountFactory, **options: Any) -> Account:
    """An account that has guessed the version and authenticated, so the next request is the one under test."""
    room = make(**options)
    room.root.refresh()
    return room


def timed(work: Any) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


# -- ErrorServerBusy ----------------------------------------------------------------------------------------------


def test_server_busy_fails_fast_with_its_back_off(account: AccountFactory, admin: httpx.Client,
                                                  simulator: EmbeddedSimulator) -> None:
    room = ready(account)
    add_fault(admin, kind="server_busy", back_off_ms=1500, count=1)
    with pytest.raises(ErrorServerBusy) as raised:
        room.root.refresh()
    assert raised.value.back_off == 1.5
    assert requests_seen(simulator.state, "GetFolder", "ErrorServerBusy") == 1
    room.root.refresh()  # the fault is used up
    assert admin.get("/admin/faults").json()["faults"] == []


def test_fault_tolerance_backs_off_then_succeeds(account: AccountFactory, admin: httpx.Client,
                                                 simulator: EmbeddedSimulator) -> None:
    room = ready(account, retry_policy=FaultTolerance(max_wait=10))
    add_fault(admin, kind="server_busy", back_off_ms=200, count=2)
    assert timed(room.root.refresh) >= 0.39  # two back offs of 200 ms
    assert requests_seen(simulator.state, "GetFolder", "ErrorServerBusy") == 2


def test_fault_tolerance_gives_up_when_the_back_off_exceeds_max_wait(account: AccountFactory,
                                                                     admin: httpx.Client) -> None:
    room = ready(account, retry_policy=FaultTolerance(max_wait=1))
    add_fault(admin, kind="server_busy", back_off_ms=5000)
    with pytest.raises(RateLimitError) as raised:
        room.root.refresh()
    assert raised.value.wait == 5


# -- HTTP 401 -----------------------------------------------------------------------------------------------------


def test_401_fails_fast_as_unauthorized(account: AccountFactory) -> None:
    with pytest.raises(UnauthorizedError):
        account(password="wrong").root  # noqa: B018


def test_401_under_fault_tolerance_is_taken_for_throttling(account: AccountFactory) -> None:
    # exchangelib backs off 10 s on a 401 (it may be throttling): past max_wait it gives up at once.
    with pytest.raises(RateLimitError) as raised:
        account(password="wrong", retry_policy=FaultTolerance(max_wait=1)).root  # noqa: B018
    assert raised.value.wait == 10


# -- HTTP 503 and 500 ---------------------------------------------------------------------------------------------


def test_503_fails_fast_as_server_busy(account: AccountFactory, admin: httpx.Client,
                                       simulator: EmbeddedSimulator) -> None:
    room = ready(account)
    add_fault(admin, kind="http_503", retry_after_s=1, count=1)
    with pytest.raises(ErrorServerBusy, match="503"):
        room.root.refresh()
    assert requests_seen(simulator.state, "GetFolder", "http_503") == 1


def test_fault_tolerance_honours_retry_after(account: AccountFactory, admin: httpx.Client) -> None:
    room = ready(account, retry_policy=FaultTolerance(max_wait=10))
    add_fault(admin, kind="http_503", retry_after_s=1, count=1)
    assert timed(room.root.refresh) >= 0.99


@pytest.mark.parametrize("policy", [FailFast, lambda: FaultTolerance(max_wait=10)], ids=["failfast", "tolerant"])
def test_500_with_html_is_a_malformed_response(account: AccountFactory, admin: httpx.Client, policy: Any) -> None:
    room = ready(account, retry_policy=policy())
    add_fault(admin, kind="http_500", count=1)
    with pytest.raises(MalformedResponseError, match="Code: 500"):
        room.root.refresh()


# -- connections that fail --------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [FailFast, lambda: FaultTolerance(max_wait=10)], ids=["failfast", "tolerant"])
def test_dropped_connection_times_out(account: AccountFactory, admin: httpx.Client, simulator: EmbeddedSimulator,
                                      policy: Any) -> None:
    room = ready(account, retry_policy=policy())
    add_fault(admin, kind="drop", count=1)
    with pytest.raises(ErrorTimeoutExpired, match="Connection aborted"):
        room.root.refresh()
    assert requests_seen(simulator.state, "GetFolder", "drop") == 1
    room.root.refresh()  # a new connection (and NTLM handshake) works


def test_server_down_until_the_fault_is_removed(account: AccountFactory, admin: httpx.Client,
                                                simulator: EmbeddedSimulator) -> None:
    room = ready(account)
    down = add_fault(admin, kind="down")
    for _ in range(2):
        with pytest.raises(ErrorTimeoutExpired):
            room.root.refresh()
    assert requests_seen(simulator.state, "unknown", "down") == 2
    assert admin.delete(f"/admin/faults/{down['id']}").status_code == 204
    room.root.refresh()


def closed_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("policy", [FailFast, lambda: FaultTolerance(max_wait=10)], ids=["failfast", "tolerant"])
def test_connection_refused_times_out(policy: Any) -> None:
    config = Configuration(service_endpoint=f"http://127.0.0.1:{closed_port()}/EWS/Exchange.asmx",
                           credentials=Credentials("DOMAIN\\writer", PASSWORD), auth_type=NTLM,
                           version=Version(build=EXCHANGE_2016), retry_policy=policy())
    room = Account("room1@example.org", config=config, access_type=DELEGATE, autodiscover=False)
    started = time.monotonic()
    with pytest.raises(ErrorTimeoutExpired, match="Connection refused"):
        room.root  # noqa: B018
    assert time.monotonic() - started < 5  # no retries, even with FaultTolerance


def test_connection_refused_while_guessing_the_version_is_a_transport_error() -> None:
    # Without a configured version the first request is the version guess, which wraps the connection error.
    config = Configuration(service_endpoint=f"http://127.0.0.1:{closed_port()}/EWS/Exchange.asmx",
                           credentials=Credentials("DOMAIN\\writer", PASSWORD), auth_type=NTLM,
                           retry_policy=FailFast())
    room = Account("room1@example.org", config=config, access_type=DELEGATE, autodiscover=False)
    with pytest.raises(TransportError, match=r"No valid version headers.*Connection refused"):
        room.root  # noqa: B018


# -- scopes and latency -------------------------------------------------------------------------------------------


def test_mailbox_scope_hits_only_that_mailbox(account: AccountFactory, admin: httpx.Client) -> None:
    room1, room2 = ready(account, mailbox="room1@example.org"), ready(account, mailbox="room2@example.org")
    fault = add_fault(admin, kind="server_busy", scope="mailbox", target="Room2@Example.org", back_off_ms=100)
    room1.root.refresh()
    with pytest.raises(ErrorServerBusy):
        room2.root.refresh()
    assert admin.get(f"/admin/faults/{fault['id']}").json()["hits"] == 1


def test_account_scope_hits_only_that_account(account: AccountFactory, admin: httpx.Client) -> None:
    writer, reader = ready(account, user="DOMAIN\\writer"), ready(account, user="DOMAIN\\reader")
    add_fault(admin, kind="http_503", scope="account", target="domain\\READER")
    writer.root.refresh()
    with pytest.raises(ErrorServerBusy):
        reader.root.refresh()


def test_operations_limit_a_fault(account: AccountFactory, admin: httpx.Client) -> None:
    room = ready(account)
    add_fault(admin, kind="server_busy", back_off_ms=100, operations=["UpdateItem", "DeleteItem"])
    room.root.refresh()  # GetFolder is not hit
    add_fault(admin, kind="http_500", operations=["GetFolder"], count=1)
    with pytest.raises(MalformedResponseError):
        room.root.refresh()


def test_mailbox_scope_without_an_anchor_header(account: AccountFactory, admin: httpx.Client) -> None:
    # GetUserAvailability names its mailboxes in the body only (no X-AnchorMailbox).
    room = ready(account)
    add_fault(admin, kind="server_busy", scope="mailbox", target="room2@example.org", back_off_ms=100)
    start = EWSDateTime(2030, 3, 4, tzinfo=EWSTimeZone("UTC"))
    end = start + timedelta(days=1)
    list(room.protocol.get_free_busy_info(accounts=[("room1@example.org", "Room", False)], start=start, end=end))
    with pytest.raises(ErrorServerBusy):
        list(room.protocol.get_free_busy_info(accounts=[("room2@example.org", "Room", False)], start=start, end=end))


def test_count_limits_the_requests_a_fault_hits(account: AccountFactory, admin: httpx.Client) -> None:
    room = ready(account)
    fault = add_fault(admin, kind="server_busy", count=2, back_off_ms=100)
    for remaining in (1, 0):
        with pytest.raises(ErrorServerBusy):
            room.root.refresh()
        if remaining:
            assert admin.get(f"/admin/faults/{fault['id']}").json()["remaining"] == remaining
    assert admin.get(f"/admin/faults/{fault['id']}").status_code == 404  # used up
    room.root.refresh()


def test_latency_delays_the_answer(account: AccountFactory, admin: httpx.Client) -> None:
    room = ready(account)
    fault = add_fault(admin, kind="latency", latency_ms=300, count=1)
    assert timed(room.root.refresh) >= 0.29
    assert admin.get(f"/admin/faults/{fault['id']}").status_code == 404  # used up


def test_latency_and_a_failure_together(account: AccountFactory, admin: httpx.Client) -> None:
    room = ready(account)
    add_fault(admin, kind="latency", latency_ms=200, count=1)
    add_fault(admin, kind="http_500", count=1)
    started = time.monotonic()
    with pytest.raises(MalformedResponseError):
        room.root.refresh()
    assert time.monotonic() - started >= 0.19


# -- the concurrency limit --------------------------------------------------------------------------------------


def test_requests_past_the_concurrency_limit_get_server_busy(account: AccountFactory, admin: httpx.Client,
                                                             simulator: EmbeddedSimulator) -> None:
    limit, parallel = 2, 4
    room = ready(account, max_connections=parallel)
    assert admin.put("/admin/accounts/DOMAIN%5Cwriter/concurrency", json={"limit": limit}).status_code == 200
    # Slow answers keep the first requests in flight while the others arrive.
    add_fault(admin, kind="latency", latency_ms=1000, scope="account", target="DOMAIN\\writer")
    start = threading.Barrier(parallel)
    outcomes: list[str] = []

    def work() -> None:
        start.wait(timeout=10)
        try:
            room.root.refresh()
            outcomes.append("ok")
        except ErrorServerBusy as busy:
            outcomes.append(f"busy {busy.back_off}")

    threads = [threading.Thread(target=work) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # The first `limit` requests are served (slowly); the ones arriving meanwhile are refused at once, with the
    # gate's BackOffMilliseconds=1000.
    assert len(outcomes) == parallel
    assert set(outcomes) == {"ok", "busy 1.0"}
    assert outcomes.count("ok") >= limit
    assert requests_seen(simulator.state, "GetFolder", "ErrorServerBusy") == outcomes.count("busy 1.0")
    wait_for(lambda: simulator.state.gate.current("domain\\writer") == 0, what="requests to leave the gate")


# -- the pure model -------------------------------------------------------------------------------------------


def test_take_counts_down_and_puts_latency_first() -> None:
    faults = Faults()
    busy = faults.add(FaultSpec(kind="server_busy", count=1))
    faults.add(FaultSpec(kind="http_503", count=1))
    faults.add(FaultSpec(kind="latency", latency_ms=5))
    first = faults.take("domain\\writer", "room1@example.org")
    assert [spec.kind for spec in first] == ["latency", "server_busy"]  # one failure per request, oldest first
    assert busy.id not in faults.active
    assert [spec.kind for spec in faults.take("domain\\writer", None)] == ["latency", "http_503"]
    assert [spec.kind for spec in faults.take("domain\\writer", None)] == ["latency"]


def test_scopes_and_operations_match() -> None:
    faults = Faults()
    faults.add(FaultSpec(kind="drop", scope="mailbox", target="Room2@example.org"))
    faults.add(FaultSpec(kind="server_busy", scope="account", target="DOMAIN\\Reader"))
    faults.add(FaultSpec(kind="http_500", operations=frozenset({"UpdateItem"})))
    assert faults.take("domain\\writer", "room1@example.org", "GetItem") == []
    assert [s.kind for s in faults.take("domain\\writer", ["room1@example.org", "ROOM2@example.org"])] == ["drop"]
    assert [s.kind for s in faults.take("DOMAIN\\READER", None, "GetItem")] == ["server_busy"]
    assert [s.kind for s in faults.take("domain\\writer", None, "UpdateItem")] == ["http_500"]
    assert faults.take("domain\\writer", None) == []  # an operation filter needs the operation


def test_request_mailboxes_reads_anchor_impersonation_folders_and_availability() -> None:
    t = "http://schemas.microsoft.com/exchange/services/2006/types"
    header = etree.fromstring(f'<H xmlns:t="{t}"><t:ExchangeImpersonation><t:ConnectingSID>'
                              "<t:PrimarySmtpAddress>Room3@example.org</t:PrimarySmtpAddress>"
                              "</t:ConnectingSID></t:ExchangeImpersonation></H>")
    body = etree.fromstring(
        f'<B xmlns:t="{t}"><t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>room2@example.org'
        "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId><t:Attendee><t:Mailbox><t:EmailAddress>"
        "alice@example.org</t:EmailAddress></t:Mailbox></t:Attendee><t:MailboxData><t:Email><t:Address>"
        "room4@example.org</t:Address></t:Email></t:MailboxData></B>")
    assert request_mailboxes("ROOM1@example.org", header, body, None) == {
        "room1@example.org", "room2@example.org", "room3@example.org", "room4@example.org"}
    assert request_mailboxes(None) == frozenset()


def test_concurrency_gate() -> None:
    gate = ConcurrencyGate()
    assert gate.enter("DOMAIN\\writer", 1)
    assert not gate.enter("domain\\WRITER", 1)
    gate.set_limit("domain\\writer", None)  # no limit, whatever the seed says
    assert gate.enter("domain\\writer", 1)
    assert gate.current("domain\\writer") == 2
    assert gate.clear_limit("DOMAIN\\writer")
    assert not gate.clear_limit("DOMAIN\\writer")
    assert gate.limit_for("domain\\writer", 1) == 1
    gate.leave("domain\\writer")
    gate.leave("domain\\writer")
    gate.leave("domain\\writer")  # never below zero
    assert gate.in_flight == {}
