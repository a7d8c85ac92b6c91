"""What the Exchange gateway takes and gives: servers, appointments, item references, and its errors."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from spacesync.common.events.catalog import ExchangeAccess, ExchangeAuth, ExchangeConnection
from spacesync.common.secrets import SecretBox

EWS_PATH = "/EWS/Exchange.asmx"
_KEY_SECRET = secrets.token_bytes(32)


def service_endpoint(server: str) -> str:
    """The EWS URL for the seed's Server/Host field: a host name (outlook.office365.com, mail.example.org:8443)
    or a full URL. A URL without a path gets the standard EWS path; a bare host gets https."""
    text = server.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{server!r} is neither a host name nor an http(s) URL")
    path = parts.path if parts.path not in ("", "/") else EWS_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True)
class ExchangeServer:
    """One server + credentials: the unit of caching, throttling back-off and connection bounds."""

    endpoint: str
    username: str
    password: str = field(repr=False)
    auth_type: ExchangeAuth = ExchangeAuth.NTLM
    access: ExchangeAccess = ExchangeAccess.DELEGATE

    @classmethod
    def from_connection(cls, connection: ExchangeConnection, secrets: SecretBox) -> ExchangeServer:
        return cls(endpoint=service_endpoint(connection.server), username=connection.username,
                   password=secrets.decrypt(connection.password_encrypted), auth_type=connection.auth_type,
                   access=connection.access)

    @property
    def key(self) -> str:
        """Identifies server + credentials without revealing the password (safe for logs and dict keys)."""
        # Keyed with a secret of this process: the digest in a log line is no test for guessed passwords.
        digest = hmac.new(_KEY_SECRET, f"{self.endpoint}\0{self.username}\0{self.password}\0{self.auth_type}"
                          f"\0{self.access}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"{self.username}@{urlsplit(self.endpoint).hostname}#{digest}"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or self.endpoint


def slot_stamp(source: str, booking_id: str, slot_id: str) -> str:
    """The SpacesyncSlotId stamp of a booking slot's appointment. Booking ids are unique per ce_source and slot
    ids per booking, so all three make it unique across every producer of booking events."""
    return f"{source}/{booking_id}/{slot_id}"


@dataclass(frozen=True)
class Appointment:
    """An appointment the writer puts in a resource calendar (times in UTC, legacy free/busy Busy)."""

    slot_id: str
    """The slot's stamp (slot_stamp): what find_stamped looks for."""
    booking_id: str
    subject: str
    body: str
    start: datetime
    end: datetime
    location: str


@dataclass(frozen=True)
class ItemRef:
    """Exchange ItemId + ChangeKey: together the Outlook/Exchange Sync ID of one slot."""

    item_id: str
    change_key: str


# The architecture's rule: these free/busy statuses make a room busy; Free and Tentative leave it open.
BUSY_STATUSES = frozenset({"Busy", "OOF", "WorkingElsewhere"})


@dataclass(frozen=True)
class CalendarEntry:
    """One appointment (or occurrence) in a calendar view."""

    item_id: str
    start: datetime
    end: datetime
    subject: str | None
    busy_status: str  # Free, Tentative, Busy, OOF, WorkingElsewhere, NoData
    organizer: str | None
    slot_id: str | None  # our stamp (slot_stamp): set when the exchange-writer created it
    booking_id: str | None


@dataclass(frozen=True)
class BusyTime:
    """One busy period of a mailbox as free/busy (GetUserAvailability) shows it; Free time is not listed."""

    start: datetime  # UTC
    end: datetime  # UTC
    busy_status: str  # Busy, OOF, WorkingElsewhere, Tentative
    item_id: str | None  # CalendarEventDetails ID: only when the account may read the calendar (Reviewer or more)


class ConnectionProblem(StrEnum):
    """Why a connection test or a call failed, in words an admin can act on."""

    HOST_NOT_FOUND = "host_not_found"
    NOT_REACHABLE = "not_reachable"
    TLS = "tls"
    NOT_EWS = "not_an_ews_endpoint"
    WRONG_CREDENTIALS = "wrong_credentials"
    TIMEOUT = "timeout"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    ACCESS_DENIED = "access_denied"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    NOT_CONNECTED = "not_connected"
    """The location has no (usable) Exchange settings."""


class ExchangeError(Exception):
    """A failed Exchange call. `transient` errors are worth retrying (with back-off); the others need someone
    to change the settings or the pairing first."""

    TRANSIENT = frozenset({ConnectionProblem.NOT_REACHABLE, ConnectionProblem.TIMEOUT,
                           ConnectionProblem.THROTTLED, ConnectionProblem.SERVER_ERROR})

    def __init__(self, problem: ConnectionProblem, message: str, *, back_off: float | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.back_off = back_off

    @property
    def transient(self) -> bool:
        return self.problem in self.TRANSIENT


class ItemGone(ExchangeError):
    """The item to update or delete is no longer in the calendar."""

    def __init__(self, item_id: str) -> None:
        super().__init__(ConnectionProblem.SERVER_ERROR, f"item {item_id[:24]}... no longer exists")

    @property
    def transient(self) -> bool:
        return False


class Rejected(ExchangeError):
    """Exchange refused the request itself (invalid data, quota, size, a request it does not support): sending the
    same request again fails the same way, so it is not transient."""

    def __init__(self, message: str) -> None:
        super().__init__(ConnectionProblem.SERVER_ERROR, message)

    @property
    def transient(self) -> bool:
        return False


class DelegateSubscriptionRefused(ExchangeError):
    """Exchange refuses calendar subscriptions made with delegate access (ErrorSubscriptionDelegateAccessNotSupported),
    whatever the mailbox: notifications need impersonation. Not transient: asking again changes nothing until the
    location's settings do (or, rarely, the server's policy)."""

    def __init__(self, message: str) -> None:
        super().__init__(ConnectionProblem.ACCESS_DENIED, message)


@dataclass(frozen=True)
class ConnectionReport:
    """A successful connection test."""

    endpoint: str
    username: str
    server_version: str
    seconds: float

    @property
    def message(self) -> str:
        return (f"Connected to {self.endpoint} as {self.username} ({self.server_version}) "
                f"in {self.seconds * 1000:.0f} ms.")
