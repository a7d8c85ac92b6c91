"""The pure parts: recurrence expansion, calendar views and ids, seed validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from spacesync.exchange_simulator.calendar import (
    CalendarItem,
    Calendars,
    ChangeKind,
    ItemNotFound,
    Recurrence,
    StaleChangeKey,
)
from spacesync.exchange_simulator.seed import Access, Seed, SeedError, load_seed

BERLIN = ZoneInfo("Europe/Berlin")


def test_weekly_recurrence_keeps_local_time_across_dst() -> None:
    first = datetime(2031, 3, 24, 10, tzinfo=BERLIN).astimezone(UTC)
    starts = list(Recurrence("weekly", count=3, time_zone="Europe/Berlin").starts(first))
    assert [s.astimezone(BERLIN).hour for s in starts] == [10, 10, 10]
    assert [s.hour for s in starts] == [9, 8, 8]  # UTC shifts by the DST change on 30 March


def test_weekly_on_several_days_every_other_week_until_a_date() -> None:
    first = datetime(2031, 3, 3, 9, tzinfo=UTC)  # a Monday
    rule = Recurrence("weekly", interval=2, weekdays=(0, 2), until=date(2031, 3, 31))
    assert [s.day for s in rule.starts(first)] == [3, 5, 17, 19, 31]


def test_daily_with_interval_and_count() -> None:
    first = datetime(2031, 3, 1, 9, tzinfo=UTC)
    assert [s.day for s in Recurrence("daily", interval=3, count=4).starts(first)] == [1, 4, 7, 10]


def test_series_without_end_is_bounded() -> None:
    first = datetime(2031, 3, 1, 9, tzinfo=UTC)
    assert len(list(Recurrence("daily").starts(first))) == 3654


def _item(calendars: Calendars, start: datetime, **fields: object) -> CalendarItem:
    return calendars.create("room@x.org", CalendarItem(id="", change_key="", mailbox="room@x.org", start=start,
                                                       end=start + timedelta(hours=1), **fields))  # type: ignore[arg-type]


def test_view_expands_and_clips_series_and_finds_occurrences_by_id() -> None:
    calendars = Calendars()
    calendars.add_mailbox("room@x.org")
    series = _item(calendars, datetime(2031, 3, 3, 9, tzinfo=UTC), recurrence=Recurrence("weekly", count=10))
    single = _item(calendars, datetime(2031, 3, 12, 9, tzinfo=UTC))
    view = calendars.view("room@x.org", datetime(2031, 3, 10, tzinfo=UTC), datetime(2031, 3, 20, tzinfo=UTC))
    assert [(v.start.day, v.index) for v in view] == [(10, 2), (12, None), (17, 3)]
    assert calendars.occurrence(view[2].id).start == view[2].start
    assert calendars.find(view[0].id) is series
    assert calendars.occurrence(single.id).item is single


def test_update_changes_the_change_key_and_refuses_a_stale_one() -> None:
    calendars = Calendars()
    calendars.add_mailbox("room@x.org")
    changes: list[ChangeKind] = []
    calendars.listeners.append(lambda change: changes.append(change.kind))
    item = _item(calendars, datetime(2031, 3, 3, 9, tzinfo=UTC))
    old_key = item.change_key
    calendars.update(item.id, old_key, lambda i: setattr(i, "subject", "moved"))
    assert item.change_key != old_key
    with pytest.raises(StaleChangeKey):
        calendars.update(item.id, old_key, lambda i: None)
    calendars.delete(item.id)
    with pytest.raises(ItemNotFound):
        calendars.find(item.id)
    with pytest.raises(ItemNotFound):
        calendars.find("not base64!")
    assert changes == [ChangeKind.CREATED, ChangeKind.MODIFIED, ChangeKind.DELETED]


def test_seed_rights_and_errors(tmp_path: Path) -> None:
    seed = Seed.model_validate({
        "mailboxes": [{"smtp": "Room@X.org", "name": "Room"}],
        "accounts": [{"username": "D\\svc", "password": "p", "rights": {"ROOM@x.org": "delegate_read"}}],
    })
    assert seed.accounts[0].access_to("room@x.org") == Access.DELEGATE_READ
    bad = tmp_path / "seed.yaml"
    bad.write_text("mailboxes: []\naccounts: [{username: svc, password: p}]\n")
    with pytest.raises(SeedError, match="DOMAIN"):
        load_seed(bad)
    bad.write_text("mailboxes: [{smtp: a@x.org, name: A}]\naccounts: [{username: 'D\\u', password: p, "
                   "rights: {b@x.org: none}}]\n")
    with pytest.raises(SeedError, match="unknown mailboxes"):
        load_seed(bad)
    with pytest.raises(SeedError, match="No such file"):
        load_seed(tmp_path / "missing.yaml")

