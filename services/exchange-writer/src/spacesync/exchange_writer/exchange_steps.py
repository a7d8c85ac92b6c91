"""One planned step for one slot, against Exchange through the gateway; returns the slot's new record."""

from __future__ import annotations

from dataclasses import replace

from spacesync.common.db import Database
from spacesync.common.events.booking import BookingSlot
from spacesync.common.events.sync import SlotSyncState
from spacesync.common.exchange import ExchangeGateway, ExchangeServer, ItemGone, ItemRef
from spacesync.exchange_writer import metrics, sync_store
from spacesync.exchange_writer.plan import Action, SlotRecord, Step, Target


class ExchangeSteps:
    def __init__(self, db: Database, gateway: ExchangeGateway) -> None:
        self._db = db
        self._gateway = gateway

    async def run(self, work: sync_store.BookingWork, slot: BookingSlot, current: SlotRecord,
                  target: Target | None, action: Action, server: ExchangeServer | None) -> SlotRecord:
        try:
            result = await self._run(work, slot, current, target, action, server)
        except Exception:
            metrics.STEPS.labels(action.step.value, "error").inc()
            raise
        metrics.STEPS.labels(action.step.value, "ok").inc()
        return result

    async def _run(self, work: sync_store.BookingWork, slot: BookingSlot, current: SlotRecord,
                   target: Target | None, action: Action, server: ExchangeServer | None) -> SlotRecord:
        if action.step is Step.FORGET:
            return _removed(current)
        assert server is not None
        assert action.mailbox is not None
        if action.step is Step.DELETE:
            assert current.item is not None
            await self._gateway.delete(server, action.mailbox, current.item)
            return _removed(current)
        if action.step is Step.DELETE_STAMPED:
            for ref in await self._gateway.find_stamped(server, action.mailbox, slot.slot_id):
                await self._gateway.delete(server, action.mailbox, ref)
            return _removed(current)
        assert target is not None
        if action.step is Step.UPDATE:
            assert current.item is not None
            try:
                ref = await self._gateway.update(server, target.mailbox, current.item, target.appointment)
            except ItemGone:  # deleted in Outlook: the booking still stands, so it is written again
                return await self._create(work, current, target, server, lookup_first=True)
            return _synced(current, target, ref)
        return await self._create(work, current, target, server, lookup_first=action.lookup_first)

    async def _create(self, work: sync_store.BookingWork, current: SlotRecord, target: Target,
                      server: ExchangeServer, *, lookup_first: bool) -> SlotRecord:
        """Creates the appointment exactly once: an appointment already stamped with the slot id is adopted
        (extra copies deleted), and the intent is recorded before CreateItem so a crash before the answer was
        recorded leads to a lookup, not a second appointment."""
        slot_id = target.appointment.slot_id
        if lookup_first:
            found = await self._gateway.find_stamped(server, target.mailbox, slot_id)
            if found:
                keep, *extra = found
                for ref in extra:
                    await self._gateway.delete(server, target.mailbox, ref)
                ref = await self._gateway.update(server, target.mailbox, keep, target.appointment)
                return _synced(current, target, ref)
        intent = replace(current, state=SlotSyncState.PENDING, item=None, mailbox=target.mailbox,
                         location_id=target.location_id, create_intent=target.mailbox)
        async with self._db.acquire() as conn:
            await sync_store.save_records(conn, work.claim, [(work.booking_slot_space(slot_id), intent)])
        ref = await self._gateway.create(server, target.mailbox, target.appointment)
        return _synced(intent, target, ref)


def _synced(current: SlotRecord, target: Target, ref: ItemRef) -> SlotRecord:
    return replace(current, state=SlotSyncState.SYNCED, item=ref, mailbox=target.mailbox,
                   location_id=target.location_id, fingerprint=target.fingerprint, create_intent=None)


def _removed(current: SlotRecord) -> SlotRecord:
    return replace(current, state=SlotSyncState.REMOVED, item=None, create_intent=None, fingerprint=None)
