"""Bookings reach the paired room's calendar in the simulator (real Kafka, Postgres, exchangelib)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from writer_helpers import Writer, future

from spacesync.common.events.booking import BookingStatus
from spacesync.common.events.catalog import ImportRequest, TitleRule
from spacesync.testing import wait_until
from spacesync.testing.events import booking, changed
from spacesync.testing.exchange import READONLY, connection


async def test_create_change_cancel_reach_the_room_calendar(writer: Writer) -> None:
    place = await writer.place()
    start = future(days=2, hour=14)
    created = booking((place.space_id, start, 60))
    await writer.publish("booking.created", created)

    synced = await writer.wait_sync(created.booking_id, "booking.synced", version=1)
    [item] = await writer.admin.stamped(place.mailbox, created.slots[0].slot_id)
    assert synced["booking_source"] == "/test/booking-system"
    assert synced["slots"][0]["item_id"] == item["id"]
    assert synced["slots"][0]["change_key"] == item["change_key"]
    assert synced["slots"][0]["mailbox"] == place.mailbox
    assert item["subject"] == "Ada Lovelace"
    assert item["location"] == place.space.name
    assert item["free_busy"] == "Busy"
    assert datetime.fromisoformat(item["start"]) == start
    assert datetime.fromisoformat(item["end"]) == start + timedelta(hours=1)
    assert "ada@example.org" in item["body"]
    assert created.booking_id in item["body"]

    moved = changed(created, (place.space_id, start + timedelta(hours=2), 90))
    await writer.publish("booking.updated", moved)
    synced = await writer.wait_sync(created.booking_id, "booking.synced", version=2)
    [after] = await writer.admin.stamped(place.mailbox, created.slots[0].slot_id)
    assert after["id"] == item["id"], "an update moves the same appointment"
    assert after["change_key"] != item["change_key"]
    assert synced["slots"][0]["change_key"] == after["change_key"]
    assert datetime.fromisoformat(after["start"]) == start + timedelta(hours=2)
    assert datetime.fromisoformat(after["end"]) == start + timedelta(hours=3, minutes=30)

    cancelled = changed(moved, (place.space_id, start + timedelta(hours=2), 90), status=BookingStatus.CANCELLED)
    await writer.publish("booking.cancelled", cancelled)
    unsynced = await writer.wait_sync(created.booking_id, "booking.unsynced", version=3)
    assert unsynced["slots"][0]["state"] == "removed"
    assert await writer.admin.stamped(place.mailbox, created.slots[0].slot_id) == []


@pytest.mark.parametrize(("rule", "nicknames", "nickname", "expected"), [
    (TitleRule.PATRON_NAME, True, "Night Owl", "Ada Lovelace"),
    (TitleRule.PATRON_NAME_AND_EMAIL, False, None, "Ada Lovelace (ada@example.org)"),
    (TitleRule.PUBLIC_NICKNAME, True, "Night Owl", "Night Owl"),
    (TitleRule.PUBLIC_NICKNAME, True, None, ""),
    (TitleRule.PUBLIC_NICKNAME, False, "Night Owl", ""),
])
async def test_title_follows_the_location_rule(writer: Writer, rule: TitleRule, nicknames: bool,
                                               nickname: str | None, expected: str) -> None:
    place = await writer.place(rule=rule, nicknames=nicknames)
    made = booking((place.space_id, future(days=3), 30), nickname=nickname)
    await writer.publish("booking.created", made)
    await writer.wait_sync(made.booking_id, "booking.synced")
    [item] = await writer.admin.stamped(place.mailbox, made.slots[0].slot_id)
    assert item["subject"] == expected


async def test_stale_and_repeated_versions_change_nothing(writer: Writer) -> None:
    place = await writer.place()
    start = future(days=4)
    first = booking((place.space_id, start, 60))
    second = changed(first, (place.space_id, start + timedelta(hours=1), 60))
    await writer.publish("booking.created", first)
    await writer.publish("booking.updated", second)
    await writer.wait_sync(first.booking_id, "booking.synced", version=2)
    sequence = writer.sync_events(first.booking_id)[-1].json["sequence"]
    await writer.publish("booking.created", first)  # stale
    await writer.publish("booking.updated", second)  # repeated
    third = changed(second, (place.space_id, start + timedelta(hours=3), 60))
    await writer.publish("booking.updated", third)  # same key, same partition: folded after the two above
    synced = await writer.wait_sync(first.booking_id, "booking.synced", version=3)
    assert synced["sequence"] == sequence + 1, "the stale and the repeated event published nothing"
    [item] = await writer.admin.stamped(place.mailbox, first.slots[0].slot_id)
    assert datetime.fromisoformat(item["start"]) == start + timedelta(hours=3)


async def test_versions_beyond_32_bits_from_another_producer_are_handled(writer: Writer) -> None:
    place = await writer.place()
    made = booking((place.space_id, future(days=4, hour=20), 30), version=2**40)
    await writer.publish("booking.created", made, source="/kiosk/lobby")
    synced = await writer.wait_sync(made.booking_id, "booking.synced")
    assert synced["booking_version"] == 2**40
    assert synced["booking_source"] == "/kiosk/lobby"


async def test_nothing_is_synced_to_a_space_that_is_not_paired(writer: Writer) -> None:
    place = await writer.place()
    unpaired = place.space.model_copy(update={"space_id": "unpaired-" + place.space_id, "exchange_resource": None,
                                              "paired_at": None})
    await writer.publish("space.upserted", unpaired)
    lonely = booking((unpaired.space_id, future(days=5), 60))
    both = booking((unpaired.space_id, future(days=6), 60), (place.space_id, future(days=6), 60))
    await writer.publish("booking.created", lonely)
    await writer.publish("booking.created", both)
    synced = await writer.wait_sync(both.booking_id, "booking.synced")
    assert [s["slot_id"] for s in synced["slots"]] == [both.slots[1].slot_id]
    await writer.settled()
    await writer.reader.caught_up()
    assert writer.sync_events(lonely.booking_id) == []
    items = await writer.admin.items(place.mailbox)
    assert {i["id"] for i in items} == {synced["slots"][0]["item_id"]}


async def test_bookings_older_than_the_pairing_wait_for_the_import(writer: Writer) -> None:
    paired_at = datetime.now(UTC)
    place = await writer.place(paired_at=paired_at)
    old = booking((place.space_id, future(days=7), 60), updated_at=paired_at - timedelta(days=1))
    new = booking((place.space_id, future(days=8), 60))
    await writer.publish("booking.created", old)
    await writer.publish("booking.created", new)
    await writer.wait_sync(new.booking_id, "booking.synced")
    await writer.settled()
    await writer.reader.caught_up()
    assert writer.sync_events(old.booking_id) == []
    assert await writer.admin.stamped(place.mailbox, old.slots[0].slot_id) == []
    await writer.publish("space.import_requested", ImportRequest(
        space_id=place.space_id, location_id=place.location.location_id, request_id="import-1",
        exchange_resource=place.mailbox, requested_at=datetime.now(UTC)))
    await writer.wait_sync(old.booking_id, "booking.synced")
    assert len(await writer.admin.stamped(place.mailbox, old.slots[0].slot_id)) == 1
    assert len(await writer.admin.stamped(place.mailbox, new.slots[0].slot_id)) == 1, "no second copy"


async def test_a_slot_moved_to_another_space_moves_rooms(writer: Writer) -> None:
    first, second = await writer.place(), await writer.place()
    start = future(days=9)
    made = booking((first.space_id, start, 60))
    await writer.publish("booking.created", made)
    await writer.wait_sync(made.booking_id, "booking.synced", version=1)
    await writer.publish("booking.updated", changed(made, (second.space_id, start, 60)))
    synced = await writer.wait_sync(made.booking_id, "booking.synced", version=2)
    slot_id = made.slots[0].slot_id
    assert await writer.admin.stamped(first.mailbox, slot_id) == []
    [item] = await writer.admin.stamped(second.mailbox, slot_id)
    assert synced["slots"][0]["item_id"] == item["id"]
    assert synced["slots"][0]["space_id"] == second.space_id


async def test_repairing_and_unpairing_move_and_remove_appointments(writer: Writer) -> None:
    place = await writer.place()
    made = booking((place.space_id, future(days=10), 60))
    await writer.publish("booking.created", made)
    await writer.wait_sync(made.booking_id, "booking.synced", version=1)
    slot_id = made.slots[0].slot_id

    other_room = writer.next_room()
    repaired = place.space.model_copy(update={"version": 2, "exchange_resource": other_room,
                                              "paired_at": datetime.now(UTC)})
    await writer.publish("space.paired", repaired)
    await wait_until(lambda: _one(writer, other_room, slot_id), message="appointment in the new room")
    assert await writer.admin.stamped(place.mailbox, slot_id) == []

    unpaired = repaired.model_copy(update={"version": 3, "exchange_resource": None, "paired_at": None})
    await writer.publish("space.unpaired", unpaired)
    await writer.wait_sync(made.booking_id, "booking.unsynced")
    assert await writer.admin.stamped(other_room, slot_id) == []


async def _one(writer: Writer, mailbox: str, slot_id: str) -> bool:
    return len(await writer.admin.stamped(mailbox, slot_id)) == 1


async def test_an_appointment_deleted_in_outlook_is_written_again_on_the_next_change(writer: Writer) -> None:
    place = await writer.place()
    start = future(days=11)
    made = booking((place.space_id, start, 60))
    await writer.publish("booking.created", made)
    synced = await writer.wait_sync(made.booking_id, "booking.synced", version=1)
    writer.sim.call(_delete_item(writer, synced["slots"][0]["item_id"]))
    await writer.publish("booking.updated", changed(made, (place.space_id, start + timedelta(hours=1), 60)))
    again = await writer.wait_sync(made.booking_id, "booking.synced", version=2)
    [item] = await writer.admin.stamped(place.mailbox, made.slots[0].slot_id)
    assert again["slots"][0]["item_id"] == item["id"] != synced["slots"][0]["item_id"]


async def _delete_item(writer: Writer, item_id: str) -> None:
    writer.sim.state.calendars.delete(item_id)


async def test_no_write_access_is_a_visible_failure_until_the_settings_change(writer: Writer) -> None:
    place = await writer.place(username=READONLY)
    made = booking((place.space_id, future(days=12), 60))
    await writer.publish("booking.created", made)
    failed = await writer.wait_sync(made.booking_id, "booking.sync_failed")
    assert failed["slots"][0]["state"] == "failed"
    assert failed["slots"][0]["error"]
    assert await writer.admin.items(place.mailbox) == []
    fixed = place.location.model_copy(update={"version": 2, "exchange": connection(writer.sim, writer.secrets)})
    await writer.publish("location.upserted", fixed)
    synced = await writer.wait_sync(made.booking_id, "booking.synced")
    assert synced["slots"][0]["item_id"]
    assert len(await writer.admin.stamped(place.mailbox, made.slots[0].slot_id)) == 1


async def test_a_create_whose_answer_was_lost_is_still_removed_when_the_booking_is_cancelled(writer: Writer) -> None:
    place = await writer.place()
    start = future(days=13)
    made = booking((place.space_id, start, 60))
    lost: list[str] = []

    def lose_the_answer(operation: str, payload: bytes) -> None:
        # Exchange stored the item; the writer gets an error instead of its answer.
        if operation == "CreateItem" and not lost:
            lost.append(operation)
            raise RuntimeError("answer lost")

    writer.sim.state.response_observers.append(lose_the_answer)
    try:
        await writer.publish("booking.created", made)
        await wait_until(lambda: lost, message="the CreateItem answer lost")
        await wait_until(lambda: _one(writer, place.mailbox, made.slots[0].slot_id), message="the item exists")
        cancelled = changed(made, (place.space_id, start, 60), status=BookingStatus.CANCELLED)
        await writer.publish("booking.cancelled", cancelled)
        await writer.wait_sync(made.booking_id, "booking.unsynced", version=2)
    finally:
        writer.sim.state.response_observers.remove(lose_the_answer)
    assert await writer.admin.stamped(place.mailbox, made.slots[0].slot_id) == []


async def test_appointments_of_a_space_unpaired_as_its_location_disconnects_are_removed(writer: Writer) -> None:
    place = await writer.place()
    made = booking((place.space_id, future(days=14), 60))
    await writer.publish("booking.created", made)
    await writer.wait_sync(made.booking_id, "booking.synced")
    # booking-service unpairs first, then disconnects; the writer may fold the location first (other partition).
    await writer.publish("location.upserted", place.location.model_copy(update={"version": 2, "exchange": None}))
    await writer.publish("space.unpaired", place.space.model_copy(
        update={"version": 2, "exchange_resource": None, "paired_at": None}))
    await writer.wait_sync(made.booking_id, "booking.unsynced")
    assert await writer.admin.stamped(place.mailbox, made.slots[0].slot_id) == []
