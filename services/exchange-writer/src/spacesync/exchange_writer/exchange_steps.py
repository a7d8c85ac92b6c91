"""One planned step for one slot, against Exchange through the gateway. Each step updates `Progress.record` as
soon as something became durable (an intent recorded, an item created or deleted), so a failure later in the
slot's steps keeps it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from spacesync.common.db import Database
from spacesync.common.events.sync import SlotSyncState
from spacesync.common.exchange import ExchangeGateway, ExchangeServer, ItemGone, ItemRef, slot_stamp
from spacesync.exchange_writer import metrics, sync_store
from spacesync.exchange_writer.plan import Action, SlotRecord, Step, Target


@dataclass
class Progress:
    work: sync_store.BookingWork
    space_id: str
    record: SlotRecord


class ExchangeSteps:
    def __init__(self, db: Database, gateway: ExchangeGateway, owner: str) -> None:
        self._db = db
        self._gateway = gateway
        self._owner = owner

    async def run(self, progress: Progress, target: Target | None, action: Action,
                  server: ExchangeServer | None) -> None:
        try:
            await self._run(progress, target, action, server)
        except Exception:
            metrics.STEPS.labels(action.step.value, "error").inc()
            raise
        metrics.STEPS.labels(action.step.value, "ok").inc()

    async def _run(self, progress: Progress, target: Target | None, action: Action,
                   server: ExchangeServer | None) -> None:
        current = progress.record
        if action.step is Step.FORGET:
            progress.record = _removed(current)
            return
        assert server is not None
        assert action.mailbox is not None
        if action.step is Step.DELETE:
            assert current.item is not None
            await self._gateway.delete(server, action.mailbox, current.item)
            progress.record = _removed(current)
            return
        if action.step is Step.DELETE_STAMPED:
            stamp = slot_stamp(progress.work.claim.source, progress.work.booking.booking_id, current.slot_id)
            for ref in await self._gateway.find_stamped(server, action.mailbox, stamp):
                await self._gateway.delete(server, action.mailbox, ref)
            progress.record = _removed(current)
            return
        assert target is not None
        if action.step is Step.UPDATE:
            assert current.item is not None
            try:
                ref = await self._gateway.update(server, target.mailbox, current.item, target.appointment)
            except ItemGone:  # deleted in Outlook: the booking still stands, so it is written again
                await self._create(progress, target, server, lookup_first=True)
                return
            progress.record = _synced(current, target, ref)
            return
        await self._create(progress, target, server, lookup_first=action.lookup_first)

    async def _create(self, progress: Progress, target: Target, server: ExchangeServer, *,
                      lookup_first: bool) -> None:
        """Creates the appointment exactly once: an appointment already stamped with the slot id is adopted
        (extra copies deleted), and the intent is recorded before CreateItem so a crash or a lost answer leads
        to a lookup (or, if the booking goes away, a delete by stamp), never a second or a forgotten one."""
        if lookup_first:
            found = await self._gateway.find_stamped(server, target.mailbox, target.appointment.slot_id)
            if found:
                keep, *extra = found
                for ref in extra:
                    await self._gateway.delete(server, target.mailbox, ref)
                ref = await self._gateway.update(server, target.mailbox, keep, target.appointment)
                progress.record = _synced(progress.record, target, ref)
                return
        intent = replace(progress.record, state=SlotSyncState.PENDING, item=None, mailbox=target.mailbox,
                         location_id=target.location_id, create_intent=target.mailbox)
        async with self._db.acquire() as conn, conn.transaction():
            await sync_store.hold_lease(conn, progress.work.claim, self._owner)
            await sync_store.save_records(conn, progress.work.claim, [(progress.space_id, intent)])
        progress.record = intent
        ref = await self._gateway.create(server, target.mailbox, target.appointment)
        progress.record = _synced(intent, target, ref)


def _synced(current: SlotRecord, target: Target, ref: ItemRef) -> SlotRecord:
    return replace(current, state=SlotSyncState.SYNCED, item=ref, mailbox=target.mailbox,
                   location_id=target.location_id, fingerprint=target.fingerprint, create_intent=None)


def _removed(current: SlotRecord) -> SlotRecord:
    return replace(current, state=SlotSyncState.REMOVED, item=None, create_intent=None, fingerprint=None)
