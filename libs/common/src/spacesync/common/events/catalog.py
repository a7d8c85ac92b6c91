"""catalog.events payloads: locations, categories and spaces (full state after each change)."""

import functools
import itertools
import re
import zoneinfo
from enum import StrEnum
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, BaseModel, EmailStr, Field, StringConstraints, model_validator

from spacesync.common.events.fields import CONTRACT_CONFIG, PRINTABLE, Id, Name, UtcDatetime, Version

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_iana_zone(name: str) -> bool:
    # Membership, not ZoneInfo(name): that also opens folders ('America') and odd paths.
    return name in _zone_names()


def _iana_zone(name: str) -> str:
    if not is_iana_zone(name):
        raise ValueError(f"unknown IANA time zone {name!r}")
    return name


def _clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError(f"{value!r} is not a local time HH:MM (00:00 to 24:00)")
    return value


TimeZoneName = Annotated[str, AfterValidator(_iana_zone), Field(examples=["Europe/London"])]
Clock = Annotated[str, AfterValidator(_clock), Field(examples=["09:00", "24:00"])]


def clock_minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


class OpeningInterval(BaseModel):
    """Open from `open` to `close` (local wall-clock time of the location, same day)."""

    model_config = CONTRACT_CONFIG

    open: Clock
    close: Clock

    @model_validator(mode="after")
    def _close_after_open(self) -> Self:
        if clock_minutes(self.close) <= clock_minutes(self.open):
            raise ValueError(f"closes ({self.close}) must be after it opens ({self.open})")
        return self


DayHours = list[OpeningInterval]


class OpeningHours(BaseModel):
    """Opening hours per weekday; a day with no interval is closed."""

    model_config = CONTRACT_CONFIG
    WEEKDAYS: ClassVar[tuple[str, ...]] = (
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

    monday: DayHours = []
    tuesday: DayHours = []
    wednesday: DayHours = []
    thursday: DayHours = []
    friday: DayHours = []
    saturday: DayHours = []
    sunday: DayHours = []

    @model_validator(mode="after")
    def _no_overlap(self) -> Self:
        for day in self.WEEKDAYS:
            intervals = sorted(getattr(self, day), key=lambda i: clock_minutes(i.open))
            for before, after in itertools.pairwise(intervals):
                if clock_minutes(after.open) < clock_minutes(before.close):
                    raise ValueError(f"{day}: intervals {before.open}-{before.close} and "
                                     f"{after.open}-{after.close} overlap")
        return self

    def on_weekday(self, weekday: int) -> DayHours:
        """Intervals of a weekday, 0 = Monday as in datetime.weekday()."""
        hours: DayHours = getattr(self, self.WEEKDAYS[weekday])
        return hours


class TitleRule(StrEnum):
    """What the title (subject) of an appointment written to Exchange shows."""

    PATRON_NAME = "patron_name"
    PATRON_NAME_AND_EMAIL = "patron_name_and_email"
    PUBLIC_NICKNAME = "public_nickname"


class ExchangeAuth(StrEnum):
    NTLM = "ntlm"
    BASIC = "basic"


class ExchangeAccess(StrEnum):
    """How the service account reaches a resource mailbox."""

    DELEGATE = "delegate"
    IMPERSONATION = "impersonation"


Secret = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=r"^[A-Za-z0-9_=-]+$")]


class ExchangeConnection(BaseModel):
    """A location's Outlook/Exchange settings. The password travels only encrypted (a Fernet token made with
    the key every Spacesync service gets from SPACESYNC_SECRET_KEYS)."""

    model_config = CONTRACT_CONFIG

    server: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True,
                                             pattern=PRINTABLE)] = Field(
        description="Server/Host: a host name (outlook.example.edu) or the full EWS URL",
        examples=["mail.library.example.org"])
    username: Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True,
                                               pattern=PRINTABLE)] = Field(
        description="An email address or DOMAIN\\user", examples=["LIBRARY\\svc-spacesync"])
    password_encrypted: Secret = Field(description="The password, encrypted; never in clear text")
    auth_type: ExchangeAuth = ExchangeAuth.NTLM
    access: ExchangeAccess = ExchangeAccess.DELEGATE
    title_rule: TitleRule = TitleRule.PATRON_NAME
    populate_organizer: bool = Field(
        default=False, description="Populate Name/Email from Outlook/Exchange (used by the exchange-poller)")
    populate_organizer_since: UtcDatetime | None = Field(
        default=None, description="When the option was last turned on: only meetings first seen later get names")
    verified_at: UtcDatetime | None = Field(default=None, description="Last successful connection test")

    # What a connection test proves: a change of any of these needs a new test (and new cached credentials).
    CONNECTION_FIELDS: ClassVar[tuple[str, ...]] = ("server", "username", "password_encrypted", "auth_type",
                                                    "access")

    def same_connection(self, other: "ExchangeConnection | None") -> bool:
        return other is not None and all(getattr(self, f) == getattr(other, f) for f in self.CONNECTION_FIELDS)


class LocationState(BaseModel):
    """Data of location.upserted."""

    model_config = CONTRACT_CONFIG

    location_id: Id
    version: Version
    name: Name
    timezone: TimeZoneName
    active: bool = True
    exchange: ExchangeConnection | None = Field(default=None, description="None: not connected to Exchange")
    updated_at: UtcDatetime


class CategoryState(BaseModel):
    """Data of category.upserted."""

    model_config = CONTRACT_CONFIG

    category_id: Id
    location_id: Id
    version: Version
    name: Name
    public_nicknames: bool = Field(description="Patrons may give a public nickname for their booking")
    active: bool = True
    updated_at: UtcDatetime


class SpaceState(BaseModel):
    """Data of space.upserted."""

    model_config = CONTRACT_CONFIG

    space_id: Id
    location_id: Id
    category_id: Id
    version: Version
    name: Name
    slot_minutes: int = Field(ge=5, le=1440, description="Bookings start and end on this grid")
    max_booking_minutes: int = Field(ge=5, le=1440, description="Longest continuous booking")
    opening_hours: OpeningHours
    active: bool = True
    exchange_resource: EmailStr | None = Field(
        default=None, description="The paired Exchange resource mailbox; None: not paired")
    paired_at: UtcDatetime | None = Field(
        default=None, description="When the current pairing was saved: bookings changed since then are synced")
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _max_fits_grid(self) -> Self:
        if self.max_booking_minutes < self.slot_minutes:
            raise ValueError("max_booking_minutes must be at least slot_minutes")
        return self


class ImportRequest(BaseModel):
    """Data of space.import_requested: 'Run the Import' pushes the space's future bookings to Exchange."""

    model_config = CONTRACT_CONFIG

    space_id: Id
    location_id: Id
    request_id: Id
    exchange_resource: EmailStr
    requested_at: UtcDatetime
