"""CalendarWatch: EWS subscriptions on the calendars of a set of mailboxes; says which calendar changed.

- Streaming subscriptions where Exchange allows them (2010 SP1+), grouped up to `subscriptions_per_connection` on
  one GetStreamingEvents connection each. A connection holds an HTTP connection and a thread for minutes, so each
  group has its own thread and its own Protocol (`ExchangeGateway.streaming_protocol`): the gateway's sessions,
  semaphore and worker threads stay free for ordinary calls. Subscribe, GetEvents and Unsubscribe go through the
  gateway (its limits, back-off and metrics).
- A group that gets a new member opens a new connection with all its subscriptions; Exchange hands them over
  (ErrorNewEventStreamConnectionOpened on the old connection, which the old thread reads to its end): nothing is
  lost. A removed member is unsubscribed (Exchange tells the connection ErrorSubscriptionUnsubscribed).
- Pull subscriptions (GetEvents every `pull_interval_seconds`) when streaming is off, refused, or its connections
  keep failing.
- `on_change(mailbox)` runs on the event loop for every change notification and right after every (re)subscription
  and dropped connection: events may have been missed, the caller reads the calendar again.
- Per-mailbox failures (mailbox gone, access denied, throttled) are kept in `problems` and retried with back-off;
  they never hold up the other mailboxes.
- Exchange may refuse subscriptions made with delegate access (ErrorSubscriptionDelegateAccessNotSupported): that
  holds for every mailbox of the account, so it is a settled state, not a failure to retry. Every mailbox gets the
  problem and mode "none" (the caller polls them); one mailbox asks again every `delegate_retry_seconds`. New
  connection settings (impersonation) mean a new server and a new CalendarWatch, which asks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from spacesync.common.exchange import metrics
from spacesync.common.exchange.gateway import ExchangeGateway
from spacesync.common.exchange.model import (
    ConnectionProblem,
    DelegateSubscriptionRefused,
    ExchangeError,
    ExchangeServer,
)
from spacesync.common.exchange.subscriptions import Changed, Stream, StreamError, Subscription, SubscriptionLost

log = logging.getLogger(__name__)

Mode = Literal["streaming", "pull", "none"]

# A streaming Subscribe refused for these reasons is refused for pull too: no point falling back.
_MAILBOX_PROBLEMS = frozenset({ConnectionProblem.MAILBOX_NOT_FOUND, ConnectionProblem.ACCESS_DENIED,
                               ConnectionProblem.WRONG_CREDENTIALS})


class WatchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_EXCHANGE_WATCH_", extra="ignore")

    streaming: bool = Field(default=True, description="Streaming subscriptions where Exchange allows them")
    pull_interval_seconds: float = Field(default=30.0, gt=0, description="GetEvents per pull subscription")
    connection_timeout_minutes: int = Field(default=1, ge=1, le=30,
                                            description="GetStreamingEvents ConnectionTimeout (short: prompt stops)")
    subscriptions_per_connection: int = Field(default=200, ge=1, description="Exchange serves at most 200")
    resubscribe_backoff_seconds: float = Field(default=5.0, gt=0, description="First retry of a failed mailbox")
    resubscribe_backoff_max_seconds: float = Field(default=300.0, gt=0)
    stream_failures_before_pull: int = Field(default=3, ge=1,
                                             description="Failed connections in a row before a group pulls instead")
    close_timeout_seconds: float = Field(default=5.0, gt=0, description="Unsubscribing at close, at most")
    delegate_retry_seconds: float = Field(
        default=3600.0, gt=0, description="When Exchange refuses subscriptions with delegate access, one mailbox asks "
                                          "again this often (the others wait for its answer)")

    def back_off(self, failures: int) -> float:
        seconds: float = self.resubscribe_backoff_seconds * 2.0 ** max(0, failures - 1)
        return min(self.resubscribe_backoff_max_seconds, seconds)


@dataclass(eq=False)
class _Watched:
    mailbox: str  # as given
    mode: Mode = "none"
    subscription: Subscription | None = None
    group: _Group | None = None
    next_poll: float = 0.0
    retry_at: float = 0.0
    failures: int = 0
    pull_only: bool = False
    refused: bool = False  # Exchange refuses this account's delegate subscriptions (counted in DELEGATE_REFUSED)


@dataclass(eq=False)
class _Group:
    """Streaming subscriptions served by one connection at a time, in threads of their own."""

    stream: Stream
    members: dict[str, str] = field(default_factory=dict)  # subscription id -> mailbox key (changed on the loop)
    generation: int = 0  # a new connection takes the subscriptions over; older threads end
    started: int = -1  # the generation of the newest thread
    failures: int = 0  # connections that failed in a row
    threads: list[threading.Thread] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)
    stopped: bool = False


class CalendarWatch:
    """Keeps EWS subscriptions on the calendars of a set of mailboxes of one server+credentials and reports
    which mailbox's calendar changed."""

    def __init__(self, gateway: ExchangeGateway, server: ExchangeServer, on_change: Callable[[str], None],
                 settings: WatchSettings | None = None) -> None:
        self.gateway = gateway
        self.server = server
        self.on_change = on_change
        self.settings = settings or WatchSettings()
        self._wanted: dict[str, str] = {}  # key (lower case) -> mailbox as given
        self._watched: dict[str, _Watched] = {}
        self._problems: dict[str, ExchangeError] = {}
        self._groups: list[_Group] = []
        self._accepted = False  # Exchange accepted a subscription of this account
        self._refused: DelegateSubscriptionRefused | None = None  # ... or refuses its delegate access
        self._refused_until = 0.0  # not asked again before
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the API ----------------------------------------------------------------------------------------------------

    def watch(self, mailboxes: Collection[str]) -> None:
        """The full set of mailboxes to watch from now on (the run loop subscribes new ones and drops gone ones)."""
        self._wanted = {mailbox.strip().lower(): mailbox.strip() for mailbox in mailboxes}
        self._wake.set()

    def mode(self, mailbox: str) -> Mode:
        watched = self._watched.get(mailbox.strip().lower())
        return watched.mode if watched is not None else "none"

    @property
    def problems(self) -> Mapping[str, ExchangeError]:
        """Per mailbox (as given to watch()): why it has no subscription now."""
        return MappingProxyType({self._wanted.get(key, key): error for key, error in self._problems.items()})

    async def run(self) -> None:
        """Subscribes, polls and reconnects until cancelled. May run again after it stopped (its streams did not
        survive: their mailboxes are subscribed again)."""
        self._loop = asyncio.get_running_loop()
        self._resubscribe_stopped_streams()
        try:
            while not self._closed:
                self._wake.clear()
                await self._drop_unwanted()
                await self._subscribe_due()
                self._connect_groups()
                await self._poll_due()
                await self._sleep()
        finally:
            self._stop_streams()

    async def close(self) -> None:
        """Unsubscribes (best effort, bounded), ends the streams and waits for their threads."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        held = [(key, watched) for key, watched in self._watched.items() if watched.subscription is not None]
        for _, watched in held:
            self._set_mode(watched, "none")
        for watched in self._watched.values():
            self._set_refused(watched, False)
        try:
            async with asyncio.timeout(self.settings.close_timeout_seconds):
                await asyncio.gather(*(self._unsubscribe(key, watched) for key, watched in held),
                                     *self._background, return_exceptions=True)
        except TimeoutError:
            log.info("exchange watch: unsubscribing at close took too long", extra=self._extra())
        self._watched.clear()
        self._stop_streams()
        threads = [thread for group in self._groups for thread in group.threads]
        await asyncio.to_thread(self._join, threads, self.settings.close_timeout_seconds)
        for group in self._groups:
            await asyncio.to_thread(group.stream.protocol.close)
        self._groups.clear()

    def _resubscribe_stopped_streams(self) -> None:
        for key, watched in self._watched.items():
            if watched.group is not None and watched.group.stopped and watched.subscription is not None:
                self._spawn(self._unsubscribe(key, _Watched(watched.mailbox, subscription=watched.subscription)))
                self._leave_group(watched)
                watched.subscription, watched.retry_at = None, 0.0
                self._set_mode(watched, "none")

    # -- subscribing ------------------------------------------------------------------------------------------------

    async def _drop_unwanted(self) -> None:
        for key in [key for key in self._watched if key not in self._wanted]:
            watched = self._watched.pop(key)
            self._problems.pop(key, None)
            self._set_refused(watched, False)
            if watched.subscription is not None:
                self._spawn(self._unsubscribe(key, watched))
            self._set_mode(watched, "none")
        for key in [key for key in self._problems if key not in self._wanted]:
            del self._problems[key]

    async def _subscribe_due(self) -> None:
        now = self._now()
        due = []
        for key, mailbox in self._wanted.items():
            watched = self._watched.setdefault(key, _Watched(mailbox))
            if watched.mode == "none" and watched.retry_at <= now:
                due.append((key, watched))
        if due and self._refused is not None and now < self._refused_until:
            for key, watched in due:  # mailboxes watched since Exchange refused: not worth asking yet
                self._refuse(key, watched, self._refused)
            return
        if due and (self._refused is not None or not self._accepted):
            # One mailbox asks first: if Exchange refuses this account's delegate access, it refuses every mailbox,
            # and the others are not sent at all (one request per hour, not one per room).
            await self._subscribe(*due[0])
            due = due[1:]
            if self._refused is not None:
                for key, watched in due:
                    self._refuse(key, watched, self._refused)
                return
        await asyncio.gather(*(self._subscribe(key, watched) for key, watched in due))

    async def _subscribe(self, key: str, watched: _Watched) -> None:
        streaming = self.settings.streaming and not watched.pull_only
        minutes = max(1, min(1440, int(self.settings.pull_interval_seconds * 3 // 60) + 1))
        try:
            subscription = await self.gateway.subscribe(self.server, watched.mailbox, streaming=streaming,
                                                        timeout_minutes=minutes)
        except DelegateSubscriptionRefused as error:
            if self._refused is None:
                log.warning("exchange watch: %s", error.message, extra=self._extra(watched.mailbox))
            self._refused, self._refused_until = error, self._now() + self.settings.delegate_retry_seconds
            self._refuse(key, watched, error)
            return
        except ExchangeError as error:
            if streaming and not error.transient and error.problem not in _MAILBOX_PROBLEMS:
                log.info("exchange watch: no streaming subscription (%s); pulling instead", error.message,
                         extra=self._extra(watched.mailbox))
                watched.pull_only = True
                self._wake.set()
                return
            self._failed(key, watched, error)
            return
        if self._watched.get(key) is not watched or self._closed:  # unwatched meanwhile
            self._spawn(self.gateway.unsubscribe(self.server, watched.mailbox, subscription.id))
            return
        watched.subscription, watched.failures = subscription, 0
        self._problems.pop(key, None)
        self._accepted, self._refused = True, None
        self._set_refused(watched, False)
        if streaming:
            self._join_group(key, watched)
            self._set_mode(watched, "streaming")
        else:
            watched.next_poll = self._now() + self.settings.pull_interval_seconds
            self._set_mode(watched, "pull")
        self._report(key)  # events may have been missed before the subscription existed

    def _failed(self, key: str, watched: _Watched, error: ExchangeError) -> None:
        watched.failures += 1
        back_off = max(self.settings.back_off(watched.failures), error.back_off or 0.0)
        watched.retry_at = self._now() + back_off
        self._problems[key] = error
        log.info("exchange watch: no subscription for a mailbox, retrying in %.0f s: %s", back_off, error.message,
                 extra=self._extra(watched.mailbox))

    def _refuse(self, key: str, watched: _Watched, error: DelegateSubscriptionRefused) -> None:
        """No subscription (mode "none": the caller polls the mailbox) until Exchange is asked again."""
        watched.retry_at, watched.failures = self._refused_until, 0
        self._problems[key] = error
        self._set_refused(watched, True)

    def _lost(self, key: str, watched: _Watched, reason: str) -> None:
        """Exchange no longer has the subscription: subscribe again now (and report then)."""
        self._leave_group(watched)
        watched.subscription = None
        self._set_mode(watched, "none")
        watched.retry_at = 0.0
        metrics.RESUBSCRIBES.labels(reason).inc()
        self._wake.set()

    async def _unsubscribe(self, key: str, watched: _Watched) -> None:
        subscription = watched.subscription
        self._leave_group(watched)
        watched.subscription = None
        if subscription is None:
            return
        try:
            await self.gateway.unsubscribe(self.server, watched.mailbox, subscription.id)
        except ExchangeError as error:  # it expires on its own
            log.debug("exchange watch: unsubscribe failed: %s", error.message, extra=self._extra(watched.mailbox))

    # -- pulling ------------------------------------------------------------------------------------------------------

    async def _poll_due(self) -> None:
        now = self._now()
        due = [(key, watched) for key, watched in self._watched.items()
               if watched.mode == "pull" and watched.next_poll <= now]
        await asyncio.gather(*(self._poll(key, watched) for key, watched in due))

    async def _poll(self, key: str, watched: _Watched) -> None:
        subscription = watched.subscription
        if subscription is None:
            return
        watched.next_poll = self._now() + self.settings.pull_interval_seconds
        try:
            changed, later = await self.gateway.pull_events(self.server, watched.mailbox, subscription)
        except SubscriptionLost as gone:
            if watched.subscription is subscription:
                log.info("exchange watch: %s; subscribing again", gone.message, extra=self._extra(watched.mailbox))
                self._lost(key, watched, "lost")
            return
        except ExchangeError as error:
            if error.problem in _MAILBOX_PROBLEMS and watched.subscription is subscription:
                watched.subscription = None
                self._set_mode(watched, "none")
                self._failed(key, watched, error)
            return  # transient: the next poll tries again (the subscription outlives a few missed polls)
        if watched.subscription is not subscription:  # unwatched or lost meanwhile
            return
        watched.subscription = later
        if changed:
            metrics.NOTIFICATIONS.labels("pull").inc()
            self._report(key)

    # -- streaming ----------------------------------------------------------------------------------------------------

    def _join_group(self, key: str, watched: _Watched) -> None:
        assert watched.subscription is not None
        group = next((group for group in self._groups if not group.stopped
                      and len(group.members) < self.settings.subscriptions_per_connection), None)
        if group is None:
            group = _Group(Stream(self.gateway.streaming_protocol(self.server), self.server))
            self._groups.append(group)
        with group.condition:  # the group's threads copy the members
            group.members[watched.subscription.id] = key
            group.generation += 1  # _connect_groups opens a connection with the new member
        watched.group = group

    def _leave_group(self, watched: _Watched) -> None:
        group, subscription = watched.group, watched.subscription
        watched.group = None
        if group is not None and subscription is not None:
            with group.condition:
                group.members.pop(subscription.id, None)

    def _connect_groups(self) -> None:
        """A new connection for each group whose members changed (the previous one hands its subscriptions over)."""
        for group in self._groups:
            if group.stopped or not group.members:
                continue
            group.threads = [thread for thread in group.threads if thread.is_alive()]
            if group.started == group.generation:
                continue
            group.started = generation = group.generation
            thread = threading.Thread(target=self._serve, args=(group, generation),
                                      name=f"exchange-stream-{id(group):x}-{generation}")
            group.threads.append(thread)
            thread.start()

    def _serve(self, group: _Group, generation: int) -> None:
        """A group's thread: connection after connection until the group stops or a newer connection takes over."""
        minutes = self.settings.connection_timeout_minutes
        while True:
            with group.condition:
                if group.stopped or group.generation != generation:
                    return
                members = dict(group.members)
                failures = group.failures
            if not members:
                return
            anchor = self._wanted.get(next(iter(members.values())), next(iter(members.values())))
            try:
                for event in group.stream.events(anchor, list(members), minutes):
                    self._post(self._streamed, group, event)
                self._post(self._stream_ended, group, None, members)
            except Exception as error:  # a dropped connection, or close() shut it down
                if group.stopped:
                    return
                self._post(self._stream_ended, group, error, members)
                with group.condition:
                    group.condition.wait_for(lambda: group.stopped or group.generation != generation,
                                             timeout=self.settings.back_off(failures + 1))

    def _post(self, handler: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            loop.call_soon_threadsafe(handler, *args)

    def _streamed(self, group: _Group, event: Changed | StreamError) -> None:
        """A stream's notification or error, on the event loop."""
        if isinstance(event, Changed):
            key = group.members.get(event.subscription_id)
            group.failures = 0
            if key is not None:
                metrics.NOTIFICATIONS.labels("streaming").inc()
                self._report(key)
            return
        if event.code == "ErrorNewEventStreamConnectionOpened":
            return  # our newer connection took the subscriptions over
        for subscription_id in event.subscription_ids:
            key = group.members.get(subscription_id)
            watched = self._watched.get(key) if key is not None else None
            if key is None or watched is None:
                continue  # unsubscribed by us
            if event.code == "ErrorMissedNotificationEvents":
                metrics.RESUBSCRIBES.labels("missed").inc()
                self._report(key)  # the subscription goes on; what it missed is read again
                continue
            log.info("exchange watch: the stream says %s; subscribing again", event.code,
                     extra=self._extra(watched.mailbox))
            self._lost(key, watched, "lost")

    def _stream_ended(self, group: _Group, error: Exception | None, members: dict[str, str]) -> None:
        """A connection ended: normally (Exchange closed it; the thread opens the next) or failed."""
        if error is None:
            group.failures = 0
            return
        if self._closed or group.stopped:
            return
        group.failures += 1
        log.info("exchange watch: a streaming connection failed (%s: %s)", type(error).__name__,
                 " ".join(str(error).split())[:200], extra={**self._extra(), "failures": group.failures})
        keys = [key for subscription_id, key in members.items() if group.members.get(subscription_id) == key]
        for key in keys:
            metrics.RESUBSCRIBES.labels("dropped").inc()
            self._report(key)  # events may have been lost with the connection
        if group.failures >= self.settings.stream_failures_before_pull:
            log.warning("exchange watch: streaming keeps failing; %d mailbox(es) pull instead", len(keys),
                        extra=self._extra())
            for key in keys:
                watched = self._watched.get(key)
                if watched is not None and watched.subscription is not None:
                    self._spawn(self._unsubscribe(key, _Watched(watched.mailbox, subscription=watched.subscription)))
                    self._leave_group(watched)
                    watched.subscription, watched.pull_only = None, True
                    self._set_mode(watched, "none")
            self._stop_group(group)
            self._wake.set()

    def _stop_group(self, group: _Group) -> None:
        with group.condition:
            group.stopped = True
            group.condition.notify_all()
        group.stream.close()

    def _stop_streams(self) -> None:
        for group in self._groups:
            self._stop_group(group)

    @staticmethod
    def _join(threads: list[threading.Thread], timeout: float) -> None:
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("exchange watch: a streaming thread did not end within %.0f s", timeout)

    # -- helpers ------------------------------------------------------------------------------------------------------

    def _report(self, key: str) -> None:
        mailbox = self._wanted.get(key)
        if mailbox is None or self._closed:
            return
        try:
            self.on_change(mailbox)
        except Exception:
            log.exception("exchange watch: on_change failed", extra=self._extra(mailbox))

    def _set_mode(self, watched: _Watched, mode: Mode) -> None:
        if watched.mode != "none":
            metrics.SUBSCRIPTIONS.labels(watched.mode).dec()
        if mode != "none":
            metrics.SUBSCRIPTIONS.labels(mode).inc()
        watched.mode = mode

    @staticmethod
    def _set_refused(watched: _Watched, refused: bool) -> None:
        if watched.refused == refused:
            return
        if refused:
            metrics.DELEGATE_REFUSED.inc()
        else:
            metrics.DELEGATE_REFUSED.dec()
        watched.refused = refused

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sleep(self) -> None:
        now = self._now()
        deadlines = [watched.next_poll for watched in self._watched.values() if watched.mode == "pull"]
        deadlines += [watched.retry_at for watched in self._watched.values() if watched.mode == "none"]
        wait = min([deadline - now for deadline in deadlines], default=self.settings.pull_interval_seconds)
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _extra(self, mailbox: str | None = None) -> dict[str, Any]:
        return {"exchange_server": self.server.key, "mailbox": mailbox}
