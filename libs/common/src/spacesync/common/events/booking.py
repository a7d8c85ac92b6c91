"""booking.events payloads: the full state of a booking after each change."""

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, EmailStr, Field, model_validator

from spacesync.common.events.fields import CONTRACT_CONFIG, Id, PersonName, UtcDatetime, Version


class BookingStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class SlotStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Patron(BaseModel):
    model_config = CONTRACT_CONFIG

    first_name: PersonName
    last_name: PersonName
    email: EmailStr


class BookingSlot(BaseModel):
    """One date/time of a booking in one space; one appointment in one resource calendar."""

    model_config = CONTRACT_CONFIG

    slot_id: Id
    space_id: Id
    start: UtcDatetime
    end: UtcDatetime
    status: SlotStatus

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"slot {self.slot_id}: end must be after start")
        return self


class BookingState(BaseModel):
    """Data of booking.created, booking.updated and booking.cancelled (full state, not a delta)."""

    model_config = CONTRACT_CONFIG

    booking_id: Id
    version: Version
    status: BookingStatus
    patron: Patron
    public_nickname: PersonName | None = None
    slots: list[BookingSlot] = Field(min_length=1, description="Cancelled slots stay, with status cancelled")
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _slot_ids_unique(self) -> Self:
        ids = [slot.slot_id for slot in self.slots]
        if len(ids) != len(set(ids)):
            raise ValueError("slot ids must be unique within a booking")
        return self

    def confirmed_slots(self) -> list[BookingSlot]:
        if self.status is BookingStatus.CANCELLED:
            return []
        return [slot for slot in self.slots if slot.status is SlotStatus.CONFIRMED]
