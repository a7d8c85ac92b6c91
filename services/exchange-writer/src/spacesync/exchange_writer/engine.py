"""The sync engine: passes over bookings that need one, taking each slot's appointment to where it belongs.

Strict order per booking (one pass at a time, slots in order), different bookings in parallel (bounded here,
and per server by the gateway). A pass reads the booking and catalog, plans each slot (plan.py), calls
Exchange, and records the results with the exchange.sync outcome in one transaction (outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from spacesync.common.db import Database
from spacesync.common.events.booking import BookingSlot
from spacesync.common.events.catalog import TitleRule
from spacesync.common.events.sync import BookingSyncState, SlotSyncState
from spacesync.common.exchange import ConnectionProblem, ExchangeError, ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError
from spacesync.exchange_writer import metrics, sync_store
from spacesync.exchange_writer.appointment import appointment, fingerprint
from spacesync.exchange_writer.exchange_steps import ExchangeSteps
from spacesync.exchange_writer.outcome import outcome
from spacesync.exchange_writer.plan import Action, SlotRecord, SpacePairing, Target, plan, retry_delay, wanted

log = logging.getLogger(__name__)
PASS_FAILURE_DELAY = timedelta(seconds=5)


@dataclass(frozen=True)
class EngineSettings:
    instance_id: str = "writer"
    concurrency: int = 32
    lease: timedelta = timedelta(minutes=2)
    poll_interval: float = 0.5
    shutdown_grace: float = 20.0


class SyncEngine:
    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox,
                 settings: EngineSettings = EngineSettings(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._steps = ExchangeSteps(db, gateway)
        self._secrets = secrets
        self._settings = settings
        self._clock = clock
        self._owner = settings.instance_id
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._passes: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Called after a fold committed new work."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        await self._release_own_leases()
        while not self._stopping.is_set():
            self._wake.clear()
            claims: list[sync_store.Claim] = []
            free = self._settings.concurrency - len(self._passes)
            if free > 0:
                try:
                    async with self._db.acquire() as conn:
                        claims = await sync_store.claim(conn, self._owner, free, self._settings.lease)
                except Exception as error:
                    log.warning("cannot claim bookings; retrying", extra={"error": repr(error)})
            for claim in claims:
                task = asyncio.create_task(self._guarded_pass(claim), name=f"pass-{claim.booking_id}")
                self._passes.add(task)
                task.add_done_callback(self._pass_done)
            if not claims or len(self._passes) >= self._settings.concurrency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
        if self._passes:  # finish what is in flight; an unfinished lease just expires
            await asyncio.wait(self._passes, timeout=self._settings.shutdown_grace)

    async def _release_own_leases(self) -> None:
        """Leases this replica held before a crash or kill: nothing of ours runs yet, so they are free now."""
        while not self._stopping.is_set():
            try:
                async with self._db.acquire() as conn:
                    released = await sync_store.release_leases(conn, self._owner)
            except Exception as error:
                log.warning("cannot reach PostgreSQL yet; retrying", extra={"error": repr(error)})
                await asyncio.sleep(1.0)
                continue
            if released:
                log.info("took back leases of an earlier run", extra={"bookings": released})
            return

    def _pass_done(self, task: asyncio.Task[None]) -> None:
        self._passes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("booking pass failed", exc_info=task.exception())
        self._wake.set()  # a slot is free

    async def _guarded_pass(self, claim: sync_store.Claim) -> None:
        """A pass that fails outside Exchange (PostgreSQL gone mid-pass) gives its lease back with a short delay,
        rather than leaving the booking until the lease expires."""
        try:
            await self._pass(claim)
        except Exception:
            log.exception("booking pass failed; retrying soon", extra={"booking_id": claim.booking_id})
            with contextlib.suppress(Exception):
                async with self._db.acquire() as conn:
                    await sync_store.finish(conn, claim, self._owner, self._clock() + PASS_FAILURE_DELAY)

    async def _pass(self, claim: sync_store.Claim) -> None:
        async with self._db.acquire() as conn:
            work = await sync_store.load(conn, claim)
        changed: dict[str, tuple[str, SlotRecord]] = {}
        delays: list[float] = []
        for slot in work.booking.slots:
            record = work.records.get(slot.slot_id)
            target = self._target(work, slot, work.spaces.get(slot.space_id), record)
            actions = plan(record, target)
            if not actions:
                continue
            new, delay = await self._apply(work, slot, record, target, actions)
            changed[slot.slot_id] = (slot.space_id, new)
            if delay is not None:
                delays.append(delay)
        retry_at = self._clock() + timedelta(seconds=max(delays)) if delays else None
        async with self._db.acquire() as conn, conn.transaction():
            await sync_store.save_records(conn, claim, changed.values())
            merged = {slot_id: (work.record_spaces[slot_id], r) for slot_id, r in work.records.items()}
            merged.update(changed)
            result = outcome(list(merged.values()))
            if result is not None and result.fingerprint != work.published_fingerprint:
                state = BookingSyncState(booking_id=work.booking.booking_id, booking_source=claim.source,
                                         booking_version=work.booking.version, sequence=work.sync_sequence + 1,
                                         slots=result.slots, observed_at=self._clock())
                await sync_store.publish(conn, work, result.event_type, state, result.fingerprint)
                metrics.PUBLISHED.labels(result.event_type).inc()
            await sync_store.finish(conn, claim, self._owner, retry_at)

    def _target(self, work: sync_store.BookingWork, slot: BookingSlot, space: SpacePairing | None,
                record: SlotRecord | None) -> Target | None:
        if space is None or space.resource is None or not wanted(work.booking, slot, space, record):
            return None
        location = work.locations.get(space.location_id)
        rule = location.exchange.title_rule if location and location.exchange else TitleRule.PATRON_NAME
        category = work.categories.get(space.category_id)
        appt = appointment(work.booking, slot, rule=rule, space_name=space.name,
                           nicknames_enabled=bool(category and category.public_nicknames))
        return Target(space.resource, space.location_id, appt, fingerprint(space.resource, appt))

    async def _apply(self, work: sync_store.BookingWork, slot: BookingSlot, record: SlotRecord | None,
                     target: Target | None, actions: list[Action]) -> tuple[SlotRecord, float | None]:
        """Runs the slot's steps; returns its new record and, for a transient failure, the retry delay."""
        unsettled = record is not None and record.state in (SlotSyncState.PENDING, SlotSyncState.FAILED)
        attempts = (record.attempts if record is not None and unsettled else 0) + 1
        # A first record names where the slot is headed, so a change of that location's settings retries it.
        current = record or SlotRecord(slot.slot_id, SlotSyncState.PENDING,
                                       location_id=target.location_id if target else None)
        try:
            for action in actions:
                server = self._server(work, action.location_id) if action.location_id else None
                current = await self._steps.run(work, slot, current, target, action, server)
        except ExchangeError as error:
            return self._failed(work, current, attempts, error)
        except Exception as error:  # a bug or a database hiccup: keep the slot, try again later
            log.exception("unexpected error in a slot pass", extra={"slot_id": slot.slot_id})
            wrapped = ExchangeError(ConnectionProblem.SERVER_ERROR, f"internal error: {type(error).__name__}")
            return self._failed(work, current, attempts, wrapped)
        if current.state is SlotSyncState.SYNCED:
            metrics.SYNC_LAG.observe(max(0.0, (self._clock() - work.event_time).total_seconds()))
        return replace(current, attempts=attempts, last_error=None), None

    def _failed(self, work: sync_store.BookingWork, current: SlotRecord, attempts: int,
                error: ExchangeError) -> tuple[SlotRecord, float | None]:
        extra = {"booking_id": work.booking.booking_id, "slot_id": current.slot_id, "problem": error.problem.value,
                 "attempts": attempts, "error": error.message}
        if error.transient:
            metrics.RETRIES.labels(error.problem.value).inc()
            delay = retry_delay(attempts, back_off=error.back_off)
            log.info("slot will be retried", extra={**extra, "retry_in_seconds": round(delay, 2)})
            return replace(current, state=SlotSyncState.PENDING, attempts=attempts, last_error=error.message), delay
        metrics.FAILED.labels(error.problem.value).inc()
        log.warning("slot failed; it is retried when the pairing or the location's settings change", extra=extra)
        return replace(current, state=SlotSyncState.FAILED, attempts=attempts, last_error=error.message), None

    def _server(self, work: sync_store.BookingWork, location_id: str) -> ExchangeServer:
        location = work.locations.get(location_id)
        if location is None or location.exchange is None:
            raise ExchangeError(ConnectionProblem.NOT_CONNECTED,
                                "The location is not connected to Outlook/Exchange: save its Exchange settings.")
        try:
            return ExchangeServer.from_connection(location.exchange, self._secrets)
        except SecretError:
            raise ExchangeError(ConnectionProblem.NOT_CONNECTED,
                                "The location's Exchange password cannot be decrypted: SPACESYNC_SECRET_KEYS does "
                                "not hold the key it was saved with. Save the Exchange settings again.") from None
