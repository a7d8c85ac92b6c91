"""An Outlook-side weekly meeting, end to end: view occurrences, free/busy, pull and streaming notifications."""

from __future__ import annotations

import datetime as dt
from typing import Any

from admin_helpers import client, meetings_url, on_loop
from ews_helpers import AccountFactory
from exchangelib import EWSDateTime, EWSTimeZone

from spacesync.exchange_simulator.embedded import EmbeddedSimulator

BERLIN = EWSTimeZone("Europe/Berlin")
ROOM = "room1@example.org"


def _events(notifications: Any) -> list[tuple[str, str]]:
    return [(type(event).__name__, getattr(getattr(event, "item_id", None), "id", "") or "")
            for notification in notifications for event in notification.events]


def test_weekly_outlook_meeting_in_view_free_busy_and_notifications(
        account: AccountFactory, simulator: EmbeddedSimulator) -> None:
    # ConnectionTimeout is in whole minutes: end each stream after a second instead.
    on_loop(simulator, lambda: setattr(simulator.state.subscriptions, "max_stream_seconds", 1.0))
    room = account(ROOM)
    pull_id, watermark = room.calendar.subscribe_to_pull()
    stream_id = room.calendar.subscribe_to_streaming()
    admin = client(simulator)

    created = admin.post(meetings_url(ROOM), json={
        "organizer": {"name": "Alice Organizer", "smtp": "alice@example.org"}, "subject": "Weekly staff meeting",
        "start": "2031-03-03T10:00:00+01:00", "end": "2031-03-03T11:30:00+01:00", "free_busy": "Busy",
        "recurrence": {"pattern": "weekly", "count": 4, "time_zone": "Europe/Berlin"},
    })
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]

    start, end = EWSDateTime(2031, 3, 1, tzinfo=BERLIN), EWSDateTime(2031, 4, 1, tzinfo=BERLIN)
    view = list(room.calendar.view(start=start, end=end))
    assert [(v.start.astimezone(BERLIN).day, v.start.astimezone(BERLIN).hour) for v in view] == [
        (3, 10), (10, 10), (17, 10), (24, 10)]
    assert {v.organizer.name for v in view} == {"Alice Organizer"}

    busy = next(iter(room.protocol.get_free_busy_info(accounts=[(ROOM, "Room", False)], start=start, end=end,
                                                         merged_free_busy_interval=30, requested_view="FreeBusy")))
    assert [(e.start.day, e.start.hour, e.end - e.start, e.busy_type) for e in busy.calendar_events] == [
        (day, 10, dt.timedelta(minutes=90), "Busy") for day in (3, 10, 17, 24)]

    pulled = next(room.calendar.get_events(pull_id, watermark))
    assert ("CreatedEvent", item_id) in _events([pulled])
    streamed = list(room.calendar.get_streaming_events(stream_id, connection_timeout=1))
    assert ("CreatedEvent", item_id) in _events(streamed)

    assert admin.delete(meetings_url(ROOM, item_id)).status_code == 204
    assert list(room.calendar.view(start=start, end=end)) == []
    busy = next(iter(room.protocol.get_free_busy_info(accounts=[(ROOM, "Room", False)], start=start, end=end,
                                                         merged_free_busy_interval=30, requested_view="FreeBusy")))
    assert not busy.calendar_events
    pulled = next(room.calendar.get_events(pull_id, pulled.events[-1].watermark))
    assert ("DeletedEvent", item_id) in _events([pulled])
    streamed = list(room.calendar.get_streaming_events(stream_id, connection_timeout=1))
    assert ("DeletedEvent", item_id) in _events(streamed)
