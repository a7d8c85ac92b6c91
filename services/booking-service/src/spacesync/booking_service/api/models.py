"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, model_validator

from spacesync.common.events.booking import BookingStatus, Patron, SlotStatus
from spacesync.common.events.catalog import OpeningHours, TimeZoneName
from spacesync.common.events.fields import Name, PersonName, UtcDatetime

Nickname = PersonName

STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- admin: catalog -----------------------------------------------------------------------------------

class LocationCreate(BaseModel):
    model_config = STRICT
    name: Name
    timezone: TimeZoneName


class LocationPatch(BaseModel):
    model_config = STRICT
    name: Name | None = None
    timezone: TimeZoneName | None = None
    active: bool | None = None


class CategoryCreate(BaseModel):
    model_config = STRICT
    location_id: UUID
    name: Name
    public_nicknames: bool = False


class CategoryPatch(BaseModel):
    model_config = STRICT
    name: Name | None = None
    public_nicknames: bool | None = None
    active: bool | None = None


class SpaceCreate(BaseModel):
    model_config = STRICT
    category_id: UUID
    name: Name
    slot_minutes: int = Field(ge=5, le=1440, examples=[30])
    max_booking_minutes: int = Field(ge=5, le=1440, examples=[120])
    opening_hours: OpeningHours

    @model_validator(mode="after")
    def _max_fits_grid(self) -> Self:
        if self.max_booking_minutes < self.slot_minutes or self.max_booking_minutes % self.slot_minutes:
            raise ValueError("max_booking_minutes must be a multiple of slot_minutes")
        return self


class SpacePatch(BaseModel):
    model_config = STRICT
    category_id: UUID | None = None
    name: Name | None = None
    slot_minutes: int | None = Field(default=None, ge=5, le=1440)
    max_booking_minutes: int | None = Field(default=None, ge=5, le=1440)
    opening_hours: OpeningHours | None = None
    active: bool | None = None


class PublicSpace(BaseModel):
    id: UUID
    name: str
    location_id: UUID
    location_name: str
    category_id: UUID
    category_name: str
    timezone: str
    slot_minutes: int
    max_booking_minutes: int
    opening_hours: OpeningHours
    public_nicknames: bool


# --- public: bookings ---------------------------------------------------------------------------------

class SlotRequest(BaseModel):
    model_config = STRICT
    slot_id: UUID | None = Field(default=None, description="On change: an existing slot to keep or move")
    space_id: UUID
    start: UtcDatetime = Field(description="With an offset or Z; stored in UTC")
    end: UtcDatetime


class BookingCreate(BaseModel):
    model_config = STRICT
    patron: Patron
    public_nickname: Nickname | None = None
    slots: list[SlotRequest] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _new_slots_only(self) -> Self:
        if any(slot.slot_id for slot in self.slots):
            raise ValueError("slot_id is assigned by the service; leave it out when booking")
        return self


class PatronPatch(BaseModel):
    model_config = STRICT
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    email: EmailStr | None = None


class BookingPatch(BaseModel):
    """Change a booking. `slots`, when given, is the whole new list: slots with a slot_id are kept or
    moved, slots without one are added, and confirmed slots left out are cancelled. `public_nickname: null`
    removes the nickname."""

    model_config = STRICT
    patron: PatronPatch | None = None
    public_nickname: Nickname | None = None
    slots: list[SlotRequest] | None = Field(default=None, min_length=1, max_length=50)


class ExchangeSync(BaseModel):
    sync_id: str | None = Field(description="Outlook/Exchange Sync ID (the Exchange ItemId); empty until synced")
    state: str | None = Field(description="pending, synced, failed or removed; empty until the writer reports")
    error: str | None = None
    synced_at: AwareDatetime | None = None


class SlotView(BaseModel):
    slot_id: UUID
    space_id: UUID
    start: AwareDatetime
    end: AwareDatetime
    status: SlotStatus
    exchange: ExchangeSync


class BookingView(BaseModel):
    id: UUID
    status: BookingStatus
    version: int
    patron: Patron
    public_nickname: str | None
    slots: list[SlotView]
    created_at: AwareDatetime
    updated_at: AwareDatetime
