"""availability-service public API: one location's day grid under concurrent clients, against GET /healthz of the
same process at the same concurrency (the ceiling of the HTTP stack and this client on this machine).

availability-service runs as its own process (fresh schema, topic prefix and consumer group); the catalog (one
location in Europe/London, --spaces spaces open 08:00-22:00 on 30-minute slots), bookings (--history-days days
before and after the day, a third of the slots booked) and busy pictures (every other space, a few Outlook
meetings) go through Kafka first, and the bench waits until the service has folded them. Then C clients
(wrk, one connection each; an httpx client in Python tops out at ~200 requests/s here, below the service) send
GET /v1/locations/{id}/slots?start=<day> back to back for --seconds: req/s, p50, p99, the service's CPU, and
GET /healthz of the same process at the same C as the ceiling.

    uv run python bench/availability_api.py                          # 20 spaces, C = 1, 8, 32, 5 s each
    uv run python bench/availability_api.py --seconds 2 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from availability_fold import committed_total, end_offsets, produce
from booking_throughput import ensure_wrk
from harness import CpuMeter, Processes
from pydantic import BaseModel

from spacesync.common.events import Topic
from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus
from spacesync.common.events.catalog import CategoryState, LocationState, OpeningHours, SpaceState
from spacesync.common.events.freebusy import BusyPeriod, FreeBusyState, OutlookBusyStatus
from spacesync.common.kafka import ensure_topics
from spacesync.common.settings import KafkaSettings

TOKEN = "bench-token"
ZONE = ZoneInfo("Europe/London")
SOURCE = "/spacesync/booking-service"
HOURS = OpeningHours.model_validate({day: [{"open": "08:00", "close": "22:00"}] for day in OpeningHours.WEEKDAYS})
SLOTS_A_DAY = 28


def world(spaces: int, day: date, history_days: int) -> tuple[str, dict[Topic, list[tuple[str, str, BaseModel]]]]:
    now = datetime.now(UTC)
    location = LocationState(location_id=str(uuid.uuid4()), version=1, name="Main Library",
                             timezone="Europe/London", updated_at=now)
    category = CategoryState(category_id=str(uuid.uuid4()), location_id=location.location_id, version=1,
                             name="Study Rooms", public_nicknames=True, updated_at=now)
    rooms = [SpaceState(space_id=str(uuid.uuid4()), location_id=location.location_id,
                        category_id=category.category_id, version=1, name=f"Room {n:02}", slot_minutes=30,
                        max_booking_minutes=240, opening_hours=HOURS, updated_at=now) for n in range(spaces)]
    events: dict[Topic, list[tuple[str, str, BaseModel]]] = {
        Topic.CATALOG_EVENTS: [("location.upserted", SOURCE, location), ("category.upserted", SOURCE, category)]
        + [("space.upserted", SOURCE, room) for room in rooms],
        Topic.BOOKING_EVENTS: [], Topic.EXCHANGE_FREEBUSY: []}
    for offset in range(-history_days, history_days + 1):
        for n, room in enumerate(rooms):
            for slot in range((n + offset) % 3, SLOTS_A_DAY, 3):  # a third of the slots, an hour's worth or less
                start = slot_start(day + timedelta(days=offset), slot)
                events[Topic.BOOKING_EVENTS].append(("booking.created", SOURCE, BookingState(
                    booking_id=str(uuid.uuid4()), version=1, status=BookingStatus.CONFIRMED,
                    patron=Patron(first_name="Bench", last_name=f"Patron{n}", email=f"p{n}@example.org"),
                    slots=[BookingSlot(slot_id=str(uuid.uuid4()), space_id=room.space_id, start=start,
                                       end=start + timedelta(minutes=30), status=SlotStatus.CONFIRMED)],
                    created_at=now, updated_at=now)))
    for room in rooms[::2]:
        meetings = [BusyPeriod(start=slot_start(day, slot), end=slot_start(day, slot) + timedelta(minutes=60),
                               status=OutlookBusyStatus.BUSY, organizer="Grace Hopper") for slot in (1, 13, 25)]
        events[Topic.EXCHANGE_FREEBUSY].append(("freebusy.changed", SOURCE, FreeBusyState(
            space_id=room.space_id, location_id=location.location_id, mailbox="room@example.org", sequence=1,
            window_start=now - timedelta(days=1), window_end=now + timedelta(days=120), observed_at=now,
            busy=meetings)))
    return location.location_id, events


def slot_start(day: date, slot: int) -> datetime:
    return (datetime(day.year, day.month, day.day, 8, tzinfo=ZONE) + timedelta(minutes=30 * slot)).astimezone(UTC)


def wrk_get(url: str, concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    """wrk (C clients, one connection each, up to 2 threads) on one URL: (requests/s, p50 ms, p99 ms, errors)."""
    command = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "30s", url]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 120).stdout
    lines = [line.strip() for line in output.splitlines()]
    rate = float(next(line for line in lines if line.startswith("Requests/sec:")).split()[1])
    latency = {line.split()[0]: milliseconds(line.split()[1]) for line in lines if line.startswith(("50%", "99%"))}
    errors = sum(int(n) for line in lines if line.startswith("Non-2xx") for n in line.split()[-1:])
    errors += sum(int(part.split()[-1]) for line in lines if line.startswith("Socket errors")
                  for part in line.split(":", 1)[1].split(","))
    return rate, latency["50%"], latency["99%"], errors


def milliseconds(value: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=20)
    parser.add_argument("--history-days", type=int, default=14, help="bookings this many days before and after")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="per row")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    ensure_wrk()

    with tempfile.TemporaryDirectory(prefix="spacesync-bench-") as workdir:
        procs = Processes(Path(workdir), "avapi")
        bootstrap = procs.infra.kafka_bootstrap
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=procs.prefix)
        try:
            await ensure_topics(kafka, [Topic.BOOKING_EVENTS, Topic.CATALOG_EVENTS, Topic.EXCHANGE_FREEBUSY])
            day = (datetime.now(ZONE) + timedelta(days=2)).date()
            location_id, events = world(args.spaces, day, args.history_days)
            for topic, items in events.items():
                await produce(bootstrap, kafka.topic(topic.value), items)
            service = await procs.service("availability-service", "spacesync.availability_service",
                                          procs.common_env(SPACESYNC_ADMIN_TOKEN=TOKEN))
            await folded(bootstrap, kafka, f"{procs.prefix}availability-service")
            path = f"/v1/locations/{location_id}/slots?start={day.isoformat()}"
            async with httpx.AsyncClient(base_url=service.base) as http:
                grid = (await http.get(path)).json()
            slots = [slot for space in grid["spaces"] for slot in space["slots"]]
            print(f"{sum(len(items) for items in events.values())} events folded; the day grid: "
                  f"{len(grid['spaces'])} spaces, {len(slots)} slots, {sum(s['available'] for s in slots)} "
                  f"available (some already past when the day is today)")
            print()
            print(f"{'C':>3} | {'GET /healthz':>12} {'p99 ms':>7} | {'day grid/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'errors':>6} | service CPU | vs healthz")
            for concurrency in levels:
                meter = CpuMeter({"service": service.process.pid})
                base_rate, _, base_p99, _ = await asyncio.to_thread(
                    wrk_get, service.base + "/healthz", concurrency, args.seconds)
                meter.start()
                rate, p50, p99, errors = await asyncio.to_thread(wrk_get, service.base + path, concurrency,
                                                                 args.seconds)
                cpu = meter.stop()
                print(f"{concurrency:>3} | {base_rate:>12.0f} {base_p99:>7.1f} | {rate:>10.0f} {p50:>7.1f} "
                      f"{p99:>7.1f} {errors:>6} | {cpu['service']:>10.0%} | {rate / base_rate:>10.2f}")
        finally:
            await procs.close()


async def folded(bootstrap: str, kafka: KafkaSettings, group: str, timeout: float = 120.0) -> None:
    partitions = []
    total = 0
    for topic in (Topic.CATALOG_EVENTS, Topic.BOOKING_EVENTS, Topic.EXCHANGE_FREEBUSY):
        ends = await end_offsets(bootstrap, kafka.topic(topic.value))
        partitions += list(ends)
        total += sum(ends.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while await committed_total(admin, group, partitions) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"the service did not fold the {total} events within {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
