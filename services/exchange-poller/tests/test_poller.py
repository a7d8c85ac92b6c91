"""The poller against the EWS simulator (real exchangelib), Kafka and Postgres: what Outlook books ends up in
the room's picture on exchange.freebusy, and nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from poller_helpers import PollerUnderTest, at, ews_requests, periods

from spacesync.common.events import Topic
from spacesync.common.exchange import Appointment, ExchangeGateway, ExchangeServer, GatewaySettings
from spacesync.exchange_poller import reads
from spacesync.exchange_poller.domain import window
from spacesync.exchange_poller.reads import ReadMode
from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.testing import wait_until
from spacesync.testing.exchange import PASSWORD, READONLY, WRITER, SimulatorAdmin, room, rooms_seed
from spacesync.testing.kafka import produce

pytestmark = pytest.mark.integration


async def test_busy_oof_and_working_elsewhere_hold_the_room_tentative_and_free_do_not(
        poller: PollerUnderTest) -> None:
    place = await poller.place()
    for hour, status in enumerate(["Busy", "OOF", "WorkingElsewhere", "Tentative", "Free"]):
        await poller.admin.book_meeting(place.mailbox, at(1, 8 + hour), at(1, 8 + hour, 45), status)

    picture = await poller.picture(place.space_id)

    assert periods(picture) == [(at(1, 8), at(1, 8, 45), "Busy"), (at(1, 9), at(1, 9, 45), "OOF"),
                                (at(1, 10), at(1, 10, 45), "WorkingElsewhere")]
    assert picture["mailbox"] == place.mailbox
    assert datetime.fromisoformat(picture["window_start"]) == at(-1, 0)
    assert datetime.fromisoformat(picture["window_end"]) == at(120, 0)
    assert all(p["organizer"] is None for p in picture["busy"])  # the option is off


async def test_moving_and_cancelling_in_outlook_reopens_the_time(poller: PollerUnderTest) -> None:
    place = await poller.place()
    meeting = await poller.admin.book_meeting(place.mailbox, at(2, 9), at(2, 10))
    assert periods(await poller.picture(place.space_id)) == [(at(2, 9), at(2, 10), "Busy")]

    await poller.admin.move_meeting(place.mailbox, meeting["id"], start=at(3, 14))
    assert periods(await poller.picture(place.space_id)) == [(at(3, 14), at(3, 15), "Busy")]

    await poller.admin.move_meeting(place.mailbox, meeting["id"], free_busy="Tentative")
    assert periods(await poller.picture(place.space_id)) == []

    await poller.admin.move_meeting(place.mailbox, meeting["id"], free_busy="Busy")
    assert periods(await poller.picture(place.space_id)) == [(at(3, 14), at(3, 15), "Busy")]

    await poller.admin.cancel_meeting(place.mailbox, meeting["id"])
    picture = await poller.picture(place.space_id)
    assert picture["busy"] == []
    assert picture["mailbox"] == place.mailbox


async def test_notifications_reread_the_room_without_waiting_for_the_reconciliation(
        poller: PollerUnderTest) -> None:
    place = await poller.place()  # the fixture's reconciliation interval is an hour
    await wait_until(lambda: poller.poller.notification_mode(place.mailbox) == "streaming", timeout=30,
                     message="a streaming subscription on the room")

    meeting = await poller.admin.book_meeting(place.mailbox, at(10, 9), at(10, 10))
    await poller.reader.wait_for(lambda r: r.key == place.space_id and len(r.json["busy"]) == 1)

    await poller.admin.cancel_meeting(place.mailbox, meeting["id"])
    emptied = await poller.reader.wait_for(lambda r: r.key == place.space_id and r.json["busy"] == [], count=2)
    assert emptied[-1].json["mailbox"] == place.mailbox
    assert poller.poller.read_mode(place.space_id) is ReadMode.VIEW


async def test_a_weekly_series_holds_every_occurrence_in_the_window(poller: PollerUnderTest) -> None:
    place = await poller.place()
    first = at(1, 16)
    await poller.admin.book_meeting(place.mailbox, first, first + timedelta(hours=1),
                                    recurrence={"pattern": "weekly"})  # no end date

    picture = await poller.picture(place.space_id)

    window_end = datetime.fromisoformat(picture["window_end"])
    expected = [(first + timedelta(weeks=n), first + timedelta(weeks=n, hours=1), "Busy")
                for n in range(30) if first + timedelta(weeks=n) < window_end]
    assert len(expected) == 17
    assert periods(picture) == expected


async def test_appointments_our_writer_stamped_never_count(poller: PollerUnderTest) -> None:
    place = await poller.place()
    assert place.location.exchange is not None
    gateway = ExchangeGateway()
    try:
        await gateway.create(ExchangeServer.from_connection(place.location.exchange, poller.secrets), place.mailbox,
                             Appointment(slot_id="/test/booking-system/b1/s1", booking_id="b1", subject="Ada",
                                         body="", start=at(4, 9), end=at(4, 10), location="Study Room"))
    finally:
        await gateway.close()
    await poller.admin.book_meeting(place.mailbox, at(4, 11), at(4, 12))

    picture = await poller.picture(place.space_id)

    assert periods(picture) == [(at(4, 11), at(4, 12), "Busy")]


async def test_organizer_names_only_with_the_option_on_and_for_meetings_first_seen_after(
        poller: PollerUnderTest) -> None:
    place = await poller.place()
    jane = {"name": "Jane Librarian", "smtp": "jane@rooms.example.org"}
    await poller.admin.book_meeting(place.mailbox, at(5, 9), at(5, 10), organizer=jane)
    assert [p["organizer"] for p in (await poller.picture(place.space_id))["busy"]] == [None]

    assert place.location.exchange is not None
    turned_on = datetime.now(UTC)
    location = place.location.model_copy(update={"version": 2, "exchange": place.location.exchange.model_copy(
        update={"populate_organizer": True, "populate_organizer_since": turned_on})})
    await poller.publish("location.upserted", location)
    await wait_until(lambda: poller.poller.rooms[place.space_id].policy.populate, message="option seen")
    await poller.admin.book_meeting(place.mailbox, at(5, 11), at(5, 12),
                                    organizer={"name": "Grace Hopper", "smtp": "grace@rooms.example.org"})

    picture = await poller.picture(place.space_id)
    assert [(datetime.fromisoformat(p["start"]), p["organizer"]) for p in picture["busy"]] == [
        (at(5, 9), None), (at(5, 11), "Grace Hopper")]

    # Disconnect and re-connect at the space level: the meetings already there get names too.
    repaired = place.space.model_copy(update={"version": 2, "paired_at": datetime.now(UTC)})
    await poller.publish("space.paired", repaired)
    await wait_until(lambda: poller.poller.rooms[place.space_id].paired_at == repaired.paired_at,
                     message="re-pairing seen")
    picture = await poller.picture(place.space_id)
    assert [p["organizer"] for p in picture["busy"]] == ["Jane Librarian", "Grace Hopper"]


async def test_a_view_read_is_one_find_item_and_names_come_only_when_asked() -> None:
    # A simulator of its own: the shared one also serves the module poller's reads, which would blur the counts.
    with EmbeddedSimulator(rooms_seed(1)) as sim:
        admin = SimulatorAdmin(sim)
        gateway = ExchangeGateway(GatewaySettings(timeout_seconds=10))
        server = ExchangeServer(endpoint=sim.ews_url, username=WRITER, password=PASSWORD)
        try:
            await admin.book_meeting(room(0), at(1, 9), at(1, 10),
                                     organizer={"name": "Grace Hopper", "smtp": "grace@rooms.example.org"})
            span = window(datetime.now(UTC), 120)

            unnamed = await reads.view(gateway, server, room(0), span, organizer=False)
            named = await reads.view(gateway, server, room(0), span, organizer=True)

            assert (ews_requests(sim, "FindItem"), ews_requests(sim, "GetItem")) == (2, 0)
            assert [(m.start, m.organizer) for m in unnamed] == [(at(1, 9), None)]
            assert [(m.start, m.organizer) for m in named] == [(at(1, 9), "Grace Hopper")]
        finally:
            await gateway.close()
            await admin.close()


async def test_an_unchanged_room_publishes_nothing_new(poller: PollerUnderTest) -> None:
    place = await poller.place()
    await poller.admin.book_meeting(place.mailbox, at(6, 9), at(6, 10))
    first = await poller.picture(place.space_id)
    published = len(poller.pictures(place.space_id))

    await poller.poller.reconcile()
    await poller.poller.reconcile()
    await poller.admin.book_meeting(place.mailbox, at(6, 11), at(6, 12))  # a change after them is published
    last = await poller.picture(place.space_id)

    assert [p["sequence"] for p in poller.pictures(place.space_id)][published - 1:] == [
        first["sequence"], last["sequence"]]


async def test_unpairing_publishes_one_empty_picture_without_mailbox(poller: PollerUnderTest) -> None:
    place = await poller.place()
    await poller.admin.book_meeting(place.mailbox, at(7, 9), at(7, 10))
    before = await poller.picture(place.space_id)
    assert len(before["busy"]) == 1

    unpaired = place.space.model_copy(update={"version": 2, "exchange_resource": None, "paired_at": None})
    await poller.publish("space.unpaired", unpaired)
    await wait_until(lambda: poller.poller.sequence(place.space_id) != before["sequence"],
                     message="the unpaired space's picture recorded")

    after = await poller.picture(place.space_id, reconcile=False)
    assert after["mailbox"] is None
    assert after["busy"] == []
    assert after["sequence"] > before["sequence"]


async def test_free_busy_rights_only_read_through_availability_without_names(poller: PollerUnderTest) -> None:
    place = await poller.place(username=READONLY, populate_organizer=True,
                               populate_organizer_since=datetime.now(UTC) - timedelta(days=1))
    await poller.admin.book_meeting(place.mailbox, at(8, 9), at(8, 10), "OOF")
    await poller.admin.book_meeting(place.mailbox, at(8, 11), at(8, 12), "Tentative")

    picture = await poller.picture(place.space_id)

    assert periods(picture) == [(at(8, 9), at(8, 10), "OOF")]
    assert picture["busy"][0]["organizer"] is None
    assert poller.poller.read_mode(place.space_id) is ReadMode.FREE_BUSY


async def test_a_room_that_fails_keeps_its_picture_and_never_stops_the_others(poller: PollerUnderTest) -> None:
    good = await poller.place()
    throttled = await poller.place()
    gone = await poller.place(mailbox="nobody@rooms.example.org")
    await poller.admin.book_meeting(throttled.mailbox, at(9, 7), at(9, 8))
    kept = await poller.picture(throttled.space_id)
    fault = await poller.admin.add_fault(kind="server_busy", scope="mailbox", target=throttled.mailbox,
                                         back_off_ms=10)
    try:
        await poller.admin.book_meeting(good.mailbox, at(9, 9), at(9, 10))
        await poller.admin.book_meeting(throttled.mailbox, at(9, 11), at(9, 12))

        picture = await poller.picture(good.space_id)

        assert periods(picture) == [(at(9, 9), at(9, 10), "Busy")]
        assert (poller.poller.last_error(throttled.space_id) or "").startswith("throttled")
        assert poller.poller.sequence(throttled.space_id) == kept["sequence"]  # the last good picture stays
        assert (poller.poller.last_error(gone.space_id) or "").startswith("mailbox_not_found")
        assert poller.poller.sequence(gone.space_id) is None  # nothing published for it
        poller.poller.refresh_gauges()
        metrics = (await poller.running.client.get("/metrics")).text
        assert 'spacesync_poller_read_errors_total{problem="throttled"}' in metrics
        assert 'spacesync_poller_read_errors_total{problem="mailbox_not_found"}' in metrics
        assert f'spacesync_poller_picture_age_seconds{{space_id="{good.space_id}"}}' in metrics
    finally:
        await poller.admin.remove_fault(fault)

    recovered = await poller.picture(throttled.space_id)
    assert periods(recovered) == [(at(9, 7), at(9, 8), "Busy"), (at(9, 11), at(9, 12), "Busy")]
    assert poller.poller.last_error(throttled.space_id) is None


async def test_a_malformed_catalog_event_goes_to_the_dead_letter_topic(poller: PollerUnderTest) -> None:
    topic = poller.settings.kafka.topic(Topic.CATALOG_EVENTS.value)
    headers = {"ce_specversion": "1.0", "ce_id": "bad-1", "ce_source": "/test", "ce_type": "space.paired",
               "ce_time": datetime.now(UTC).isoformat(), "content-type": "application/json"}
    await produce(poller.settings.kafka.bootstrap_servers, topic, b'{"space_id": "x"}', key=b"x", headers=headers)

    dead = await poller.reader.wait_for(lambda r: r.topic == topic + ".dlq")

    assert dead[0].value == b'{"space_id": "x"}'
    place = await poller.place()  # the consumer goes on
    assert place.space_id in poller.poller.rooms
