"""The busy picture of a room, pure: the window, which meetings count, organizer names, digest and sequence."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spacesync.common.events.catalog import ExchangeConnection, LocationState, SpaceState
from spacesync.common.events.freebusy import BusyPeriod, OutlookBusyStatus

NAME_MAX = 200  # the contract's Name
# A freebusy.changed must fit one Kafka message (1 MiB by default, key and CloudEvent headers included): the outbox
# relay could never send a larger one, and the pictures after it would wait behind it.
MAX_PICTURE_BYTES = 1_000_000
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # the contract's Name refuses them; a directory's display name may not


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window(now: datetime, horizon_days: int) -> Window:
    """From the start of yesterday (UTC) to `horizon_days` after the start of today: it moves once a day."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(today - timedelta(days=1), today + timedelta(days=horizon_days))


@dataclass(frozen=True)
class Room:
    """A paired space of a location connected to Exchange: what the poller watches."""

    space_id: str
    location_id: str
    mailbox: str
    paired_at: datetime | None
    connection: ExchangeConnection

    @property
    def policy(self) -> NamePolicy:
        return NamePolicy(self.connection.populate_organizer, self.connection.populate_organizer_since)


def rooms(locations: Iterable[LocationState], spaces: Iterable[SpaceState]) -> dict[str, Room]:
    """The rooms to watch: spaces paired with a mailbox whose location is connected to Exchange."""
    connected = {loc.location_id: loc.exchange for loc in locations if loc.exchange is not None}
    return {space.space_id: Room(space.space_id, space.location_id, space.exchange_resource.lower(),
                                 space.paired_at, connected[space.location_id])
            for space in spaces if space.exchange_resource is not None and space.location_id in connected}


@dataclass(frozen=True)
class Meeting:
    """A meeting (one occurrence of a series) that holds the room busy, as read from Exchange."""

    start: datetime
    end: datetime
    status: OutlookBusyStatus
    item_id: str | None = None
    organizer: str | None = None


def busy_status(status: str) -> OutlookBusyStatus | None:
    """Busy, OOF and WorkingElsewhere close a slot; Free, Tentative and NoData do not."""
    try:
        return OutlookBusyStatus(status)
    except ValueError:
        return None


def counted(start: datetime, end: datetime, status: str, *, stamp: str | None = None, item_id: str | None = None,
            organizer: str | None = None) -> Meeting | None:
    """The meeting when it counts as Outlook busy time: a busy status, not stamped by our writer (no echo)."""
    busy = busy_status(status)
    if busy is None or stamp is not None or end <= start:
        return None
    return Meeting(start.astimezone(UTC), end.astimezone(UTC), busy, item_id, organizer)


@dataclass(frozen=True)
class NamePolicy:
    """The location's 'Populate Name/Email from Outlook/Exchange' option and when it was last turned on."""

    populate: bool = False
    since: datetime | None = None


def organizer_name(organizer: str | None, first_seen: datetime | None, policy: NamePolicy) -> str | None:
    """The organizer's display name, only when the option is on and the meeting was first seen after it was
    turned on. Password authentication gives names only, never addresses (the seed): an address is dropped."""
    if not policy.populate or policy.since is None or first_seen is None or first_seen < policy.since:
        return None
    name = " ".join(CONTROL.sub(" ", organizer or "").split())[:NAME_MAX]  # printable: control characters become spaces
    if not name or "@" in name:
        return None
    return name


def picture(meetings: Iterable[Meeting], first_seen: Mapping[str, datetime], policy: NamePolicy) -> list[BusyPeriod]:
    """The busy periods, sorted by start; the same time twice (an item and its copy) is listed once."""
    periods = {
        (m.start, m.end, m.status, name): BusyPeriod(start=m.start, end=m.end, status=m.status, organizer=name)
        for m in meetings
        for name in [organizer_name(m.organizer, first_seen.get(m.item_id) if m.item_id else None, policy)]
    }
    return [periods[key] for key in sorted(periods, key=lambda k: (k[0], k[1], k[2].value, k[3] or ""))]


def merged(busy: list[BusyPeriod]) -> list[BusyPeriod]:
    """Touching or overlapping periods of the same status and organizer as one: the same busy time in fewer bytes
    (for a picture too large to publish whole, e.g. back-to-back meetings around the clock)."""
    joined: list[BusyPeriod] = []
    last: dict[tuple[OutlookBusyStatus, str | None], int] = {}  # (status, organizer) -> index of its latest period
    for period in sorted(busy, key=lambda p: (p.start, p.end)):
        key = (period.status, period.organizer)
        index = last.get(key)
        if index is not None and period.start <= joined[index].end:
            if period.end > joined[index].end:
                joined[index] = joined[index].model_copy(update={"end": period.end})
            continue
        last[key] = len(joined)
        joined.append(period)
    return joined


def digest(mailbox: str | None, span: Window, busy: list[BusyPeriod]) -> str:
    """Identifies what a consumer sees: a new digest means a new freebusy.changed (the window's day is part of
    it, so each room is published at least once a day and readers' windows move on)."""
    text = f"{mailbox}|{span.start.isoformat()}|{span.end.isoformat()}|" + "|".join(
        f"{p.start.isoformat()},{p.end.isoformat()},{p.status.value},{p.organizer or ''}" for p in busy)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def items_digest(item_ids: Iterable[str]) -> str:
    """Identifies the set of items seen: when unchanged, the first-seen records need no write."""
    return hashlib.sha256("\n".join(sorted(set(item_ids))).encode()).hexdigest()[:32]


def next_sequence(last: int | None, observed_at: datetime) -> int:
    """Strictly increasing per space, and moving on even after this database was rebuilt."""
    epoch_ms = int(observed_at.timestamp() * 1000)
    return max((last or 0) + 1, epoch_ms)
