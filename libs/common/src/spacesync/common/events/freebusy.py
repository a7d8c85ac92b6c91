"""exchange.freebusy payloads: the busy picture of a paired room, as read from Exchange by the exchange-poller."""

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, EmailStr, Field, model_validator

from spacesync.common.events.fields import CONTRACT_CONFIG, Id, Name, UtcDatetime, Version

MAX_BUSY_PERIODS = 20_000  # a 120-day window of a busy room at 15-minute meetings is ~11,500


class OutlookBusyStatus(StrEnum):
    """The LegacyFreeBusyStatus values that close a slot; Free and Tentative never appear in a picture."""

    BUSY = "Busy"
    OOF = "OOF"
    WORKING_ELSEWHERE = "WorkingElsewhere"


class BusyPeriod(BaseModel):
    """One Outlook/Exchange meeting (one occurrence of a series) that holds the room busy."""

    model_config = CONTRACT_CONFIG

    start: UtcDatetime
    end: UtcDatetime
    status: OutlookBusyStatus
    organizer: Name | None = Field(
        default=None,
        description="The organizer's display name: only when the location's 'Populate Name/Email from "
                    "Outlook/Exchange' option is on and the meeting was first seen after it was turned on")

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} must be after start {self.start.isoformat()}")
        return self


class FreeBusyState(BaseModel):
    """Data of freebusy.changed: the full busy picture of one space's resource calendar within a window.

    Each event replaces the previous picture of the space as a whole (busy time inside the window that is
    not listed is free). Meetings our exchange-writer created (stamped) are never listed.
    """

    model_config = CONTRACT_CONFIG

    space_id: Id
    location_id: Id
    mailbox: EmailStr | None = Field(
        description="The resource mailbox read; None: the space is no longer paired and holds no Outlook busy time")
    sequence: Version = Field(
        description="Strictly increasing per space: a reader keeps the picture with the highest sequence. The "
                    "exchange-poller uses max(last + 1, observed_at in epoch milliseconds), so it moves on "
                    "even after its own database was rebuilt")
    window_start: UtcDatetime = Field(description="The picture covers [window_start, window_end)")
    window_end: UtcDatetime
    observed_at: UtcDatetime = Field(description="When Exchange was read")
    busy: list[BusyPeriod] = Field(default_factory=list, max_length=MAX_BUSY_PERIODS,
                                   description="Sorted by start")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.mailbox is None and self.busy:
            raise ValueError("a space without a mailbox has no Outlook busy time")
        return self
