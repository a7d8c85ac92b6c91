"""What the writer tells booking-service about a booking (booking.synced / sync_failed / unsynced). Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from spacesync.common.events.sync import SlotSync, SlotSyncState
from spacesync.exchange_writer.plan import SlotRecord

# Transient failures are retried quietly at first; after this many the admin sees them (the slot stays pending).
REPORT_AFTER_ATTEMPTS = 3


@dataclass(frozen=True)
class Outcome:
    event_type: str
    slots: list[SlotSync]
    fingerprint: str


def outcome(records: list[tuple[str, SlotRecord]]) -> Outcome | None:
    """The event for the booking's slot records (space id, record), or None while there is nothing to report:
    no slot ever concerned Exchange, or slots are still being written without a reportable error."""
    if not records:
        return None
    states = [r.state for _, r in records]
    reportable_wait = any(r.state is SlotSyncState.PENDING and r.attempts >= REPORT_AFTER_ATTEMPTS
                          for _, r in records)
    if SlotSyncState.FAILED in states or reportable_wait:
        event_type = "booking.sync_failed"
    elif SlotSyncState.PENDING in states:
        return None
    elif all(state is SlotSyncState.REMOVED for state in states):
        event_type = "booking.unsynced"
    else:
        event_type = "booking.synced"
    slots = [SlotSync(slot_id=r.slot_id, space_id=space_id, state=r.state,
                      item_id=r.item.item_id if r.item else None, change_key=r.item.change_key if r.item else None,
                      mailbox=r.mailbox, attempts=r.attempts,
                      error=r.last_error if r.state in (SlotSyncState.FAILED, SlotSyncState.PENDING) else None)
             for space_id, r in sorted(records, key=lambda pair: pair[1].slot_id)]
    text = event_type + "".join(
        f"|{s.slot_id},{s.state},{s.item_id},{s.change_key},{s.error}" for s in slots)
    return Outcome(event_type, slots, hashlib.sha256(text.encode()).hexdigest()[:32])
