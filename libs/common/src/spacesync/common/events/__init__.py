"""Event contracts: CloudEvents attributes and the pydantic payload model of every event type.

These models are the published contract (JSON Schema per type and an AsyncAPI document are generated
from them into contracts/); other services publish and read the same events.
"""

from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus
from spacesync.common.events.catalog import (
    CategoryState,
    ExchangeAccess,
    ExchangeAuth,
    ExchangeConnection,
    ImportRequest,
    LocationState,
    OpeningHours,
    SpaceState,
    TitleRule,
)
from spacesync.common.events.cloudevents import CloudEvent, InvalidEvent
from spacesync.common.events.freebusy import BusyPeriod, FreeBusyState, OutlookBusyStatus
from spacesync.common.events.registry import EVENT_TYPES, EventType, Topic, parse_event
from spacesync.common.events.sync import BookingSyncState, SlotSync, SlotSyncState

__all__ = [
    "EVENT_TYPES",
    "BookingSlot",
    "BookingState",
    "BookingStatus",
    "BookingSyncState",
    "BusyPeriod",
    "CategoryState",
    "CloudEvent",
    "EventType",
    "ExchangeAccess",
    "ExchangeAuth",
    "ExchangeConnection",
    "FreeBusyState",
    "ImportRequest",
    "InvalidEvent",
    "LocationState",
    "OpeningHours",
    "OutlookBusyStatus",
    "Patron",
    "SlotStatus",
    "SlotSync",
    "SlotSyncState",
    "SpaceState",
    "TitleRule",
    "Topic",
    "parse_event",
]
