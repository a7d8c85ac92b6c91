"""Slot views folded from real Kafka into real Postgres: Outlook busy time, bookings of any source, duplicates
and stale events, the public and admin APIs."""

from __future__ import annotations

from datetime import timedelta

import orjson
from availability_helpers import (
    ADMIN,
    Service,
    a_future_day,
    key,
    local,
    picture,
)

from spacesync.common.events import Topic
from spacesync.common.events.booking import BookingStatus
from spacesync.common.kafka import dlq_topic
from spacesync.testing import KafkaReader, wait_until
from spacesync.testing.events import booking, changed, new_id


async def test_outlook_busy_time_closes_slots_and_a_newer_picture_reopens_them(service: Service) -> None:
    [place] = await service.place()
    day = a_future_day()
    ten, eleven = local(day, 10), local(day, 11)
    await service.publish("freebusy.changed", picture(place, 5, (ten, eleven + timedelta(minutes=30), "Grace Hopper")))
    await service.settled()

    public = await service.public_slots(place.space_id, day)
    assert len(public) == 10  # 08:00-18:00, hourly
    assert (public[key(ten)], public[key(eleven)]) == (False, False)
    assert sum(public.values()) == 8
    admin = await service.admin_slots(place.space_id, day)
    assert admin[key(ten)]["state"] == "busy_in_outlook"
    assert admin[key(ten)]["reason"] == "BUSY in Outlook"
    assert admin[key(eleven)]["organizer"] == "Grace Hopper"
    assert admin[key(local(day, 12))] == {"start": key(local(day, 12)), "end": key(local(day, 13)),
                                          "state": "available", "reason": None, "booking": None,
                                          "organizer": None}

    await service.publish("freebusy.changed", picture(place, 6))  # the meeting was deleted in Outlook
    await service.settled()
    assert all((await service.public_slots(place.space_id, day)).values())

    # an older picture arriving late (and a duplicate of the newest) changes nothing
    await service.publish("freebusy.changed", picture(place, 5, (ten, eleven, "Grace Hopper")))
    await service.publish("freebusy.changed", picture(place, 6))
    await service.settled()
    assert all((await service.public_slots(place.space_id, day)).values())

    # unpaired: mailbox None, nothing busy, newer sequence
    await service.publish("freebusy.changed", picture(place, 7, (ten, eleven, None)))
    await service.settled()
    assert not (await service.public_slots(place.space_id, day))[key(ten)]
    await service.publish("freebusy.changed", picture(place, 8, mailbox=None))
    await service.settled()
    assert (await service.public_slots(place.space_id, day))[key(ten)]

    # a period that began days earlier (out of office all week) still closes the day
    await service.publish("freebusy.changed", picture(place, 9, (ten - timedelta(days=3), ten + timedelta(days=3),
                                                                 None)))
    await service.settled()
    assert not any((await service.public_slots(place.space_id, day)).values())


async def test_bookings_of_any_source_close_their_slots_as_booked(service: Service) -> None:
    [first, second] = await service.place(spaces=2)
    day = a_future_day()
    ours = booking((first.space_id, local(day, 9), 120), nickname="Night Owl")
    # the same booking id from another producer is another booking
    panel = booking((second.space_id, local(day, 14), 60), booking_id=ours.booking_id)
    await service.publish("booking.created", ours)
    await service.publish("booking.created", panel, source="/panels/lobby")
    await service.settled()

    public = await service.public_slots(first.space_id, day)
    assert [public[key(local(day, h))] for h in (8, 9, 10, 11)] == [True, False, False, True]
    admin = await service.admin_slots(first.space_id, day)
    assert admin[key(local(day, 10))]["state"] == "booked"
    assert admin[key(local(day, 10))]["booking"] == {
        "source": "/test/booking-system", "booking_id": ours.booking_id, "patron": "Ada Lovelace",
        "public_nickname": "Night Owl"}
    other = await service.admin_slots(second.space_id, day)
    assert other[key(local(day, 14))]["booking"]["source"] == "/panels/lobby"

    # the location grid holds both spaces, public fields only
    grid = await service.get(f"/v1/locations/{first.location.location_id}/slots", start=day.isoformat())
    assert [s["space_id"] for s in grid["spaces"]] == [first.space_id, second.space_id]
    assert {field for s in grid["spaces"] for slot in s["slots"] for field in slot} == {"start", "end", "available"}
    assert sum(not slot["available"] for s in grid["spaces"] for slot in s["slots"]) == 3

    # cancelling one source's booking leaves the other's
    await service.publish("booking.cancelled", changed(ours, (first.space_id, local(day, 9), 120),
                                                       status=BookingStatus.CANCELLED))
    await service.settled()
    assert all((await service.public_slots(first.space_id, day)).values())
    assert not (await service.public_slots(second.space_id, day))[key(local(day, 14))]


