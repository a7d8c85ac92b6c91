"""Exchange adapter: reads the meetings that hold rooms busy, through the gateway.

Calendar views where the account has delegate (or impersonation) access: recurring series expanded, organizer
names, our writer's stamp visible. Free/busy (GetUserAvailability) where it may only see free/busy times: up to
FREE_BUSY_BATCH mailboxes per request, no names (and no stamps: with free/busy rights only, our writer, using
the same account, cannot have written there).
"""

from __future__ import annotations

from enum import StrEnum

from spacesync.common.exchange import ExchangeError, ExchangeGateway, ExchangeServer
from spacesync.exchange_poller.domain import Meeting, Window, counted

FREE_BUSY_BATCH = 100


class ReadMode(StrEnum):
    VIEW = "view"
    FREE_BUSY = "free_busy"


async def view(gateway: ExchangeGateway, server: ExchangeServer, mailbox: str, span: Window, *,
               organizer: bool) -> list[Meeting]:
    """`organizer`: ask for the organizers' names (only when the location's option is on: less to send)."""
    entries = await gateway.view(server, mailbox, span.start, span.end, organizer=organizer)
    return [meeting for e in entries
            if (meeting := counted(e.start, e.end, e.busy_status, stamp=e.slot_id, item_id=e.item_id,
                                   organizer=e.organizer)) is not None]


async def free_busy(gateway: ExchangeGateway, server: ExchangeServer, mailboxes: list[str], span: Window,
                    ) -> dict[str, list[Meeting] | ExchangeError]:
    """Meetings per mailbox (lower case); a mailbox Exchange refused maps to its error. A failure of the whole
    request (wrong password, server down) raises."""
    results: dict[str, list[Meeting] | ExchangeError] = {}
    for first in range(0, len(mailboxes), FREE_BUSY_BATCH):
        answer = await gateway.free_busy(server, mailboxes[first:first + FREE_BUSY_BATCH], span.start, span.end)
        for mailbox, times in answer.items():
            results[mailbox.lower()] = times if isinstance(times, ExchangeError) else [
                meeting for t in times
                if (meeting := counted(t.start, t.end, t.busy_status, item_id=t.item_id)) is not None]
    return results
