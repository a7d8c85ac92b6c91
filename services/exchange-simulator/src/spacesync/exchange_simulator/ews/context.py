"""Who is asking, as whom, and what they may do with a mailbox: Exchange's permission checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import IntEnum

from spacesync.exchange_simulator.calendar import Calendars
from spacesync.exchange_simulator.ews.soap import NSMAP, Element, error, fault
from spacesync.exchange_simulator.notifications import Subscriptions
from spacesync.exchange_simulator.seed import Access, AccountSeed, MailboxSeed, Seed
from spacesync.exchange_simulator.state import SimulatorState


class Need(IntEnum):
    """What an operation needs on a mailbox, in increasing order."""

    FREEBUSY = 1  # free/busy times (GetUserAvailability), calendar folder properties
    FOLDER = 2  # the root folder and the folder hierarchy
    READ = 3  # items with their details
    WRITE = 4  # create, modify, delete items


_GRANTS = {
    Access.DELEGATE_WRITE: Need.WRITE,
    Access.DELEGATE_READ: Need.READ,
    Access.FREEBUSY: Need.FREEBUSY,
    Access.IMPERSONATION: 0,  # only when the request impersonates the mailbox
    Access.NONE: 0,
}


@dataclass
class RequestContext:
    state: SimulatorState
    account: AccountSeed
    operation: str
    impersonating: str | None = None  # SMTP of the impersonated mailbox
    time_zone: str | None = None  # Windows zone id of TimeZoneContext

    @property
    def seed(self) -> Seed:
        return self.state.seed

    @property
    def calendars(self) -> Calendars:
        return self.state.calendars

    @property
    def subscriptions(self) -> Subscriptions:
        return self.state.subscriptions

    def mailbox(self, smtp: str) -> MailboxSeed:
        for candidate in self.seed.mailboxes:
            if candidate.smtp == smtp.lower():
                return candidate
        raise error("ErrorNonExistentMailbox", SmtpAddress=smtp)

    def granted(self, smtp: str) -> int:
        smtp = smtp.lower()
        if self.impersonating is not None:
            # Acting as the mailbox: all rights on its own, free/busy elsewhere (a room's default).
            return Need.WRITE if smtp == self.impersonating else Need.FREEBUSY
        return _GRANTS[self.account.access_to(smtp)]

    def require(self, smtp: str, need: Need) -> MailboxSeed:
        """The mailbox, if the caller may do `need` with it; else the error Exchange gives."""
        mailbox = self.mailbox(smtp)
        if self.granted(mailbox.smtp) < need:
            raise error("ErrorAccessDenied")
        return mailbox

    @property
    def own_mailbox(self) -> str | None:
        return self.impersonating or (self.account.smtp.lower() if self.account.smtp else None)


def read_header(seed: Seed, account: AccountSeed, header: Element | None) -> tuple[str | None, str | None]:
    """(impersonated SMTP, TimeZoneContext id) from the SOAP header, checking the impersonation right."""
    if header is None:
        return None, None
    zone = header.find("t:TimeZoneContext/t:TimeZoneDefinition", NSMAP)
    time_zone = zone.get("Id") if zone is not None else None
    sid = header.find("t:ExchangeImpersonation/t:ConnectingSID", NSMAP)
    if sid is None:
        return None, time_zone
    target = next((child.text for child in sid if child.text), None)
    if not target:
        raise fault("ErrorImpersonateUserDenied")
    target = target.strip().lower()
    if "@" not in target or target not in {mb.smtp for mb in seed.mailboxes}:
        raise fault("ErrorNonExistentMailbox", SmtpAddress=target)
    if account.access_to(target) != Access.IMPERSONATION:
        raise fault("ErrorImpersonateUserDenied")
    return target, time_zone


@dataclass
class Streamed:
    """An answer sent as HTTP chunks, each a whole SOAP envelope (GetStreamingEvents)."""

    bodies: AsyncIterator[Element]


# An operation: the request element in, the response element (…Response) or a stream out.
Handler = Callable[[RequestContext, Element], Element | Streamed]