async def test_duplicates_and_out_of_order_events_change_nothing(service: Service) -> None:
    [place] = await service.place()
    day = a_future_day(4)
    v1 = booking((place.space_id, local(day, 9), 60), (place.space_id, local(day, 15), 60))
    v2 = changed(v1, (place.space_id, local(day, 10), 60), (place.space_id, local(day, 15), 60), cancelled={1})
    v3 = changed(v2, (place.space_id, local(day, 12), 60), (place.space_id, local(day, 15), 60), cancelled={1})
    for state in (v1, v3, v2):  # v2 arrives after v3
        await service.publish("booking.updated" if state.version > 1 else "booking.created", state)
    await service.settled()
    expected = {h: h != 12 for h in range(8, 18)}
    assert await hours(service, place.space_id, day) == expected
    before = await service.rows()

    for state in (v2, v1, v3, v1):  # redelivered, in any order
        await service.publish("booking.updated", state)
    await service.publish("space.upserted", place.space.model_copy(update={"name": "Stale name"}))  # same version
    await service.settled()
    assert await hours(service, place.space_id, day) == expected
    assert await service.rows() == before

    # a newer catalog version is applied: the space closes
    await service.publish("space.upserted", place.space.model_copy(update={"version": 2, "active": False}))
    await service.settled()
    admin = await service.admin_slots(place.space_id, day)
    assert admin[key(local(day, 8))]["reason"] == "space inactive"
    assert admin[key(local(day, 12))]["state"] == "booked"  # who booked it still shows


async def hours(service: Service, space_id: str, day: object) -> dict[int, bool]:
    public = await service.public_slots(space_id, day)  # type: ignore[arg-type]
    return {h: public[key(local(day, h))] for h in range(8, 18)}  # type: ignore[arg-type]


