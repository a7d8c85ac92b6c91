"""One pass over one booking: plan each slot, run its Exchange steps, record the results and the outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from spacesync.common.db import Database
from spacesync.common.events.booking import BookingSlot
from spacesync.common.events.catalog import TitleRule
from spacesync.common.events.sync import BookingSyncState, SlotSyncState
from spacesync.common.exchange import ConnectionProblem, ExchangeError, ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError
from spacesync.exchange_writer import metrics, sync_store
from spacesync.exchange_writer.appointment import appointment, fingerprint
from spacesync.exchange_writer.exchange_steps import ExchangeSteps, Progress
from spacesync.exchange_writer.outcome import outcome
from spacesync.exchange_writer.plan import Action, SlotRecord, Step, Target, plan, retry_delay, wanted

log = logging.getLogger(__name__)

# Checked when the settings were saved; in operation these are outages of DNS, a certificate or a proxy in front
# of Exchange that get fixed without anyone touching Spacesync, so they are retried (and reported after a few).
RETRIED_IN_OPERATION = frozenset({ConnectionProblem.NOT_EWS, ConnectionProblem.TLS,
                                  ConnectionProblem.HOST_NOT_FOUND})
REMOVAL = frozenset({Step.DELETE, Step.DELETE_STAMPED})


class BookingPass:
    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox, owner: str,
                 clock: Callable[[], datetime], pairing_grace: timedelta, trust_records: bool) -> None:
        self._db = db
        self._pairing_grace = pairing_grace
        self._trust_records = trust_records
        self._steps = ExchangeSteps(db, gateway, owner)
        self._secrets = secrets
        self._owner = owner
        self._clock = clock

    async def run(self, claim: sync_store.Claim) -> None:
        async with self._db.acquire() as conn:
            work = await sync_store.load(conn, claim)
        changed: dict[str, tuple[str, SlotRecord]] = {}
        delays: list[float] = []
        slots = {slot.slot_id: slot for slot in work.booking.slots}
        # Slots in booking order; then records of slots the booking no longer lists (another producer may drop
        # them instead of cancelling): they have no target, so their appointments are removed.
        for slot_id in [*slots, *(s for s in work.records if s not in slots)]:
            slot, record = slots.get(slot_id), work.records.get(slot_id)
            space_id = slot.space_id if slot else work.record_spaces[slot_id]
            target = self._target(work, slot) if slot else None
            actions = plan(record, target, trust_records=self._trust_records)
            if not actions:
                continue
            new, delay = await self._apply(work, slot_id, space_id, record, target, actions)
            changed[slot_id] = (space_id, new)
            if delay is not None:
                delays.append(delay)
        retry_at = self._clock() + timedelta(seconds=max(delays)) if delays else None
        async with self._db.acquire() as conn, conn.transaction():
            await sync_store.hold_lease(conn, claim, self._owner)
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

    def _target(self, work: sync_store.BookingWork, slot: BookingSlot) -> Target | None:
        space = work.spaces.get(slot.space_id)
        why = wanted(work.booking, slot, space, work.records.get(slot.slot_id), grace=self._pairing_grace)
        if space is None or space.resource is None or why is None:
            return None
        location = work.locations.get(space.location_id)
        rule = location.exchange.title_rule if location and location.exchange else TitleRule.PATRON_NAME
        category = work.categories.get(space.category_id)
        appt = appointment(work.claim.source, work.booking, slot, rule=rule, space_name=space.name,
                           nicknames_enabled=bool(category and category.public_nicknames))
        return Target(space.resource, space.location_id, appt, fingerprint(space.resource, appt), why)

    async def _apply(self, work: sync_store.BookingWork, slot_id: str, space_id: str, record: SlotRecord | None,
                     target: Target | None, actions: list[Action]) -> tuple[SlotRecord, float | None]:
        """Runs the slot's steps; returns its new record and, for a transient failure, the retry delay."""
        unsettled = record is not None and record.state in (SlotSyncState.PENDING, SlotSyncState.FAILED)
        attempts = (record.attempts if record is not None and unsettled else 0) + 1
        # A first record names where the slot is headed, so a change of that location's settings retries it.
        progress = Progress(work, space_id, record or SlotRecord(
            slot_id, SlotSyncState.PENDING, mailbox=target.mailbox if target else None,
            location_id=target.location_id if target else None))
        try:
            for action in actions:
                server = (self._server(work, action.location_id, removal=action.step in REMOVAL)
                          if action.location_id else None)
                await self._steps.run(progress, target, action, server)
        except sync_store.LeaseLost:
            raise
        except ExchangeError as error:
            return self._failed(work, progress.record, attempts, error)
        except Exception as error:  # a bug or a database hiccup: keep the slot, try again later
            log.exception("unexpected error in a slot pass", extra={"slot_id": slot_id})
            wrapped = ExchangeError(ConnectionProblem.SERVER_ERROR, f"internal error: {type(error).__name__}")
            return self._failed(work, progress.record, attempts, wrapped)
        if progress.record.state is SlotSyncState.SYNCED:
            metrics.SYNC_LAG.observe(max(0.0, (self._clock() - work.event_time).total_seconds()))
        return replace(progress.record, attempts=attempts, last_error=None), None

    def _failed(self, work: sync_store.BookingWork, current: SlotRecord, attempts: int,
                error: ExchangeError) -> tuple[SlotRecord, float | None]:
        """`current` keeps what the steps made durable before the failure (an intent to create, a removal)."""
        extra = {"booking_id": work.booking.booking_id, "slot_id": current.slot_id, "problem": error.problem.value,
                 "attempts": attempts, "error": error.message}
        if error.transient or error.problem in RETRIED_IN_OPERATION:
            metrics.RETRIES.labels(error.problem.value).inc()
            delay = retry_delay(attempts, back_off=error.back_off)
            log.info("slot will be retried", extra={**extra, "retry_in_seconds": round(delay, 2)})
            return replace(current, state=SlotSyncState.PENDING, attempts=attempts, last_error=error.message), delay
        metrics.FAILED.labels(error.problem.value).inc()
        log.warning("slot failed; it is retried when the pairing or the location's settings change", extra=extra)
        return replace(current, state=SlotSyncState.FAILED, attempts=attempts, last_error=error.message), None

    def _server(self, work: sync_store.BookingWork, location_id: str, *, removal: bool) -> ExchangeServer:
        """The location's Exchange server; for removals also the connection it had before it was disconnected,
        so appointments of a space unpaired just before are still taken out of the room."""
        location = work.locations.get(location_id)
        connection = location.exchange if location else None
        if connection is None and removal:
            connection = work.retired_connections.get(location_id)
        if connection is None:
            raise ExchangeError(ConnectionProblem.NOT_CONNECTED,
                                "The location is not connected to Outlook/Exchange: save its Exchange settings.")
        try:
            return ExchangeServer.from_connection(connection, self._secrets)
        except SecretError:
            raise ExchangeError(ConnectionProblem.NOT_CONNECTED,
                                "The location's Exchange password cannot be decrypted: SPACESYNC_SECRET_KEYS does "
                                "not hold the key it was saved with. Save the Exchange settings again.") from None
