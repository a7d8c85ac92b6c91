"""ExchangeGateway: the async facade over exchangelib (which is synchronous).

- Every exchangelib call runs in the gateway's own thread pool; querysets are materialised there.
- Per server (endpoint + credentials, `ExchangeServer.key`): one exchangelib Configuration and Protocol (session pool
  of `max_connections`), Accounts per mailbox, a semaphore of `max_connections` concurrent calls, and a "not before"
  deadline: when Exchange asks to back off (ErrorServerBusy, HTTP 503) the call raises THROTTLED and later calls to
  that server wait (on the event loop, asyncio.sleep) until the deadline. Other servers are not affected.
- exchangelib never sleeps or retries (fail fast: a wrong password must not lock the account).
- Errors come out as ExchangeError (see errors.py); the connection test and 'Save & Test' are time-bounded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import urllib3
from exchangelib import DELEGATE, IMPERSONATION, Account, EWSTimeZone
from exchangelib.version import Version
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from spacesync.common.events.catalog import ExchangeAccess
from spacesync.common.exchange import availability, calendar, metrics, probe, subscriptions
from spacesync.common.exchange.calendar import MailboxCalendar
from spacesync.common.exchange.errors import DEFAULT_BACK_OFF, Call, classify, throttled
from spacesync.common.exchange.model import (
    Appointment,
    BusyTime,
    CalendarEntry,
    ConnectionProblem,
    ConnectionReport,
    ExchangeError,
    ExchangeServer,
    ItemGone,
    ItemRef,
    Rejected,
)
from spacesync.common.exchange.subscriptions import Subscription
from spacesync.common.exchange.transport import (
    GatewayProtocol,
    cached_protocol,
    configuration,
    fresh_protocol,
    http_timeout,
    protocol_class,
    redact_exchangelib_logs,
    uncache,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

UTC_ZONE = EWSTimeZone("UTC")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_EXCHANGE_", extra="ignore")

    verify_tls: bool = True
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust instead of the system's")
    max_connections: int = Field(default=4, ge=1, description="HTTP sessions (parallel calls) per server")
    worker_threads: int = Field(default=32, ge=1, description="Threads running exchangelib calls, all servers")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request")
    test_timeout_seconds: float = Field(default=4.0, gt=0, description="Connection test and 'Save & Test'")


class _Server:
    """What the gateway keeps per server + credentials."""

    def __init__(self, server: ExchangeServer, max_connections: int) -> None:
        self.server = server
        self.semaphore = asyncio.Semaphore(max_connections)
        self.not_before = 0.0  # event loop time before which no call is sent (Exchange asked to back off)
        self.lock = threading.RLock()  # guards protocol and mailboxes (worker threads)
        self.protocol: GatewayProtocol | None = None
        self.mailboxes: dict[str, MailboxCalendar] = {}
        self.zones: dict[int, Any] = {}  # year -> the server's UTC as GetUserAvailability's TimeZone
        self.zones_lock = threading.Lock()  # one GetServerTimeZones at a time: parallel chunks wait for its answer
        self.forgotten = False  # forget() was called: nothing new is opened for these settings


class ExchangeGateway:
    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()
        calendar.register_stamps()
        redact_exchangelib_logs()
        self._protocol_cls = protocol_class(self.settings.verify_tls, self.settings.ca_bundle,
                                            self.settings.timeout_seconds)
        self._tls = probe.tls_context(self.settings.verify_tls, self.settings.ca_bundle)
        self._executor = ThreadPoolExecutor(max_workers=self.settings.worker_threads,
                                            thread_name_prefix="exchange-gateway")
        if not self.settings.verify_tls:
            # The operator's explicit choice: say so once, not once per request (urllib3's warning).
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS certificates of Exchange servers are NOT verified (SPACESYNC_EXCHANGE_VERIFY_TLS=false)")
        self._servers: dict[str, _Server] = {}
        self._versions: dict[str, Version] = {}  # endpoint -> what it reported: saves the version probe
        self._versions_lock = threading.Lock()
        self._closed = False

    # -- admin checks --------------------------------------------------------------------------------------------

    async def test_connection(self, server: ExchangeServer) -> ConnectionReport:
        """DNS, TCP, TLS, then an authenticated EWS request; all within settings.test_timeout_seconds, no retries."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = probe.Budget(self.settings.test_timeout_seconds)
        call = Call(server, "test_connection")
        try:
            await probe.reach(call, budget, self._executor, self._tls)
        except ExchangeError as error:
            metrics.REQUESTS.labels(call.operation, error.problem.value).inc()
            self._log_failure(call, error)
            raise

        def version() -> Version:
            # Leave a little of the budget for the answer to reach the loop: the thread's own timeout fires first.
            seconds = max(0.1, budget.deadline - loop.time() - 0.1)
            return probe.ews_version(self._protocol_cls, call, self.settings.max_connections, seconds)

        found: Version = await self._call(call, version, deadline=budget.deadline)
        with self._versions_lock:
            self._versions[server.endpoint] = found
        report = ConnectionReport(endpoint=server.endpoint, username=server.username,
                                  server_version=probe.server_name(found), seconds=loop.time() - started)
        log.info("exchange connection test passed", extra={"exchange_server": server.key,
                                                            "server_version": report.server_version,
                                                            "seconds": round(report.seconds, 3)})
        return report

    async def check_resource(self, server: ExchangeServer, mailbox: str) -> None:
        """'Save & Test' of a space pairing: may the account create, modify and delete items in the mailbox's
        calendar? One GetFolder(calendar) reading EffectiveRights; creates nothing. Time-bounded like the test."""
        call = Call(server, "check_resource", mailbox)
        state = self._state(server)

        def check() -> None:
            granted = calendar.rights(self._target(state, mailbox))
            missing = granted.missing_writes
            if missing:
                can = "may read but not write" if granted.read else "may see only the free/busy times of"
                raise ExchangeError(
                    ConnectionProblem.ACCESS_DENIED,
                    f"The account '{server.username}' {can} {mailbox}'s calendar (it may not {', '.join(missing)} "
                    f"items): grant it Editor on the calendar, FullAccess, or impersonation.")

        deadline = asyncio.get_running_loop().time() + self.settings.test_timeout_seconds
        await self._call(call, check, deadline=deadline)

    # -- calendar items ---------------------------------------------------------------------------------------------

    async def find_stamped(self, server: ExchangeServer, mailbox: str, slot_id: str) -> list[ItemRef]:
        """The appointments in the mailbox's calendar stamped with this slot id (FindItem with a Restriction)."""
        state = self._state(server)
        return await self._call(Call(server, "find_stamped", mailbox),
                                lambda: calendar.find_stamped(self._target(state, mailbox), slot_id))

    async def create(self, server: ExchangeServer, mailbox: str, appointment: Appointment) -> ItemRef:
        state = self._state(server)
        return await self._call(Call(server, "create", mailbox),
                                lambda: calendar.create(self._target(state, mailbox), appointment))

    async def update(self, server: ExchangeServer, mailbox: str, ref: ItemRef, appointment: Appointment) -> ItemRef:
        """Overwrites subject, body, start, end and location; raises ItemGone when the item no longer exists."""
        state = self._state(server)
        return await self._call(Call(server, "update", mailbox),
                                lambda: calendar.update(self._target(state, mailbox), ref, appointment))

    async def delete(self, server: ExchangeServer, mailbox: str, ref: ItemRef) -> None:
        """Hard delete without cancellations; an item that is already gone is fine."""
        state = self._state(server)
        await self._call(Call(server, "delete", mailbox),
                         lambda: calendar.delete(self._target(state, mailbox), ref))

    async def view(self, server: ExchangeServer, mailbox: str, start: datetime, end: datetime, *,
                   organizer: bool = True) -> list[CalendarEntry]:
        """The calendar view in one FindItem; `organizer=False` leaves the organizer's name out (entries carry
        None)."""
        state = self._state(server)
        return await self._call(Call(server, "view", mailbox),
                                lambda: calendar.view(self._target(state, mailbox), start, end, organizer=organizer))

    # -- free/busy ----------------------------------------------------------------------------------------------------

    async def free_busy(self, server: ExchangeServer, mailboxes: Sequence[str], start: datetime, end: datetime
                        ) -> dict[str, list[BusyTime] | ExchangeError]:
        """Each mailbox's busy times in [start, end) by start (GetUserAvailability, DetailedMerged, UTC), one request
        per 100 mailboxes (and per 62 days). A mailbox Exchange cannot answer (not found, no free/busy access) gets
        its ExchangeError as its value; a request-wide failure raises ExchangeError."""
        pieces = availability.windows(start, end)
        given: dict[str, list[str]] = {}  # one request per mailbox, however often and in whatever case it is given
        for mailbox in mailboxes:
            given.setdefault(mailbox.strip().lower(), []).append(mailbox)
        state = self._state(server)
        found: dict[str, list[BusyTime]] = {mailbox: [] for mailbox in given}
        failed: dict[str, ExchangeError] = {}

        async def request(chunk: list[str], window: tuple[datetime, datetime]) -> None:
            def work() -> list[list[BusyTime] | BaseException]:
                return availability.free_busy(self._protocol(state), self._utc_zone(state, window[0].year), chunk,
                                              *window)

            answers = await self._call(Call(server, "free_busy"), work)
            for mailbox, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, BaseException):
                    problem = availability.mailbox_problem(Call(server, "free_busy", mailbox), answer)
                    failed.setdefault(mailbox, problem)
                else:
                    found[mailbox].extend(answer)

        outcomes = await asyncio.gather(*(request(chunk, window) for chunk in availability.chunks(list(given))
                                          for window in pieces), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        result: dict[str, list[BusyTime] | ExchangeError] = {}
        for mailbox, names in given.items():
            problem = failed.get(mailbox)
            if problem is not None:
                log.info("exchange free/busy unavailable for a mailbox: %s", problem.message,
                         extra={"exchange_server": server.key, "mailbox": mailbox, "problem": problem.problem.value})
            # A period across two 62-day windows comes back in both.
            answer = problem or sorted(dict.fromkeys(found[mailbox]), key=lambda busy: (busy.start, busy.end))
            for name in names:
                result[name] = answer
        return result

    # -- calendar subscriptions (CalendarWatch) ----------------------------------------------------------------------

    async def subscribe(self, server: ExchangeServer, mailbox: str, *, streaming: bool,
                        timeout_minutes: int = 30) -> Subscription:
        """A streaming or pull subscription on the mailbox's calendar (pull: expires when not polled for
        `timeout_minutes`)."""
        state = self._state(server)
        return await self._call(Call(server, "subscribe", mailbox), lambda: subscriptions.subscribe(
            self._target(state, mailbox).account, mailbox.strip(), streaming, timeout_minutes))

    async def pull_events(self, server: ExchangeServer, mailbox: str,
                          subscription: Subscription) -> tuple[bool, Subscription]:
        """GetEvents of a pull subscription (all pages): whether the calendar changed, and the subscription with its
        next watermark. Raises SubscriptionLost when Exchange no longer has it."""
        state = self._state(server)
        return await self._call(Call(server, "get_events", mailbox), lambda: subscriptions.pull(
            self._target(state, mailbox).account, subscription))

    async def unsubscribe(self, server: ExchangeServer, mailbox: str, subscription_id: str) -> None:
        state = self._state(server)
        await self._call(Call(server, "unsubscribe", mailbox), lambda: subscriptions.unsubscribe(
            self._target(state, mailbox).account, subscription_id))

    def streaming_protocol(self, server: ExchangeServer) -> GatewayProtocol:
        """A Protocol of its own (outside exchangelib's cache) for a group's GetStreamingEvents connections: a stream
        holds its connection for minutes and must never take one of the gateway's. Two sessions: while a new connection
        takes the subscriptions over, the old one is read to its end. Close it after."""
        with self._versions_lock:
            known = self._versions.get(server.endpoint)
        return fresh_protocol(self._protocol_cls, configuration(server, 2, version=known.copy() if known else None))

    # -- lifecycle ----------------------------------------------------------------------------------------------------

    def forget(self, server: ExchangeServer) -> None:
        """Drops what is cached for this server + credentials (Configuration, Protocol and its sessions, Accounts,
        back-off) and its entry in exchangelib's process-wide protocol cache. Calls in flight finish on what they
        hold; the next call starts afresh."""
        state = self._servers.pop(server.key, None)
        with self._versions_lock:
            self._versions.pop(server.endpoint, None)
        if state is None:
            return
        with state.lock:
            protocol, state.protocol = state.protocol, None
            state.mailboxes.clear()
            state.forgotten = True
        if protocol is not None:
            uncache(protocol)
            self._executor.submit(protocol.close)  # closing sessions is socket I/O: not on the event loop
        log.info("exchange server forgotten", extra={"exchange_server": server.key})

    async def close(self) -> None:
        """Waits for calls in flight, stops the threads, closes every protocol this gateway opened."""
        if self._closed:
            return
        self._closed = True
        states = list(self._servers.values())
        self._servers.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown, states)

    def _shutdown(self, states: list[_Server]) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        for state in states:
            if state.protocol is not None:
                uncache(state.protocol)
                state.protocol.close()
                state.protocol = None
            state.mailboxes.clear()

    # -- the machinery --------------------------------------------------------------------------------------------

    def _state(self, server: ExchangeServer) -> _Server:
        if self._closed:
            raise RuntimeError("the Exchange gateway is closed")
        state = self._servers.get(server.key)
        if state is None:
            state = self._servers[server.key] = _Server(server, self.settings.max_connections)
        return state

    def _target(self, state: _Server, mailbox: str) -> MailboxCalendar:
        """The cached Account + calendar for a mailbox (worker thread: creating them does no I/O)."""
        key = mailbox.strip().lower()
        with state.lock:
            target = state.mailboxes.get(key)
            if target is not None:
                return target
            protocol = self._protocol(state)
            access = IMPERSONATION if state.server.access == ExchangeAccess.IMPERSONATION else DELEGATE
            account = Account(mailbox.strip(), config=protocol.config, autodiscover=False, access_type=access,
                              default_timezone=UTC_ZONE)
            account.protocol = protocol  # exactly this server's protocol, whatever the process-wide cache holds
            target = state.mailboxes[key] = MailboxCalendar.open(account, mailbox.strip())
            return target

    def _protocol(self, state: _Server) -> GatewayProtocol:
        """The server's Protocol (no I/O to make one): made on first use, until forget()."""
        with state.lock:
            if state.forgotten:
                raise ExchangeError(ConnectionProblem.SERVER_ERROR,
                                    f"The Exchange settings for {state.server.host} changed while this call waited; "
                                    f"it was not sent (try again with the new settings).")
            if state.protocol is None:
                with self._versions_lock:
                    known = self._versions.get(state.server.endpoint)
                config = configuration(state.server, self.settings.max_connections,
                                       version=known.copy() if known is not None else None)
                state.protocol = cached_protocol(self._protocol_cls, config)
            return state.protocol

    def _utc_zone(self, state: _Server, year: int) -> Any:
        """The server's UTC for GetUserAvailability: asked once per server and year (worker thread)."""
        with state.zones_lock:
            zone = state.zones.get(year)
            if zone is None:
                zone = state.zones[year] = availability.utc_zone(self._protocol(state), year)
            return zone

    def _remember_version(self, state: _Server) -> None:
        protocol = state.protocol
        version = protocol.config.version if protocol is not None else None
        if version is None or version.build is None:
            return
        with self._versions_lock:
            self._versions.setdefault(state.server.endpoint, version.copy())

    async def _wait_turn(self, state: _Server, call: Call, deadline: float | None) -> None:
        """Until the server's back-off deadline has passed (raising THROTTLED at once if it is past `deadline`)."""
        loop = asyncio.get_running_loop()
        while (left := state.not_before - loop.time()) > 0:
            if deadline is not None and state.not_before > deadline:
                raise throttled(call, left)
            await asyncio.sleep(left)

    async def _call(self, call: Call, work: Callable[[], T], *, deadline: float | None = None) -> T:
        """Runs `work` in a worker thread within the server's bounds; maps failures to ExchangeError; counts it."""
        state = self._state(call.server)
        loop = asyncio.get_running_loop()
        outcome = "error"
        started: float | None = None
        try:
            async with asyncio.timeout_at(deadline):
                await self._wait_turn(state, call, deadline)
                async with state.semaphore:
                    await self._wait_turn(state, call, deadline)
                    started = time.perf_counter()
                    result = await loop.run_in_executor(self._executor, self._bounded, work, deadline, loop)
            self._remember_version(state)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"  # our side gave up (lost lock, shutdown): no Exchange failure
            raise
        except Exception as error:
            timed_out = isinstance(error, TimeoutError) and deadline is not None and loop.time() >= deadline
            mapped = self._timed_out(call) if timed_out else classify(error, call)
            if mapped is None:
                log.exception("unexpected error in an Exchange call", extra=self._context(call))
                raise
            outcome = ("item_gone" if isinstance(mapped, ItemGone) else "rejected" if isinstance(mapped, Rejected)
                       else mapped.problem.value)
            if mapped.problem == ConnectionProblem.THROTTLED and not isinstance(error, ExchangeError):
                back_off = mapped.back_off if mapped.back_off is not None else DEFAULT_BACK_OFF
                state.not_before = max(state.not_before, loop.time() + back_off)
                metrics.THROTTLED.inc()
            if not isinstance(mapped, ItemGone):
                self._log_failure(call, mapped)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            metrics.REQUESTS.labels(call.operation, outcome).inc()
            if started is not None:
                metrics.REQUEST_SECONDS.labels(call.operation).observe(time.perf_counter() - started)

    @staticmethod
    def _bounded(work: Callable[[], T], deadline: float | None, loop: asyncio.AbstractEventLoop) -> T:
        if deadline is None:
            return work()
        # The caller stops waiting at the deadline: let the thread's HTTP requests give up then too.
        with http_timeout(max(0.1, deadline - loop.time())):
            return work()

    def _timed_out(self, call: Call) -> ExchangeError:
        return ExchangeError(ConnectionProblem.TIMEOUT, f"Exchange at {call.where} did not answer {call.operation} "
                                                        f"within {self.settings.test_timeout_seconds:g} s. The server "
                                                        f"may be overloaded, or the address may not be Exchange.")

    @staticmethod
    def _context(call: Call) -> dict[str, Any]:
        return {"operation": call.operation, "exchange_server": call.server.key, "host": call.server.host,
                "username": call.server.username, "mailbox": call.mailbox}

    def _log_failure(self, call: Call, error: ExchangeError) -> None:
        extra = {**self._context(call), "problem": error.problem.value, "back_off": error.back_off}
        level = logging.INFO if error.problem == ConnectionProblem.THROTTLED else logging.WARNING
        log.log(level, "exchange call failed: %s", error.message, extra=extra)
