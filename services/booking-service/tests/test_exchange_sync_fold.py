"""booking-service folds exchange.sync: booking details show each slot's Outlook/Exchange Sync ID."""

from __future__ import annotations

from typing import Any

from booking_helpers import Room, Service, at, booking, publish_sync, slot, sync_state

from spacesync.common.events import CloudEvent, SlotSyncState
from spacesync.common.kafka import dlq_topic
from spacesync.testing import KafkaReader, wait_until
from spacesync.testing.kafka import produce


async def test_sync_ids_and_errors_show_per_slot_and_stale_results_are_ignored(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(3, 12))))
    booking_id, slot_id = created.json()["id"], created.json()["slots"][0]["slot_id"]

    async def exchange() -> dict[str, Any]:
        return await _first_slot(service, booking_id)

    await publish_sync(service, sync_state(booking_id, slot_id, room.space_id, 2, state=SlotSyncState.SYNCED,
                                           item_id="AAMkAD-item-2", change_key="CK2",
                                           mailbox="room-101@library.example.org", attempts=1))
    synced = await wait_until(lambda: _has(exchange(), "sync_id", "AAMkAD-item-2"), message="Sync ID shown")
    assert (synced["change_key"], synced["mailbox"], synced["attempts"]) == ("CK2", "room-101@library.example.org", 1)
    # A redelivered older outcome changes nothing. Sequence 3 reports no slot, so once it is folded (the
    # booking's sync_sequence is 3) the slot must still show sequence 2's Sync ID.
    await publish_sync(service, sync_state(booking_id, slot_id, room.space_id, 1, state=SlotSyncState.FAILED,
                                           item_id="stale-item", error="stale"))
    await publish_sync(service, sync_state(booking_id, slot_id, room.space_id, 3, state=SlotSyncState.SYNCED)
                       .model_copy(update={"slots": []}))
    await wait_until(lambda: _sync_sequence(service, booking_id, 3), message="sequence 3 folded")
    assert (await exchange())["sync_id"] == "AAMkAD-item-2"
    await publish_sync(service, sync_state(booking_id, slot_id, room.space_id, 4, state=SlotSyncState.FAILED,
                                           item_id="AAMkAD-item-2", error="ErrorAccessDenied: no write access",
                                           attempts=3), "booking.sync_failed")
    final = await wait_until(lambda: _has(exchange(), "state", "failed"), message="failure shown")
    assert final["error"] == "ErrorAccessDenied: no write access"
    assert final["attempts"] == 3
    assert final["sync_id"] == "AAMkAD-item-2"


async def _sync_sequence(service: Service, booking_id: str, sequence: int) -> bool:
    async with service.running.app.state.db.acquire() as conn:
        current: int = await conn.fetchval("SELECT sync_sequence FROM bookings WHERE id = $1::uuid", booking_id)
    return current == sequence


async def _has(details: Any, field: str, value: str) -> dict[str, Any] | None:
    found: dict[str, Any] = await details
    return found if found.get(field) == value else None


async def test_malformed_sync_event_goes_to_the_dlq_and_the_fold_goes_on(service: Service, room: Room) -> None:
    created = await service.http.post("/v1/bookings", json=booking(slot(room.space_id, at(3, 15))))
    booking_id, slot_id = created.json()["id"], created.json()["slots"][0]["slot_id"]
    topic = service.topic("exchange.sync")
    async with KafkaReader(service.settings.kafka.bootstrap_servers, dlq_topic(topic)) as dlq:
        headers = CloudEvent(source="/elsewhere", type="booking.synced", subject=booking_id).to_headers()
        await produce(service.settings.kafka.bootstrap_servers, topic, b'{"booking_id": 42}',
                      key=booking_id.encode(), headers=headers)
        [dead] = await dlq.wait_for(lambda r: r.key == booking_id)
        assert "invalid booking.synced data" in dead.headers["dlq_reason"]
        assert dead.value == b'{"booking_id": 42}'
        await publish_sync(service, sync_state(booking_id, slot_id, room.space_id, 1, state=SlotSyncState.SYNCED,
                                               item_id="AAMkAD-after-dlq"))
        details = await wait_until(
            lambda: _has(_first_slot(service, booking_id), "sync_id", "AAMkAD-after-dlq"), message="later event")
    assert details["state"] == "synced"


async def _first_slot(service: Service, booking_id: str) -> dict[str, Any]:
    details = (await service.http.get(f"/v1/bookings/{booking_id}")).json()
    slot_exchange: dict[str, Any] = details["slots"][0]["exchange"]
    return slot_exchange
