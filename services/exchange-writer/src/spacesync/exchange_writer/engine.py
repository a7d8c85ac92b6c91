"""The sync engine: claims bookings that need a pass and runs the passes.

Strict order per booking: one pass at a time (a lease in PostgreSQL, renewed while the pass runs; bookings
in flight here are never claimed again), slots in order. Different bookings run in parallel, bounded here and
per Exchange server by the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spacesync.common.db import Database
from spacesync.common.exchange import ExchangeGateway
from spacesync.common.secrets import SecretBox
from spacesync.exchange_writer import sync_store
from spacesync.exchange_writer.booking_pass import BookingPass
from spacesync.exchange_writer.plan import PAIRING_GRACE

log = logging.getLogger(__name__)
PASS_FAILURE_DELAY = timedelta(seconds=5)


@dataclass(frozen=True)
class EngineSettings:
    instance_id: str = "writer"
    concurrency: int = 32
    lease: timedelta = timedelta(minutes=2)
    poll_interval: float = 0.5
    shutdown_grace: float = 20.0
    pairing_grace: timedelta = PAIRING_GRACE
    trust_records: bool = False
    call_timeout: timedelta = timedelta(seconds=30)
    """The gateway's HTTP timeout: a call cut off at shutdown may still land within it."""


class SyncEngine:
    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox,
                 settings: EngineSettings = EngineSettings(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        # The instance id survives restarts (its leases are taken back at start); the run id tells this run's
        # leases from those of another process that (wrongly) shares the instance id.
        self._owner = f"{settings.instance_id}/{uuid.uuid4().hex[:8]}"
        self._pass = BookingPass(db, gateway, secrets, self._owner, clock, settings.pairing_grace,
                                 settings.trust_records)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: dict[sync_store.BookingKey, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Called after a fold committed new work."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        await self._release_own_leases()
        renewing = asyncio.create_task(self._renew_leases(), name="lease-renewal")
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claims = await self._claim()
                for claim in claims:
                    task = asyncio.create_task(self._guarded_pass(claim), name=f"pass-{claim.booking_id}")
                    self._in_flight[claim.key] = task
                    task.add_done_callback(functools.partial(self._pass_done, claim.key))
                if not claims or len(self._in_flight) >= self._settings.concurrency:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
            await self._drain()
        finally:
            renewing.cancel()

    async def _drain(self) -> None:
        """At shutdown: passes in flight get the grace period, then are cancelled; their bookings are released
        for the next run or replica once a call cut off in a worker thread can no longer land."""
        if self._in_flight:
            _, unfinished = await asyncio.wait(list(self._in_flight.values()), timeout=self._settings.shutdown_grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self._db.acquire() as conn:
                await sync_store.release_leases_at_stop(conn, self._owner, self._settings.call_timeout)

    async def _claim(self) -> list[sync_store.Claim]:
        free = self._settings.concurrency - len(self._in_flight)
        if free <= 0:
            return []
        try:
            async with self._db.acquire() as conn:
                return await sync_store.claim(conn, self._owner, free, self._settings.lease,
                                              exclude=list(self._in_flight))
        except Exception as error:
            log.warning("cannot claim bookings; retrying", extra={"error": repr(error)})
            return []

    async def _renew_leases(self) -> None:
        """Keeps the leases of passes in flight (a pass may wait out long back-offs) from expiring."""
        while True:
            await asyncio.sleep(self._settings.lease.total_seconds() / 3)
            if not self._in_flight:
                continue
            try:
                async with self._db.acquire() as conn:
                    await sync_store.renew_leases(conn, self._owner, list(self._in_flight), self._settings.lease)
            except Exception as error:
                log.warning("cannot renew leases", extra={"error": repr(error)})

    async def _release_own_leases(self) -> None:
        """Leases this replica held before a crash or kill: nothing of ours runs yet, so they are free now."""
        while not self._stopping.is_set():
            try:
                async with self._db.acquire() as conn:
                    released = await sync_store.release_earlier_runs(conn, self._settings.instance_id, self._owner)
            except Exception as error:
                log.warning("cannot reach PostgreSQL yet; retrying", extra={"error": repr(error)})
                await asyncio.sleep(1.0)
                continue
            if released:
                log.info("took back leases of an earlier run", extra={"bookings": released})
            return

    def _pass_done(self, key: sync_store.BookingKey, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        self._wake.set()  # room for another pass

    async def _guarded_pass(self, claim: sync_store.Claim) -> None:
        """A pass that fails outside Exchange (PostgreSQL gone mid-pass) gives its lease back with a short delay
        rather than leaving the booking until the lease expires; one that lost its lease just stops."""
        try:
            await self._pass.run(claim)
        except sync_store.LeaseLost:
            log.warning("lease lost during a pass; the new holder carries on", extra={"booking_id": claim.booking_id})
        except Exception:
            log.exception("booking pass failed; retrying soon", extra={"booking_id": claim.booking_id})
            with contextlib.suppress(Exception):
                async with self._db.acquire() as conn:
                    await sync_store.finish(conn, claim, self._owner, self._clock() + PASS_FAILURE_DELAY)
