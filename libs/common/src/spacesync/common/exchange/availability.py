"""Free/busy reads (GetUserAvailability): synchronous exchangelib code, run only in the gateway's worker threads.

- exchangelib's `protocol.get_free_busy_info()` sends GetServerTimeZones before every request to describe the
  request's time zone in it. We always ask in UTC, so `utc_zone()` asks once per server and year and the gateway
  keeps the answer.
- exchangelib hands ErrorMailRecipientNotFound back as a value but raises every other per-mailbox error (e.g.
  ErrorNoFreeBusyAccess) while iterating, after yielding the answers before it. `MailboxAvailability` returns
  every per-mailbox error as a value, so one mailbox never hides the others' answers. Request-wide failures (SOAP
  faults: throttling, a bad window) still raise.
- Exchange answers at most 100 mailboxes and 62 days per request: callers split (`chunks`, `windows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from exchangelib import EWSTimeZone
from exchangelib.errors import ErrorNoFreeBusyAccess, EWSError
from exchangelib.properties import FreeBusyViewOptions, MailboxData, TimeWindow, TimeZone
from exchangelib.services import GetUserAvailability

from spacesync.common.exchange.calendar import UnexpectedAnswer, ews_utc, plain_utc
from spacesync.common.exchange.errors import Call, classify
from spacesync.common.exchange.model import BusyTime, ConnectionProblem, ExchangeError

MAX_MAILBOXES = 100  # MailboxData per GetUserAvailabilityRequest (Exchange's limit)
MAX_WINDOW = timedelta(days=62)  # Exchange 2013+ answers at most 62 days per request
VIEW = "DetailedMerged"  # times and BusyType; details (the item id) where the account may read the calendar
UTC_ZONE = EWSTimeZone("UTC")


class MailboxAvailability(GetUserAvailability):  # type: ignore[misc]  # exchangelib is untyped
    """GetUserAvailability that returns every per-mailbox error as a value instead of raising some of them."""

    ERRORS_TO_CATCH_IN_RESPONSE = EWSError


def chunks(mailboxes: Sequence[str], size: int = MAX_MAILBOXES) -> list[list[str]]:
    return [list(mailboxes[index:index + size]) for index in range(0, len(mailboxes), size)]


def windows(start: datetime, end: datetime, longest: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into pieces Exchange accepts."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ValueError("free/busy windows need timezone-aware times (UTC)")
    if end <= start:
        raise ValueError(f"the free/busy window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    pieces = []
    while start < end:
        pieces.append((start, min(end, start + longest)))
        start += longest
    return pieces


def utc_zone(protocol: Any, year: int) -> TimeZone:
    """The server's definition of UTC as GetUserAvailability's `t:TimeZone` (one GetServerTimeZones)."""
    definition = next(iter(protocol.get_timezones(timezones=[UTC_ZONE], return_full_timezone_data=True)))
    return TimeZone.from_server_timezone(tz_definition=definition, for_year=year)


def free_busy(protocol: Any, zone: TimeZone, mailboxes: Sequence[str], start: datetime,
              end: datetime) -> list[list[BusyTime] | BaseException]:
    """One GetUserAvailabilityRequest (at most 100 mailboxes, 62 days): per mailbox, in order, its busy times
    (Free is never listed) or the error Exchange answered for it."""
    service = MailboxAvailability(protocol=protocol)
    views = service.call(
        tzinfo=UTC_ZONE,
        mailbox_data=[MailboxData(email=mailbox, attendee_type="Room", exclude_conflicts=False)
                      for mailbox in mailboxes],
        timezone=zone,
        free_busy_view_options=FreeBusyViewOptions(time_window=TimeWindow(start=ews_utc(start), end=ews_utc(end)),
                                                   merged_free_busy_interval=30, requested_view=VIEW),
    )
    answers: list[list[BusyTime] | BaseException] = []
    for view in views:
        if isinstance(view, BaseException):
            answers.append(view)
            continue
        answers.append([
            BusyTime(start=plain_utc(event.start), end=plain_utc(event.end), busy_status=event.busy_type,
                     item_id=event.details.id if event.details is not None else None)
            for event in view.calendar_events or [] if event.busy_type not in ("Free", "NoData")
        ])
    if len(answers) != len(mailboxes):
        raise UnexpectedAnswer(f"GetUserAvailability answered for {len(answers)} of {len(mailboxes)} mailboxes")
    return answers


def mailbox_problem(call: Call, error: BaseException) -> ExchangeError:
    """The ExchangeError for one mailbox's error in a free/busy answer."""
    if isinstance(error, ErrorNoFreeBusyAccess):
        return ExchangeError(ConnectionProblem.ACCESS_DENIED,
                             f"The account '{call.server.username}' may not see the free/busy times of "
                             f"{call.of_mailbox()}: grant it at least free/busy (AvailabilityOnly) permission on "
                             f"the calendar.")
    return classify(error, call) or ExchangeError(
        ConnectionProblem.SERVER_ERROR, f"Exchange answered free/busy for {call.of_mailbox()} with "
                                        f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
