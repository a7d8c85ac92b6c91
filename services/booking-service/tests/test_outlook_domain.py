"""Which busy pictures a batch folds (pure): the newest per space, in the order bookings lock the spaces."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from spacesync.booking_service.domain import newest_pictures
from spacesync.common.events import FreeBusyState

START = datetime(2026, 11, 23, tzinfo=UTC)
LOW, HIGH = uuid.UUID(int=1), uuid.UUID(int=0xA << 124)


def picture(space_id: str, sequence: int) -> FreeBusyState:
    return FreeBusyState(space_id=space_id, location_id="loc", mailbox=None, sequence=sequence, window_start=START,
                         window_end=START + timedelta(days=120), observed_at=START)


def test_the_highest_sequence_per_space_wins_whatever_the_order() -> None:
    batch = [picture(str(HIGH), 5), picture(str(LOW), 2), picture(str(HIGH), 7), picture(str(HIGH), 6),
             picture(str(LOW), 1)]
    assert [(p.space_id, p.sequence) for p in newest_pictures(batch)] == [(str(LOW), 2), (str(HIGH), 7)]


def test_spellings_of_one_space_id_are_one_space_and_the_order_is_the_database_uuid_order() -> None:
    upper = str(HIGH).upper()
    batch = [picture(upper, 9), picture(str(HIGH), 8), picture(str(LOW), 1)]
    assert [(p.space_id, p.sequence) for p in newest_pictures(batch)] == [(str(LOW), 1), (upper, 9)]


def test_a_space_id_that_is_no_uuid_is_kept_for_the_database_to_refuse() -> None:
    assert [p.space_id for p in newest_pictures([picture("space-42", 3)])] == ["space-42"]
