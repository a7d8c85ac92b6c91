"""The Exchange gateway: the one place that talks to Exchange (EWS, through exchangelib)."""

from spacesync.common.exchange.gateway import ExchangeGateway, GatewaySettings
from spacesync.common.exchange.model import (
    BUSY_STATUSES,
    Appointment,
    BusyTime,
    CalendarEntry,
    ConnectionProblem,
    ConnectionReport,
    DelegateSubscriptionRefused,
    ExchangeError,
    ExchangeServer,
    ItemGone,
    ItemRef,
    Rejected,
    service_endpoint,
    slot_stamp,
)
from spacesync.common.exchange.notifications import CalendarWatch, WatchSettings

__all__ = [
    "BUSY_STATUSES",
    "Appointment",
    "BusyTime",
    "CalendarEntry",
    "CalendarWatch",
    "ConnectionProblem",
    "ConnectionReport",
    "DelegateSubscriptionRefused",
    "ExchangeError",
    "ExchangeGateway",
    "ExchangeServer",
    "GatewaySettings",
    "ItemGone",
    "ItemRef",
    "Rejected",
    "WatchSettings",
    "service_endpoint",
    "slot_stamp",
]
