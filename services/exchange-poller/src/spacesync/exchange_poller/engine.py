"""The poller engine: which rooms to read when, and what a read changes.

Rooms come from the catalog fold (Postgres). A room is read again when a notification names its mailbox
(debounced: a burst of changes is one read) and by the periodic full reconciliation (the safety net: what
notifications miss, deleted meetings included). Rooms without notifications (Exchange refuses them to delegate
access, their subscription fails, or notifications are off) and rooms whose last read failed are polled in between,
every `poll_interval`.
Reads may overlap; a room's result is applied under the room's lock, and a read that started before the last
applied one is dropped, so a picture never goes back in time.
A room's error is recorded and counted; its last good picture stays and the other rooms go on.

One engine runs per schema: the active instance's (active.py); a standby has none running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from spacesync.common.db import Database
from spacesync.common.events import ExchangeConnection, FreeBusyState
from spacesync.common.events.freebusy import MAX_BUSY_PERIODS
from spacesync.common.exchange import ConnectionProblem, ExchangeError, ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError
from spacesync.exchange_poller import metrics, reads, store
from spacesync.exchange_poller.domain import (
    MAX_PICTURE_BYTES,
    Meeting,
    Room,
    Window,
    digest,
    items_digest,
    merged,
    next_sequence,
    picture,
    window,
)
from spacesync.exchange_poller.domain import rooms as rooms_of
from spacesync.exchange_poller.reads import ReadMode
from spacesync.exchange_poller.store import RoomRecord
from spacesync.exchange_poller.watches import NO_NOTIFICATIONS, Watches

log = logging.getLogger(__name__)
RETRY_DELAY_SECONDS = 1.0
# A room whose view was refused is read through free/busy, and asks for the view again this often: rights may have
# come back, and only the view tells our writer's (stamped) appointments apart from Outlook meetings.
VIEW_RETRY_SECONDS = 3600.0


class PictureTooLarge(ValueError):
    """Even merged, the picture does not fit one Kafka message."""


def fitted(state: FreeBusyState) -> FreeBusyState:
    """The state as published: whole, or with touching periods merged when whole it would not fit one Kafka message.
    Raises PictureTooLarge when even that does not fit."""
    if len(state.model_dump_json()) <= MAX_PICTURE_BYTES:
        return state
    smaller = state.model_copy(update={"busy": merged(state.busy)})
    size = len(smaller.model_dump_json())
    if size > MAX_PICTURE_BYTES:
        raise PictureTooLarge(f"the busy picture is too large to publish ({len(state.busy)} meetings, {size} bytes "
                              f"merged; at most {MAX_PICTURE_BYTES}): the last picture stays")
    log.info("busy picture merged to fit one Kafka message", extra={"space_id": state.space_id,
                                                                    "busy": len(state.busy)})
    return smaller


@dataclass(frozen=True)
class PollerConfig:
    horizon_days: int = 120
    reconcile_interval: float = 300.0
    poll_interval: float = 60.0
    """Rooms without notifications are read this often (the others wait for the reconciliation)."""
    concurrency: int = 16
    debounce: float = 0.5
    """Changes of a room within this time are one read."""


@dataclass(frozen=True)
class Reconciliation:
    rooms: int
    errors: int
    seconds: float


class Poller:
    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox, watches: Watches,
                 config: PollerConfig = PollerConfig(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._gateway = gateway
        self._secrets = secrets
        self._watches = watches
        self._config = config
        self._clock = clock
        self._rooms: dict[str, Room] = {}
        self._by_mailbox: dict[str, set[str]] = {}
        self._records: dict[str, RoomRecord] = {}
        self._modes: dict[str, ReadMode] = {}
        self._view_asked: dict[str, datetime] = {}  # when a free/busy room's view was last refused or asked again
        self._applied: dict[str, datetime] = {}  # start of the last applied read per room
        self._read_ok: dict[str, datetime] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._servers: dict[ExchangeConnection, ExchangeServer] = {}
        self._slots = asyncio.Semaphore(config.concurrency)
        self._dirty: set[str] = set()
        self._catalog_changed = True
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.loaded = asyncio.Event()

    # -- triggers -----------------------------------------------------------------------------------------------------

    def catalog_changed(self) -> None:
        """Called after a catalog fold committed."""
        self._catalog_changed = True
        self._wake.set()

    def mailbox_changed(self, mailbox: str) -> None:
        """A notification (or a new subscription, after which changes may have been missed) for the mailbox."""
        spaces = self._by_mailbox.get(mailbox.strip().lower(), set())
        if spaces:
            self._dirty |= spaces
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # -- loops --------------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with self._db.acquire() as conn:
            self._records = await store.room_records(conn)
        reconciler = asyncio.create_task(self._read_periodically(), name="reconciliation")
        self._wake.set()  # the first round loads the catalog and reads every room
        try:
            while not self._stopping.is_set():
                await self._wake.wait()
                if self._stopping.is_set():
                    break
                # Coalesces a burst (a series edited in Outlook notifies once per occurrence): one read per room.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._config.debounce)
                self._wake.clear()
                try:
                    await self.catch_up()
                except Exception:
                    log.exception("poller round failed; trying again")
                    self._catalog_changed = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), RETRY_DELAY_SECONDS)
                    self._wake.set()
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
            await self._watches.close()

    async def catch_up(self) -> None:
        """Loads the catalog when it changed (new and changed rooms are read) and reads the rooms changed since."""
        if self._catalog_changed:
            self._catalog_changed = False
            await self._reload()
        dirty, self._dirty = self._dirty, set()
        await self.read([self._rooms[s] for s in sorted(dirty) if s in self._rooms], trigger="change")

    async def _read_periodically(self) -> None:
        """The full reconciliation every reconcile_interval; in between, every poll_interval, the rooms without
        notifications."""
        await self.loaded.wait()
        loop = asyncio.get_running_loop()
        next_reconciliation = loop.time() + self._config.reconcile_interval
        while True:
            pause = min(self._config.poll_interval, next_reconciliation - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, pause))
            if self._stopping.is_set():
                return
            try:
                if loop.time() >= next_reconciliation:
                    next_reconciliation = loop.time() + self._config.reconcile_interval
                    await self.reconcile()
                else:
                    await self.poll()
            except Exception:
                log.exception("periodic read failed")

    async def poll(self) -> int:
        """Reads the rooms that have no notifications now, and those whose last read failed (a notification's read
        that was throttled is not lost until the reconciliation); returns how many failed."""
        rooms = [room for room in self._rooms.values() if self._watches.mode(room.mailbox) == NO_NOTIFICATIONS
                 or self.last_error(room.space_id) is not None]
        return await self.read(rooms, trigger="poll") if rooms else 0

    async def reconcile(self) -> Reconciliation:
        """Reads every room once."""
        started = time.monotonic()
        rooms = list(self._rooms.values())
        errors = await self.read(rooms, trigger="reconciliation")
        seconds = time.monotonic() - started
        metrics.RECONCILIATION.observe(seconds)
        log.info("reconciliation done", extra={"rooms": len(rooms), "errors": errors, "seconds": round(seconds, 3)})
        return Reconciliation(len(rooms), errors, seconds)

    # -- the catalog --------------------------------------------------------------------------------------------------

    async def _reload(self) -> None:
        """Rooms from the catalog fold: new or changed ones are read, gone ones get their empty picture."""
        async with self._db.acquire() as conn:
            locations, spaces = await store.catalog(conn)
        wanted = rooms_of(locations, spaces)
        now = self._clock()
        for space_id, room in wanted.items():
            # A room never read successfully still shows its picture age (growing from when it was first watched).
            self._read_ok.setdefault(space_id, now)
            old = self._rooms.get(space_id)
            if old != room:
                self._dirty.add(space_id)
                if old is None or (old.mailbox, old.connection) != (room.mailbox, room.connection):
                    self._modes.pop(space_id, None)  # a new pairing or new rights: the calendar view first
                record = self._records.get(space_id)
                if record is not None and (old is None or (old.mailbox, old.paired_at) != (room.mailbox,
                                                                                            room.paired_at)):
                    # The fold forgot the first-seen times of a new pairing: the next read records them afresh.
                    self._records[space_id] = replace(record, items_digest=None)
        gone = [s for s in self._rooms if s not in wanted]
        self._rooms = wanted
        self._by_mailbox = {}
        for room in wanted.values():
            self._by_mailbox.setdefault(room.mailbox, set()).add(room.space_id)
        in_use = {room.connection for room in wanted.values()}
        dropped = {self._servers.pop(c) for c in [c for c in self._servers if c not in in_use]}
        watched = self._watched_servers()
        self._watches.update(watched)
        # Options beside the credentials (names, title rule, a passed test) make a new connection but the same
        # server: its cached sessions and calls in flight stay.
        for server in dropped - set(watched):
            self._watches.after_close(server, self._gateway.forget)
        for space_id in gone:
            if self._read_ok.pop(space_id, None) is not None:
                metrics.PICTURE_AGE.remove(space_id)
        for space_id, record in list(self._records.items()):
            if record.mailbox is not None and space_id not in wanted:
                await self._retract(space_id, record)
        self.loaded.set()

    def _watched_servers(self) -> dict[ExchangeServer, list[str]]:
        watched: dict[ExchangeServer, list[str]] = {}
        for room in self._rooms.values():
            with contextlib.suppress(ExchangeError):
                watched.setdefault(self._server(room), []).append(room.mailbox)
        return watched

    def _server(self, room: Room) -> ExchangeServer:
        server = self._servers.get(room.connection)
        if server is None:
            try:
                server = self._servers[room.connection] = ExchangeServer.from_connection(room.connection,
                                                                                         self._secrets)
            except (SecretError, ValueError) as error:
                raise ExchangeError(ConnectionProblem.NOT_CONNECTED,
                                    f"The location's Exchange settings cannot be used: {error}") from None
        return server

    # -- reading ------------------------------------------------------------------------------------------------------

    async def read(self, rooms: list[Room], *, trigger: str = "request") -> int:
        """Reads the rooms (views one by one, free/busy in batches per server); returns how many failed. A room
        whose calendar view is refused is read through free/busy from then on, starting with this read."""
        failures = 0
        now = self._clock()
        views: list[tuple[Room, ExchangeServer]] = []
        by_server: dict[ExchangeServer, list[Room]] = {}
        for room in rooms:
            try:
                server = self._server(room)
            except ExchangeError as error:
                failures += await self._failed(room, error, ReadMode.VIEW)
                continue
            if self._reads_free_busy(room.space_id, now):
                by_server.setdefault(server, []).append(room)
            else:
                views.append((room, server))
        outcomes = await asyncio.gather(*(self._read_view(room, server, trigger) for room, server in views))
        for (room, server), outcome in zip(views, outcomes, strict=True):
            if outcome is None:  # refused: free/busy rights only
                if self._modes.get(room.space_id) is not ReadMode.FREE_BUSY:
                    log.info("calendar view refused: reading free/busy", extra={"space_id": room.space_id,
                                                                                "mailbox": room.mailbox})
                self._modes[room.space_id] = ReadMode.FREE_BUSY
                self._view_asked[room.space_id] = now
                by_server.setdefault(server, []).append(room)
            else:
                if outcome == 0 and self._modes.pop(room.space_id, None) is not None:
                    log.info("calendar view allowed again", extra={"space_id": room.space_id,
                                                                   "mailbox": room.mailbox})
                failures += outcome
        batches = [(server, group[i:i + reads.FREE_BUSY_BATCH]) for server, group in by_server.items()
                   for i in range(0, len(group), reads.FREE_BUSY_BATCH)]
        return failures + sum(await asyncio.gather(
            *(self._read_free_busy(server, batch, trigger) for server, batch in batches)))

    def _reads_free_busy(self, space_id: str, now: datetime) -> bool:
        """Whether the room is read through free/busy this time (not when its view is due to be asked again)."""
        if self._modes.get(space_id) is not ReadMode.FREE_BUSY:
            return False
        asked = self._view_asked.get(space_id)
        if asked is not None and (now - asked).total_seconds() < VIEW_RETRY_SECONDS:
            return True
        self._view_asked[space_id] = now
        return False

    async def _read_view(self, room: Room, server: ExchangeServer, trigger: str) -> int | None:
        """0: read, 1: failed, None: the view was refused (access denied)."""
        async with self._slots:
            observed = self._clock()
            span = window(observed, self._config.horizon_days)
            metrics.READS.labels(ReadMode.VIEW.value, trigger).inc()
            try:
                meetings = await reads.view(self._gateway, server, room.mailbox, span,
                                            organizer=room.policy.populate)
            except ExchangeError as error:
                if error.problem is ConnectionProblem.ACCESS_DENIED:
                    return None
                return await self._failed(room, error, ReadMode.VIEW)
            except Exception as error:
                return await self._unexpected(room, error, ReadMode.VIEW)
        return await self._apply_or_fail(room, meetings, observed, span, ReadMode.VIEW)

    async def _read_free_busy(self, server: ExchangeServer, rooms: list[Room], trigger: str) -> int:
        async with self._slots:
            observed = self._clock()
            span = window(observed, self._config.horizon_days)
            metrics.READS.labels(ReadMode.FREE_BUSY.value, trigger).inc(len(rooms))
            try:
                answers = await reads.free_busy(self._gateway, server, sorted({r.mailbox for r in rooms}), span)
            except ExchangeError as error:
                return sum([await self._failed(room, error, ReadMode.FREE_BUSY) for room in rooms])
            except Exception as error:
                return sum([await self._unexpected(room, error, ReadMode.FREE_BUSY) for room in rooms])
        errors = 0
        for room in rooms:
            answer = answers.get(room.mailbox, ExchangeError(ConnectionProblem.SERVER_ERROR,
                                                             "free/busy answered without this mailbox"))
            if isinstance(answer, ExchangeError):
                errors += await self._failed(room, answer, ReadMode.FREE_BUSY)
            else:
                errors += await self._apply_or_fail(room, answer, observed, span, ReadMode.FREE_BUSY)
        return errors

    async def _apply_or_fail(self, room: Room, meetings: list[Meeting], observed: datetime, span: Window,
                             mode: ReadMode) -> int:
        """0, or 1 when the picture could not be recorded (too large, the database, a picture the contract refuses):
        that room keeps its last picture, the other rooms of the read go on."""
        try:
            await self._apply(room, meetings, observed, span, mode)
        except PictureTooLarge as error:
            return await self._failed(room, ExchangeError(ConnectionProblem.SERVER_ERROR, str(error)), mode)
        except Exception as error:
            return await self._unexpected(room, error, mode)
        return 0

    async def _apply(self, room: Room, meetings: list[Meeting], observed: datetime, span: Window,
                     mode: ReadMode) -> None:
        space_id = room.space_id
        async with self._locks[space_id]:
            if self._rooms.get(space_id) != room or observed < self._applied.get(space_id, observed):
                return  # re-paired, unpaired or reconfigured meanwhile, or a later read was applied
            self._applied[space_id] = observed
            record = self._records.get(space_id)
            item_ids = {m.item_id for m in meetings if m.item_id} if mode is ReadMode.VIEW else set()
            seen_digest = items_digest(item_ids) if mode is ReadMode.VIEW else None
            async with self._db.acquire() as conn, conn.transaction():
                first_seen = {}
                if mode is ReadMode.VIEW and (room.policy.populate or record is None
                                              or record.items_digest != seen_digest):
                    first_seen = await store.first_seen(conn, space_id, item_ids, observed)
                busy = picture(meetings, first_seen, room.policy)
                new_digest = digest(room.mailbox, span, busy)
                if record is not None and record.digest == new_digest:
                    if record.last_error is not None or record.items_digest != seen_digest:
                        await store.record_read(conn, space_id, room.location_id, items_digest=seen_digest,
                                                read_mode=mode.value, error=None, at=observed)
                    record = replace(record, last_error=None, items_digest=seen_digest or record.items_digest)
                else:
                    state = FreeBusyState(
                        space_id=space_id, location_id=room.location_id, mailbox=room.mailbox,
                        sequence=next_sequence(record.sequence if record else None, observed),
                        window_start=span.start, window_end=span.end, observed_at=observed,
                        busy=busy if len(busy) <= MAX_BUSY_PERIODS else merged(busy))
                    state = fitted(state)
                    record = await store.publish(conn, state, new_digest, seen_digest, mode.value)
                    metrics.PUBLISHED.labels("picture").inc()
                    log.info("busy picture changed", extra={"space_id": space_id, "mailbox": room.mailbox,
                                                            "busy": len(busy), "sequence": state.sequence})
            self._records[space_id] = record
            self._read_ok[space_id] = observed

    async def _failed(self, room: Room, error: ExchangeError, mode: ReadMode) -> int:
        """Counts and records a room's failed read; its last picture stays. Returns 1 (one failure)."""
        metrics.READ_ERRORS.labels(error.problem.value).inc()
        log.warning("room read failed: %s", error.message, extra={
            "space_id": room.space_id, "mailbox": room.mailbox, "problem": error.problem.value,
            "read_mode": mode.value})
        record = self._records.get(room.space_id)
        if record is not None and record.mailbox not in (None, room.mailbox) and self._rooms.get(room.space_id) == room:
            # Paired to another mailbox since the last picture: that picture's meetings are not this space's.
            try:
                await self._retract(room.space_id, record, mailbox=record.mailbox)
            except Exception:
                log.exception("could not withdraw the old mailbox's picture", extra={"space_id": room.space_id})
            record = self._records.get(room.space_id)
        message = f"{error.problem.value}: {error.message}"
        if record is not None and record.last_error == message:
            return 1
        try:
            async with self._db.acquire() as conn:
                await store.record_read(conn, room.space_id, room.location_id, items_digest=None,
                                        read_mode=mode.value, error=message, at=self._clock())
        except Exception:
            log.exception("could not record a room's read error", extra={"space_id": room.space_id})
            return 1
        record = self._records.get(room.space_id)  # another read may have published meanwhile: keep its picture
        self._records[room.space_id] = replace(record, last_error=message) if record is not None else RoomRecord(
            room.location_id, None, None, None, 0, message)
        return 1

    async def _unexpected(self, room: Room, error: Exception, mode: ReadMode) -> int:
        """A room's read that failed for a reason Exchange did not give (a bug, the database): logged with its
        traceback, then recorded like an Exchange error."""
        log.error("room read failed unexpectedly", exc_info=error, extra={"space_id": room.space_id})
        message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        return await self._failed(room, ExchangeError(ConnectionProblem.SERVER_ERROR, f"internal error: {message}"),
                                  mode)

    async def _retract(self, space_id: str, record: RoomRecord, *, mailbox: str | None = None) -> None:
        """The space is no longer paired (or its location no longer connected), or, given the `mailbox` of its last
        picture, it is paired to another mailbox that cannot be read: one empty picture, no mailbox."""
        async with self._locks[space_id]:
            record = self._records.get(space_id, record)
            if (space_id in self._rooms) if mailbox is None else (record.mailbox != mailbox):
                return  # paired again, or the new mailbox was read meanwhile
            observed = self._clock()
            span = window(observed, self._config.horizon_days)
            state = FreeBusyState(space_id=space_id, location_id=record.location_id, mailbox=None,
                                  sequence=next_sequence(record.sequence, observed), window_start=span.start,
                                  window_end=span.end, observed_at=observed)
            async with self._db.acquire() as conn, conn.transaction():
                self._records[space_id] = await store.publish(conn, state, digest(None, span, []), None, None)
            if mailbox is None:
                self._applied[space_id] = observed
            metrics.PUBLISHED.labels("unpaired" if mailbox is None else "withdrawn").inc()
            log.info("space no longer watched: empty picture published" if mailbox is None else
                     "space paired to a mailbox that cannot be read: the old mailbox's picture withdrawn",
                     extra={"space_id": space_id, "mailbox": mailbox})

    # -- what operators see -------------------------------------------------------------------------------------------

    def refresh_gauges(self) -> None:
        now = self._clock()
        counts: dict[tuple[str, str], int] = {}
        for room in self._rooms.values():
            key = (self._modes.get(room.space_id, ReadMode.VIEW).value, self._watches.mode(room.mailbox))
            counts[key] = counts.get(key, 0) + 1
        metrics.ROOMS.clear()
        for (read_mode, notification_mode), count in counts.items():
            metrics.ROOMS.labels(read_mode, notification_mode).set(count)
        for space_id, at in self._read_ok.items():
            metrics.PICTURE_AGE.labels(space_id).set((now - at).total_seconds())

    @property
    def rooms(self) -> dict[str, Room]:
        return dict(self._rooms)

    def read_mode(self, space_id: str) -> ReadMode:
        return self._modes.get(space_id, ReadMode.VIEW)

    def notification_mode(self, mailbox: str) -> str:
        return self._watches.mode(mailbox)

    def notification_problem(self, mailbox: str) -> str | None:
        """Why the room has no notifications (it is polled), in words an operator can act on."""
        problem = self._watches.problem(mailbox)
        return problem.message if problem is not None else None

    def sequence(self, space_id: str) -> int | None:
        """The sequence of the space's last published picture."""
        record = self._records.get(space_id)
        return record.sequence if record is not None and record.digest is not None else None

    def last_error(self, space_id: str) -> str | None:
        record = self._records.get(space_id)
        return record.last_error if record is not None else None
