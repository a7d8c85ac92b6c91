"""exchange.sync payloads: what the exchange-writer did with each slot of a booking."""

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from spacesync.common.events.fields import CONTRACT_CONFIG, ExchangeId, Id, UtcDatetime, Version


class SlotSyncState(StrEnum):
    PENDING = "pending"
    SYNCED = "synced"
    FAILED = "failed"
    REMOVED = "removed"


class SlotSync(BaseModel):
    model_config = CONTRACT_CONFIG

    slot_id: Id
    space_id: Id
    state: SlotSyncState
    item_id: ExchangeId | None = Field(default=None, description="Exchange ItemId: the Outlook/Exchange Sync ID")
    change_key: ExchangeId | None = None
    mailbox: Annotated[str, StringConstraints(max_length=320)] | None = Field(
        default=None, description="The resource mailbox the appointment is (or was) in")
    attempts: int = Field(default=0, ge=0, description="Exchange calls made for this slot's current state")
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None


class BookingSyncState(BaseModel):
    """Data of booking.synced, booking.sync_failed and booking.unsynced."""

    model_config = CONTRACT_CONFIG

    booking_id: Id
    booking_source: Id = Field(description="ce_source of the booking's own events (ids are unique per source)")
    booking_version: Version = Field(description="The booking version these results apply to")
    sequence: Version = Field(description="Writer's per-booking sequence: +1 per published outcome")
    slots: list[SlotSync]
    observed_at: UtcDatetime
