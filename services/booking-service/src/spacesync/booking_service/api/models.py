"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Annotated, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from spacesync.booking_service.exchange_settings import check_server
from spacesync.common.events.booking import BookingStatus, Patron, SlotStatus
from spacesync.common.events.catalog import ExchangeAccess, ExchangeAuth, OpeningHours, TimeZoneName, TitleRule
from spacesync.common.events.fields import PRINTABLE, Name, PersonName, UtcDatetime
from spacesync.common.events.freebusy import OutlookBusyStatus

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
    change_key: str | None = Field(default=None, description="Exchange ChangeKey of the appointment's version")
    state: str | None = Field(description="pending, synced, failed or removed; empty until the writer reports")
    mailbox: str | None = Field(default=None, description="The resource calendar the appointment is (or was) in")
    attempts: int | None = Field(default=None, description="Exchange calls made for this slot's current state")
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


# --- admin: Outlook/Exchange --------------------------------------------------------------------------

ServerHost = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=PRINTABLE),
                       AfterValidator(check_server),
                       Field(description="Server/Host: the Exchange (OWA) host name, or the full EWS URL",
                             examples=["mail.library.example.org", "https://outlook.office365.com/EWS/Exchange.asmx"])]
ExchangeUsername = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300,
                                                    pattern=PRINTABLE),
                             Field(description="An email address or DOMAIN\\user", examples=["LIBRARY\\svc-spacesync"])]
MAX_PASSWORD = 1000


class ExchangeSettingsIn(BaseModel):
    """'Save Outlook/Exchange Settings'. Optional fields left out (or null) keep their stored value; on the first
    connect they take the defaults shown. Changing server, username, password, auth_type or access tests the
    connection first: nothing is saved unless it succeeds."""

    model_config = ConfigDict(extra="forbid")  # no whitespace stripping: spaces may be part of a password

    server: ServerHost
    username: ExchangeUsername
    password: SecretStr | None = Field(
        default=None, description="Write-only. Needed on the first connect; leave it out to keep the stored one")
    auth_type: ExchangeAuth | None = Field(default=None, description="Default ntlm")
    access: ExchangeAccess | None = Field(default=None, description="Default delegate")
    title_rule: TitleRule | None = Field(default=None, description="Outlook/Exchange Event Title; default patron_name")
    populate_organizer: bool | None = Field(
        default=None, description="Populate Name/Email from Outlook/Exchange (meetings first seen from now on)")

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty; leave the field out to keep the stored password")
        if value is not None and len(value.get_secret_value()) > MAX_PASSWORD:
            raise ValueError(f"must be at most {MAX_PASSWORD} characters")
        return value


class ExchangeSettingsView(BaseModel):
    """A location's Outlook/Exchange settings as the admin API shows them: never the password."""

    location_id: UUID
    server: str
    endpoint: str = Field(description="The EWS URL the Server/Host field resolves to")
    username: str
    password_set: bool = Field(description="A password is stored (encrypted); it is never shown")
    auth_type: ExchangeAuth
    access: ExchangeAccess
    title_rule: TitleRule
    populate_organizer: bool
    populate_organizer_since: AwareDatetime | None
    verified_at: AwareDatetime | None = Field(description="Last successful connection test")


class ExchangeConnected(BaseModel):
    message: str = Field(examples=["Connected to https://mail.library.example.org/EWS/Exchange.asmx as "
                                   "LIBRARY\\svc-spacesync (Exchange2016) in 85 ms."])
    settings: ExchangeSettingsView


class LocationView(BaseModel):
    """A location as the admin API shows it (its Exchange settings without the password)."""

    location_id: UUID
    version: int
    name: str
    timezone: str
    active: bool
    exchange: ExchangeSettingsView | None = Field(description="None: not connected to Outlook/Exchange")
    updated_at: AwareDatetime


class Confirmation(BaseModel):
    message: str


class PairingIn(BaseModel):
    """'Save & Test Settings' of a space: the resource mailbox to pair it with."""

    model_config = STRICT
    resource: EmailStr = Field(description="Outlook/Exchange Resource: the room's email address",
                               examples=["room-101@library.example.org"])

    @field_validator("resource")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()  # Exchange matches addresses case-insensitively; one spelling keeps them unique


class SyncError(BaseModel):
    slot_id: UUID
    booking_id: UUID
    error: str
    attempts: int | None
    at: AwareDatetime | None


class SyncSummary(BaseModel):
    """The space's future confirmed slots by what the exchange-writer last reported about them."""

    future_slots: int
    not_reported: int = Field(description="No outcome from the exchange-writer yet")
    pending: int
    synced: int
    failed: int
    removed: int
    last_error: SyncError | None = Field(description="The most recent slot of the space still failing")


class OutlookMeeting(BaseModel):
    start: AwareDatetime
    end: AwareDatetime
    status: OutlookBusyStatus
    organizer: str | None = Field(description="Only when the location populates names from Outlook/Exchange")


class OutlookBusyView(BaseModel):
    """The room's busy time in Outlook/Exchange as the exchange-poller last reported it: bookings over it are
    refused ('BUSY in Outlook')."""

    sequence: int = Field(description="Sequence of the picture folded from exchange.freebusy; 0: none yet")
    mailbox: str | None = Field(description="The resource mailbox read; None: not paired (or no picture yet)")
    window_start: AwareDatetime | None
    window_end: AwareDatetime | None
    observed_at: AwareDatetime | None = Field(description="When Exchange was read")
    upcoming: list[OutlookMeeting] = Field(description="Meetings that have not ended, the first 100")


class PairingView(BaseModel):
    space_id: UUID
    location_connected: bool = Field(description="The space's location is connected to Outlook/Exchange")
    resource: str | None = Field(description="The paired resource mailbox; None: not paired")
    paired_at: AwareDatetime | None
    sync: SyncSummary
    outlook_busy: OutlookBusyView


class Paired(BaseModel):
    message: str
    pairing: PairingView


class ImportCollision(BaseModel):
    """A slot that would land on time someone booked in Outlook (an unstamped Busy, OOF or WorkingElsewhere
    appointment)."""

    slot_id: UUID
    booking_id: UUID
    slot_start: AwareDatetime
    slot_end: AwareDatetime
    subject: str | None
    organizer: str | None
    start: AwareDatetime
    end: AwareDatetime
    busy_status: str


class ImportAnswer(BaseModel):
    """'Run the Import': the comparison of the space's future bookings with its resource calendar and, unless a dry
    run, the id of the import request the exchange-writer carries out."""

    space_id: UUID
    resource: str
    dry_run: bool
    request_id: UUID | None = Field(description="The space.import_requested event's request id; None on a dry run")
    future_slots: int
    would_create: int = Field(description="Slots not in the calendar yet (those in collisions included)")
    already_there: int = Field(description="Slots whose appointment (with our stamp) is in the calendar")
    collisions: list[ImportCollision]
    message: str
