"""The writer's pure rules: which slots belong in Exchange, the steps to get them there, titles, outcomes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus
from spacesync.common.events.catalog import TitleRule
from spacesync.common.events.sync import SlotSyncState
from spacesync.common.exchange import ItemRef
from spacesync.exchange_writer.appointment import appointment, body, fingerprint, title
from spacesync.exchange_writer.outcome import REPORT_AFTER_ATTEMPTS, outcome
from spacesync.exchange_writer.plan import SlotRecord, SpacePairing, Step, Target, Why, plan, retry_delay, wanted

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ITEM = ItemRef("AAMk-item", "CK1")


def booking(*, updated: datetime = T0, status: BookingStatus = BookingStatus.CONFIRMED,
            slot_status: SlotStatus = SlotStatus.CONFIRMED, nickname: str | None = None) -> BookingState:
    return BookingState(
        booking_id="b1", version=1, status=status, public_nickname=nickname,
        patron=Patron(first_name="Ada", last_name="Lovelace", email="ada@example.org"),
        slots=[BookingSlot(slot_id="s1", space_id="room", start=T0 + timedelta(days=1),
                           end=T0 + timedelta(days=1, hours=1), status=slot_status)],
        created_at=updated, updated_at=updated)


def pairing(*, paired_at: datetime | None = T0, resource: str | None = "room-101@example.org",
            imported: datetime | None = None) -> SpacePairing:
    return SpacePairing("room", "Room 101", "loc", "cat", resource, paired_at, imported)


def target(mailbox: str = "room-101@example.org") -> Target:
    b = booking()
    appt = appointment("/test", b, b.slots[0], rule=TitleRule.PATRON_NAME, nicknames_enabled=False,
                       space_name="Room 101")
    return Target(mailbox, "loc", appt, fingerprint(mailbox, appt))


class TestWanted:
    def test_a_booking_made_after_pairing_is_pushed(self) -> None:
        b = booking(updated=T0 + timedelta(seconds=1))
        assert wanted(b, b.slots[0], pairing(), None) is Why.CHANGED

    def test_a_booking_committed_just_after_the_pairing_with_an_earlier_time_is_pushed(self) -> None:
        b = booking(updated=T0 - timedelta(seconds=2))
        assert wanted(b, b.slots[0], pairing(), None)
        assert not wanted(b, b.slots[0], pairing(), None, grace=timedelta(0))

    def test_an_older_booking_waits_for_the_import(self) -> None:
        b = booking(updated=T0 - timedelta(days=1))
        assert not wanted(b, b.slots[0], pairing(), None)
        assert wanted(b, b.slots[0], pairing(imported=T0 + timedelta(minutes=5)), None) is Why.IMPORTED

    def test_the_import_takes_only_slots_still_to_come(self) -> None:
        b = booking(updated=T0 - timedelta(days=1))
        assert not wanted(b, b.slots[0], pairing(imported=T0 + timedelta(days=2)), None)

    def test_an_import_of_an_earlier_pairing_does_not_count(self) -> None:
        b = booking(updated=T0 - timedelta(days=1))
        assert not wanted(b, b.slots[0], pairing(imported=T0 - timedelta(hours=1)), None)

    def test_a_slot_already_in_exchange_follows_its_booking(self) -> None:
        b = booking(updated=T0 - timedelta(days=1))
        record = SlotRecord("s1", SlotSyncState.SYNCED, "room-9@example.org", "loc", ITEM)
        assert wanted(b, b.slots[0], pairing(), record) is Why.ADOPTED

    @pytest.mark.parametrize("space", [None, pairing(resource=None), pairing(paired_at=None)])
    def test_nothing_goes_to_a_space_that_is_not_paired(self, space: SpacePairing | None) -> None:
        b = booking(updated=T0 + timedelta(days=1))
        record = SlotRecord("s1", SlotSyncState.SYNCED, "room-101@example.org", "loc", ITEM)
        assert not wanted(b, b.slots[0], space, record)

    def test_cancelled_slots_and_bookings_are_not_wanted(self) -> None:
        for b in (booking(status=BookingStatus.CANCELLED, slot_status=SlotStatus.CANCELLED),
                  booking(slot_status=SlotStatus.CANCELLED)):
            assert not wanted(b, b.slots[0], pairing(paired_at=T0 - timedelta(days=9)), None)


class TestPlan:
    def test_a_new_slot_is_created_after_a_lookup(self) -> None:
        [action] = plan(None, target())
        assert (action.step, action.lookup_first) == (Step.CREATE, True)

    def test_trusted_records_create_a_new_booking_at_once_but_still_look_up_imports(self) -> None:
        [new] = plan(None, target(), trust_records=True)
        assert (new.step, new.lookup_first) == (Step.CREATE, False)
        [imported] = plan(None, replace(target(), why=Why.IMPORTED), trust_records=True)
        assert (imported.step, imported.lookup_first) == (Step.CREATE, True)
        interrupted = SlotRecord("s1", SlotSyncState.PENDING, create_intent="room-101@example.org")
        assert plan(interrupted, target(), trust_records=True)[0].lookup_first

    def test_a_slot_whose_removal_was_recorded_is_created_without_lookup(self) -> None:
        [action] = plan(SlotRecord("s1", SlotSyncState.REMOVED), target())
        assert (action.step, action.lookup_first) == (Step.CREATE, False)

    def test_an_unrecorded_create_is_looked_up_before_creating_again(self) -> None:
        record = SlotRecord("s1", SlotSyncState.PENDING, "room-101@example.org", "loc",
                            create_intent="room-101@example.org")
        [action] = plan(record, target())
        assert (action.step, action.lookup_first) == (Step.CREATE, True)

    def test_unchanged_synced_slot_needs_nothing(self) -> None:
        t = target()
        record = SlotRecord("s1", SlotSyncState.SYNCED, t.mailbox, "loc", ITEM, t.fingerprint)
        assert plan(record, t) == []

    def test_changed_content_is_an_update(self) -> None:
        record = SlotRecord("s1", SlotSyncState.SYNCED, "ROOM-101@example.org", "loc", ITEM, "old")
        assert [a.step for a in plan(record, target())] == [Step.UPDATE]

    def test_a_failed_update_is_tried_again(self) -> None:
        t = target()
        record = SlotRecord("s1", SlotSyncState.FAILED, t.mailbox, "loc", ITEM, t.fingerprint)
        assert [a.step for a in plan(record, t)] == [Step.UPDATE]

    def test_another_room_is_delete_then_create(self) -> None:
        record = SlotRecord("s1", SlotSyncState.SYNCED, "room-9@example.org", "old-loc", ITEM, "x")
        delete, create = plan(record, target())
        assert (delete.step, delete.mailbox, delete.location_id) == (Step.DELETE, "room-9@example.org", "old-loc")
        assert (create.step, create.mailbox) == (Step.CREATE, "room-101@example.org")

    def test_an_unrecorded_create_in_another_room_is_deleted_there_before_creating_here(self) -> None:
        record = SlotRecord("s1", SlotSyncState.PENDING, "room-9@example.org", "old-loc",
                            create_intent="room-9@example.org")
        delete, create = plan(record, target())
        assert (delete.step, delete.mailbox, delete.location_id) == (Step.DELETE_STAMPED, "room-9@example.org",
                                                                    "old-loc")
        assert (create.step, create.mailbox, create.lookup_first) == (Step.CREATE, "room-101@example.org", True)

    def test_removal(self) -> None:
        synced = SlotRecord("s1", SlotSyncState.SYNCED, "room-101@example.org", "loc", ITEM)
        assert [a.step for a in plan(synced, None)] == [Step.DELETE]
        unknown = SlotRecord("s1", SlotSyncState.PENDING, "room-101@example.org", "loc",
                             create_intent="room-101@example.org")
        assert [a.step for a in plan(unknown, None)] == [Step.DELETE_STAMPED]
        never_sent = SlotRecord("s1", SlotSyncState.FAILED, "room-101@example.org", "loc")
        assert [a.step for a in plan(never_sent, None)] == [Step.FORGET]
        interrupted = SlotRecord("s1", SlotSyncState.PENDING, "room-101@example.org", "loc", attempts=1)
        assert [a.step for a in plan(interrupted, None)] == [Step.DELETE_STAMPED]
        assert plan(SlotRecord("s1", SlotSyncState.REMOVED), None) == []
        assert plan(None, None) == []


class TestTitle:
    @pytest.mark.parametrize(("rule", "nicknames", "nickname", "expected"), [
        (TitleRule.PATRON_NAME, True, "Owl", "Ada Lovelace"),
        (TitleRule.PATRON_NAME_AND_EMAIL, False, None, "Ada Lovelace (ada@example.org)"),
        (TitleRule.PUBLIC_NICKNAME, True, "Owl", "Owl"),
        (TitleRule.PUBLIC_NICKNAME, True, None, ""),
        (TitleRule.PUBLIC_NICKNAME, False, "Owl", ""),
    ])
    def test_the_seed_rules(self, rule: TitleRule, nicknames: bool, nickname: str | None, expected: str) -> None:
        assert title(rule, booking(nickname=nickname), nicknames_enabled=nicknames) == expected

    def test_body_names_patron_email_reference_and_utc_times(self) -> None:
        b = booking()
        text = body(b, b.slots[0])
        assert "Ada Lovelace <ada@example.org>" in text
        assert "Booking reference: b1" in text
        assert "2026-12-02 09:00 to 2026-12-02 10:00" in text

    def test_fingerprint_follows_what_is_written(self) -> None:
        t = target()
        other = target("room-102@example.org")
        assert t.fingerprint == target().fingerprint != other.fingerprint


class TestOutcome:
    def test_nothing_to_report_without_records_or_while_quietly_pending(self) -> None:
        assert outcome([]) is None
        assert outcome([("room", SlotRecord("s1", SlotSyncState.PENDING, attempts=1))]) is None

    def test_synced_with_sync_ids(self) -> None:
        result = outcome([("room", SlotRecord("s1", SlotSyncState.SYNCED, "m", "loc", ITEM)),
                          ("room", SlotRecord("s2", SlotSyncState.REMOVED))])
        assert result is not None
        assert result.event_type == "booking.synced"
        assert [(s.slot_id, s.item_id, s.change_key) for s in result.slots] == [
            ("s1", "AAMk-item", "CK1"), ("s2", None, None)]

    def test_failures_and_long_retries_are_reported(self) -> None:
        failed = outcome([("room", SlotRecord("s1", SlotSyncState.FAILED, last_error="no access"))])
        assert failed is not None
        assert failed.event_type == "booking.sync_failed"
        assert failed.slots[0].error == "no access"
        waiting = outcome([("room", SlotRecord("s1", SlotSyncState.PENDING, attempts=REPORT_AFTER_ATTEMPTS,
                                               last_error="server busy"))])
        assert waiting is not None
        assert waiting.event_type == "booking.sync_failed"

    def test_all_removed_is_unsynced_and_fingerprints_ignore_attempts(self) -> None:
        one = outcome([("room", SlotRecord("s1", SlotSyncState.REMOVED, attempts=1))])
        two = outcome([("room", SlotRecord("s1", SlotSyncState.REMOVED, attempts=2))])
        assert one is not None
        assert two is not None
        assert one.event_type == "booking.unsynced"
        assert one.fingerprint == two.fingerprint


def test_retry_delay_honours_back_off_and_grows_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(7)
    assert retry_delay(1, back_off=2.5) == 2.5
    delays = [retry_delay(n, rng=rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 30.0 for d in delays)
    assert delays[-1] >= 15.0