async def test_bad_requests_get_problem_details(service: Service) -> None:
    [place] = await service.place()
    await service.settled()
    client = service.running.client
    day = a_future_day()
    path = f"/v1/spaces/{place.space_id}/slots"
    cases = [
        (path, {"start": day.isoformat(), "end": (day + timedelta(days=31)).isoformat()},
         None, 422, "32 days asked for; at most 31"),
        (path, {"start": day.isoformat(), "end": (day - timedelta(days=1)).isoformat()},
         None, 422, "is before start"),
        (f"/v1/spaces/{place.space_id}/slots", {"start": "tomorrow"}, None, 422, "query.start"),
        (path, {"start": "9999-12-31"}, None, 422, "between 0001-01-02 and 9999-12-30"),
        (f"/v1/spaces/{place.space_id}/slots", {}, None, 422, "query.start"),
        (f"/v1/spaces/{new_id()}/slots", {"start": day.isoformat()}, None, 404, "No space"),
        (f"/v1/locations/{new_id()}/slots", {"start": day.isoformat()}, None, 404, "No location"),
        (f"/v1/admin/spaces/{place.space_id}/slots", {"start": day.isoformat()}, None, 401, "Bearer"),
        (f"/v1/admin/spaces/{place.space_id}/slots", {"start": day.isoformat()},
         {"Authorization": "Bearer wrong"}, 401, "not valid"),
    ]
    for url, params, headers, status, detail in cases:
        response = await client.get(url, params=params, headers=headers)
        assert response.status_code == status, (url, params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"], response.json()
    response = await client.get(f"/v1/admin/spaces/{place.space_id}/slots", params={"start": day.isoformat()},
                                headers=ADMIN)
    assert response.status_code == 200


async def test_metrics_show_folds_event_age_and_consumer_lag(service: Service) -> None:
    [place] = await service.place()
    await service.publish("booking.created", booking((place.space_id, local(a_future_day(), 9), 60)))
    await service.settled()

    async def metrics() -> str | None:
        text = (await service.running.client.get("/metrics")).text
        lag = f'spacesync_availability_consumer_lag{{topic="{service.settings.kafka.topic("booking.events")}"}} 0.0'
        return text if lag in text else None

    text = await wait_until(metrics, timeout=30, message="consumer lag measured as 0")
    assert 'spacesync_availability_events_folded_total{type="booking.created"}' in text
    assert 'spacesync_availability_event_age_seconds_count{topic="booking.events"}' in text


async def test_bad_events_go_to_the_dlq_and_the_fold_goes_on(service: Service) -> None:
    [place] = await service.place()
    day = a_future_day()
    headers = {"ce_specversion": "1.0", "ce_source": "/broken", "content-type": "application/json"}
    good = booking((place.space_id, local(day, 9), 60))
    ends_before_start = good.model_dump(mode="json")
    ends_before_start["slots"][0]["end"] = ends_before_start["slots"][0]["start"]
    unpaired_but_busy = picture(place, 9).model_dump(mode="json") | {
        "mailbox": None, "busy": [{"start": key(local(day, 10)), "end": key(local(day, 11)), "status": "Busy"}]}
    bad = [
        (Topic.BOOKING_EVENTS, b"{not json", {"ce_type": "booking.created", "ce_id": "bad-json"}, "not JSON"),
        (Topic.BOOKING_EVENTS, orjson.dumps(ends_before_start), {"ce_type": "booking.created", "ce_id": "bad-slot"},
         "end must be after start"),
        (Topic.BOOKING_EVENTS, orjson.dumps(good.model_dump(mode="json")), {"ce_type": "space.upserted",
                                                                            "ce_id": "wrong-topic"},
         "belongs on catalog.events"),
        (Topic.EXCHANGE_FREEBUSY, orjson.dumps(unpaired_but_busy), {"ce_type": "freebusy.changed", "ce_id": "bad-fb"},
         "a space without a mailbox has no Outlook busy time"),
        (Topic.CATALOG_EVENTS, b"{}", {"ce_type": "location.deleted", "ce_id": "unknown-type"}, "unknown ce_type"),
    ]
    dlq_topics = [dlq_topic(service.settings.kafka.topic(t.value)) for t in
                  (Topic.BOOKING_EVENTS, Topic.EXCHANGE_FREEBUSY, Topic.CATALOG_EVENTS)]
    async with KafkaReader(service.settings.kafka.bootstrap_servers, *dlq_topics) as dlq:
        for topic, value, extra, _ in bad:
            await service.produce(topic, value, key=place.space_id, headers=headers | extra)
        await service.publish("booking.created", good)  # after the bad ones: still folded
        await service.settled()
        records = await dlq.wait_for(lambda r: r.headers.get("ce_source") == "/broken", count=len(bad))
    reasons = {r.headers["ce_id"]: r.headers["dlq_reason"] for r in records}
    for _, _, extra, reason in bad:
        assert reason in reasons[extra["ce_id"]], reasons
    assert {r.headers["dlq_consumer_group"] for r in records} == {service.settings.consumer_group}
    assert not (await service.public_slots(place.space_id, day))[key(local(day, 9))]
