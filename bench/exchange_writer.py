"""exchange-writer: bookings into Exchange resource calendars (the EWS simulator), against a plain exchangelib loop.

Everything runs as its own process on this machine: the EWS simulator (a temp seed with --rooms rooms),
booking-service and exchange-writer (fresh Postgres schemas, topic prefix and consumer groups per run), and this
script (the load, and the baseline's exchangelib client). Rows:

1. baseline: a plain exchangelib loop doing the writer's CreateItem (NTLM, FailFast, two PublicStrings extended
   properties, SEND_TO_NONE) with T threads and Configuration(max_connections=T), T = the writer's per-server
   max_connections: --baseline appointments across the rooms, items/s.
2. writer burst: --bookings bookings put in at once (booking-service's POST /v1/bookings with bounded
   concurrency, or --burst-via kafka: booking.created events straight onto booking.events); the time from the
   first booking to the last appointment created in the simulator (its `created` stamp; same machine clock):
   appointments/s and the ratio to the baseline.
3. sync latency: a steady --rate bookings/s through POST /v1/bookings for --seconds; for each booking, the
   appointment's `created` in the simulator minus the moment the API answered (after its commit): p50/p95/p99/max
   against the aim (p99 under 500 ms).

Each row shows the CPU each process used (share of one core) and how busy the whole machine was, the EWS requests
per appointment (the simulator's counters) and, for the writer, mean times from its /metrics (the booking.events
handler, each EWS call, event-loop lag). Before the rows, one booking per room warms the writer (catalog folded,
EWS sessions open); it is not timed. At the end: duplicates and failures, and what the processes logged.

    uv run python bench/exchange_writer.py                           # 2,000 bookings, 50/s for 20 s
    uv run python bench/exchange_writer.py --bookings 200 --seconds 5  # smoke (CI)

Kafka and PostgreSQL come from the environment (KAFKA_BOOTSTRAP_SERVERS, SPACESYNC_POSTGRES_DSN), a Docker
engine, or scripts/ (as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from exchangelib import (
    DELEGATE,
    NTLM,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FailFast,
    close_connections,
)
from exchangelib.items import SEND_TO_NONE
from exchangelib.properties import Body
from harness import CpuMeter, Processes, percentile

from spacesync.common.events import CloudEvent
from spacesync.common.events.booking import BookingSlot, BookingState, BookingStatus, Patron, SlotStatus
from spacesync.common.exchange import GatewaySettings
from spacesync.common.exchange.calendar import BOOKING_FIELD, SLOT_FIELD, register_stamps
from spacesync.common.secrets import generate_key
from spacesync.testing.exchange import PASSWORD, WRITER, room, stamped_slot

TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SLOT = timedelta(minutes=30)
ALL_WEEK = {day: [{"open": "00:00", "close": "24:00"}] for day in
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
AIM_P99_MS = 500.0
KAFKA_SOURCE = "/bench/exchange-writer"


# -- the simulator ---------------------------------------------------------------------------------------------------

class Simulator:
    """The simulator's admin JSON API: item counts and items (with `created` and our stamps)."""

    def __init__(self, base: str, rooms: int) -> None:
        self.ews_url = base + "/EWS/Exchange.asmx"
        self.rooms = [room(i) for i in range(rooms)]
        self.http = httpx.AsyncClient(base_url=base + "/admin", timeout=60)

    async def total_items(self) -> int:
        response = await self.http.get("/mailboxes")
        response.raise_for_status()
        return sum(m["items"] for m in response.json()["mailboxes"] if m["smtp"] in self.rooms)

    async def operations(self) -> dict[str, int]:
        """EWS requests so far, by operation (the simulator's counters)."""
        response = await self.http.get("/requests")
        response.raise_for_status()
        return {name: op["count"] for name, op in response.json()["operations"].items()}

    async def created_by_slot(self) -> dict[str, list[float]]:
        """Slot id stamp -> the `created` times (epoch seconds) of the items carrying it, over all rooms."""
        found: dict[str, list[float]] = {}
        for mailbox in self.rooms:
            response = await self.http.get(f"/mailboxes/{mailbox}/items")
            response.raise_for_status()
            for item in response.json()["items"]:
                stamp = stamped_slot(item)
                if stamp is not None:
                    found.setdefault(stamp, []).append(datetime.fromisoformat(item["created"]).timestamp())
        return found

    async def wait_total(self, at_least: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        total = await self.total_items()
        while total < at_least and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            total = await self.total_items()
        return total


# -- row 1: the plain exchangelib loop ----------------------------------------------------------------------------

def open_calendars(ews_url: str, mailboxes: list[str], threads: int) -> list[Any]:
    """One Configuration (max_connections = threads) and an Account per room with its calendar folder resolved:
    done before the clock starts (the writer caches them too)."""
    config = Configuration(service_endpoint=ews_url, credentials=Credentials(WRITER, PASSWORD), auth_type=NTLM,
                           retry_policy=FailFast(), max_connections=threads)
    utc = EWSTimeZone("UTC")
    return [Account(m, config=config, access_type=DELEGATE, autodiscover=False, default_timezone=utc).calendar
            for m in mailboxes]


def baseline(calendars: list[Any], count: int, threads: int) -> tuple[float, list[float], list[str]]:
    """`count` CreateItems over the calendars with `threads` threads: (seconds, latencies, errors)."""
    first = EWSDateTime(2031, 1, 1, tzinfo=EWSTimeZone("UTC"))
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def worker(number: int) -> None:
        for i in range(number, count, threads):
            start = first + SLOT * (i // len(calendars))
            item = CalendarItem(folder=calendars[i % len(calendars)], subject=f"Bench Patron{i}",
                                body=Body(f"Booked through Spacesync (baseline {i})"), start=start, end=start + SLOT,
                                location="Room", legacy_free_busy_status="Busy", reminder_is_set=False)
            setattr(item, SLOT_FIELD, f"baseline-{i}")  # the writer's own stamps, registered as the writer does
            setattr(item, BOOKING_FIELD, f"baseline-booking-{i}")
            began = time.perf_counter()
            try:
                item.save(send_meeting_invitations=SEND_TO_NONE)
            except Exception as error:  # a bench row reports its failure instead of hiding it
                errors.append(f"{type(error).__name__}: {error}")
                return
            latencies[number].append(time.perf_counter() - began)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started, [x for per in latencies for x in per], errors


# -- bookings ---------------------------------------------------------------------------------------------------

@dataclass
class Grid:
    """Hands out distinct 30-minute slots: spaces round-robin, then the next half hour (all days open, UTC)."""

    spaces: list[str]
    first: datetime
    used: int = 0

    def take(self) -> tuple[str, datetime]:
        n, self.used = self.used, self.used + 1
        return self.spaces[n % len(self.spaces)], self.first + SLOT * (n // len(self.spaces))


def booking_body(n: int, space_id: str, start: datetime) -> dict[str, Any]:
    return {"patron": {"first_name": "Bench", "last_name": f"Patron{n}", "email": f"p{n}@example.org"},
            "slots": [{"space_id": space_id, "start": start.isoformat(), "end": (start + SLOT).isoformat()}]}


@dataclass
class Booked:
    booking_id: str
    slot_id: str
    sent: float  # epoch seconds
    answered: float


@dataclass
class PostResult:
    booked: list[Booked] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def post_booking(client: httpx.AsyncClient, n: int, space_id: str, start: datetime, result: PostResult) -> None:
    sent = time.time()
    try:
        response = await client.post("/v1/bookings", json=booking_body(n, space_id, start))
    except httpx.HTTPError as error:
        result.errors.append(f"{type(error).__name__}: {error}")
        return
    answered = time.time()
    if response.status_code != 201:
        result.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return
    data = response.json()
    result.booked.append(Booked(data["id"], data["slots"][0]["slot_id"], sent, answered))


async def post_many(client: httpx.AsyncClient, grid: Grid, count: int, concurrency: int) -> PostResult:
    result = PostResult()
    queue = iter([(grid.used, *grid.take()) for _ in range(count)])

    async def worker() -> None:
        for n, space_id, start in queue:
            await post_booking(client, n, space_id, start, result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def produce_many(bootstrap: str, topic: str, grid: Grid, count: int) -> PostResult:
    """booking.created events straight onto booking.events, as another booking system would publish them."""
    result = PostResult()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        now = datetime.now(UTC)
        sent = time.time()
        futures = []
        for n in range(count):
            space_id, start = grid.take()
            state = BookingState(
                booking_id=str(uuid.uuid4()), version=1, status=BookingStatus.CONFIRMED,
                patron=Patron(first_name="Bench", last_name=f"Patron{n}", email=f"p{n}@example.org"),
                slots=[BookingSlot(slot_id=str(uuid.uuid4()), space_id=space_id, start=start, end=start + SLOT,
                                   status=SlotStatus.CONFIRMED)],
                created_at=now, updated_at=now)
            event = CloudEvent(source=KAFKA_SOURCE, type="booking.created", subject=state.booking_id)
            headers = [(k, v.encode()) for k, v in event.to_headers().items()]
            futures.append(await producer.send(topic, state.model_dump_json().encode(),
                                               key=state.booking_id.encode(), headers=headers))
            result.booked.append(Booked(state.booking_id, state.slots[0].slot_id, sent, 0.0))
        await asyncio.gather(*futures)
        done = time.time()
        for booked in result.booked:
            booked.answered = done
    finally:
        await producer.stop()
    return result


async def paced(client: httpx.AsyncClient, grid: Grid, count: int, rate: float, in_flight: int) -> PostResult:
    """`count` bookings at a steady `rate`/s, each in its own task (a slow answer does not delay the next)."""
    result = PostResult()
    gate = asyncio.Semaphore(in_flight)
    tasks = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def one(n: int, space_id: str, start: datetime) -> None:
        async with gate:
            await post_booking(client, n, space_id, start, result)

    for n in range(count):
        delay = began + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(grid.used, *grid.take())))
    await asyncio.gather(*tasks)
    return result


class SyncEvents:
    """Reads exchange.sync in the background: per booking id, when its first booking.synced arrived, and the
    booking.sync_failed events."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                         enable_auto_commit=False, group_id=None, metadata_max_age_ms=1000)
        self.synced: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self.consumer:
            ce_type = dict(record.headers).get("ce_type", b"").decode()
            key = record.key.decode() if record.key else ""
            if ce_type == "booking.synced":
                self.synced.setdefault(key, time.time())
            elif ce_type == "booking.sync_failed":
                self.failed[key] = (record.value or b"")[:300].decode(errors="replace")
            self.arrived.set()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()


# -- set-up -----------------------------------------------------------------------------------------------------

async def make_catalog(client: httpx.AsyncClient, sim: Simulator) -> list[str]:
    """One location connected to the simulator (admin API), one category, and a space paired with each room."""
    async def call(method: str, path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
        response = await client.request(method, path, headers=ADMIN, json=body)
        if response.status_code != expect:
            raise SystemExit(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        data: dict[str, Any] = response.json()
        return data

    location = (await call("POST", "/v1/admin/locations", {"name": "Bench Library", "timezone": "UTC"}, 201))
    location_id = location["location_id"]
    await call("PUT", f"/v1/admin/locations/{location_id}/exchange",
               {"server": sim.ews_url, "username": WRITER, "password": PASSWORD}, 200)
    category = await call("POST", "/v1/admin/categories", {"location_id": location_id, "name": "Rooms"}, 201)
    spaces = []
    for i, mailbox in enumerate(sim.rooms):
        space = await call("POST", "/v1/admin/spaces", {
            "category_id": category["category_id"], "name": f"Room {i}", "slot_minutes": 30,
            "max_booking_minutes": 120, "opening_hours": ALL_WEEK}, 201)
        await call("PUT", f"/v1/admin/spaces/{space['space_id']}/exchange", {"resource": mailbox}, 200)
        spaces.append(space["space_id"])
    return spaces


# -- reporting --------------------------------------------------------------------------------------------------

ROW_HEADER = (f"{'row':<46} | {'items':>5} {'seconds':>8} {'items/s':>8} | {'vs base':>7} | "
              f"{'writer':>6} {'sim':>5} {'bkg':>5} {'bench':>5} {'rest':>5} | {'mach.':>5}")


def row(name: str, items: int, seconds: float, rate: float, ratio: float | None, cpu: dict[str, float]) -> str:
    ratio_text = f"{ratio:7.2f}" if ratio is not None else f"{'-':>7}"
    shares = " ".join(f"{cpu.get(name, 0):5.0%}" for name in ("simulator", "booking", "bench", "rest"))
    return (f"{name:<46} | {items:>5} {seconds:>8.2f} {rate:>8.1f} | {ratio_text} | {cpu.get('writer', 0):6.0%} "
            f"{shares} | {cpu.get('machine', 0):5.0%}")


def ews_line(before: dict[str, int], after: dict[str, int], items: int) -> str:
    """EWS requests per appointment of a row, by operation (NTLM handshake legs included)."""
    counts = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    parts = [f"{name} {count / max(1, items):.2f}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])
             if count]
    return "  EWS requests per appointment: " + (", ".join(parts) or "none")


async def histograms(base: str) -> dict[str, tuple[float, float]]:
    """Some of the writer's /metrics histograms, by display name: (sum, count) so far. Where its time goes: the
    booking.events handler (FastStream; the offset commit comes after it), each EWS call (from taking one of the
    server's connections to the answer on the event loop), and the event-loop lag (how late a 100 ms timer fires)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(base + "/metrics")).text
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        kind = "sum" if name.endswith("_sum") else "count" if name.endswith("_count") else None
        if line.startswith("#") or kind is None:
            continue
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if "processed_messages_duration" in name and label.get("handler", "").endswith("booking.events"):
            display = "booking.events handler"
        elif name.startswith("spacesync_ews_request_seconds"):
            display = f"EWS {label.get('operation', '?')}"
        elif name.startswith("spacesync_event_loop_lag_seconds"):
            display = "event-loop lag"
        else:
            continue
        found.setdefault(display, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {display: (total, count) for display, (total, count) in found.items()}


def timings_line(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> str:
    parts = []
    for display, (total, count) in after.items():
        old_total, old_count = before.get(display, (0.0, 0.0))
        if count > old_count:
            parts.append(f"{display} {(total - old_total) / (count - old_count) * 1000:.1f}")
    return "  writer /metrics, mean ms: " + (", ".join(parts) or "none")


# -- the stack ------------------------------------------------------------------------------------------------------

class Stack(Processes):
    """The simulator, booking-service and exchange-writer as processes (bench/harness.py: fresh schemas, topic
    prefix and consumer groups; everything is stopped and dropped on exit)."""

    def __init__(self, args: argparse.Namespace, workdir: Path, connections: int) -> None:
        super().__init__(workdir, "w")
        self.args = args
        self.connections = connections
        self.sim = Simulator("http://127.0.0.1:0", args.rooms)
        self.events = SyncEvents(self.infra.kafka_bootstrap, f"{self.prefix}exchange.sync")
        self._events_started = False

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        simulator = await self.simulator(self.args.rooms)
        common = self.common_env(
            SPACESYNC_ADMIN_TOKEN=TOKEN, SPACESYNC_SECRET_KEYS=generate_key(), SPACESYNC_POSTGRES_POOL_MAX_SIZE="20",
            SPACESYNC_EXCHANGE_MAX_CONNECTIONS=str(self.connections), SPACESYNC_LOOKUP_BEFORE_CREATE=self.args.lookup)
        await self.service("booking", "spacesync.booking_service", common)
        await self.service("writer", "spacesync.exchange_writer", common)
        self.sim = Simulator(simulator.base, self.args.rooms)
        await self.events.start()
        self._events_started = True

    async def __aexit__(self, *_: object) -> None:
        if self._events_started:
            await self.events.stop()
        await self.sim.http.aclose()
        await self.close()


# -- rows -------------------------------------------------------------------------------------------------------

async def warm_up(stack: Stack, api: httpx.AsyncClient, grid: Grid, concurrency: int) -> None:
    """One booking per room: the catalog is folded, the writer's EWS sessions are open, the pipeline works."""
    before = await stack.sim.total_items()
    warm = await post_many(api, grid, len(grid.spaces), concurrency)
    if warm.errors:
        raise SystemExit(f"warm-up bookings failed: {warm.errors[0]}")
    total = await stack.sim.wait_total(before + len(grid.spaces), timeout=60)
    if total < before + len(grid.spaces):
        failed = next(iter(stack.events.failed.values()), "none")
        raise SystemExit(f"warm-up: only {total - before} of {len(grid.spaces)} appointments reached the simulator "
                         f"within 60 s (first booking.sync_failed: {failed})")
    print(f"warm-up: {len(grid.spaces)} bookings, one per room, all in the simulator (not timed)")


async def baseline_row(stack: Stack, count: int) -> float | None:
    register_stamps()
    try:
        calendars = await asyncio.to_thread(open_calendars, stack.sim.ews_url, stack.sim.rooms, stack.connections)
        ops = await stack.sim.operations()
        meter = CpuMeter(stack.pids)
        meter.start()
        seconds, latencies, errors = await asyncio.to_thread(baseline, calendars, count, stack.connections)
        cpu = meter.stop()
    finally:
        close_connections()
    name = f"1 baseline: exchangelib loop, {stack.connections} threads"
    if errors:
        print(f"{name:<46} | FAILED after {len(latencies)} items: {errors[0]}")
        return None
    rate = len(latencies) / seconds
    ordered = sorted(latencies)
    print(row(name, len(latencies), seconds, rate, 1.0, cpu))
    print(ews_line(ops, await stack.sim.operations(), len(latencies)))
    print(f"  CreateItem ms: p50 {percentile(ordered, .5) * 1000:.1f}, p99 {percentile(ordered, .99) * 1000:.1f}")
    return rate


async def burst_row(stack: Stack, api: httpx.AsyncClient, grid: Grid, base_rate: float | None) -> None:
    args = stack.args
    before, ops = await stack.sim.total_items(), await stack.sim.operations()
    timings = await histograms(stack.services["writer"].base)
    meter = CpuMeter(stack.pids)
    meter.start()
    started = time.time()
    if args.burst_via == "api":
        burst = await post_many(api, grid, args.bookings, args.concurrency)
    else:
        burst = await produce_many(stack.infra.kafka_bootstrap, f"{stack.prefix}booking.events", grid, args.bookings)
    ingested = time.time()
    await stack.sim.wait_total(before + len(burst.booked), timeout=args.timeout)
    cpu = meter.stop()
    created = await stack.sim.created_by_slot()
    times = [min(created[b.slot_id]) for b in burst.booked if b.slot_id in created]
    last = max(times, default=ingested)
    rate = len(times) / (last - started) if times else 0.0
    via = f"API, {args.concurrency} in flight" if args.burst_via == "api" else "Kafka events"
    print(row(f"2 writer: {args.bookings} bookings ({via})", len(times), last - started, rate,
              rate / base_rate if base_rate else None, cpu))
    what = "the API took" if args.burst_via == "api" else "producing the events took"
    print(f"  {what} {ingested - started:.2f} s ({len(burst.booked) / (ingested - started):.0f} bookings/s); the last "
          f"appointment came {last - ingested:.2f} s after the last booking was in")
    print(ews_line(ops, await stack.sim.operations(), len(times)))
    print(timings_line(timings, await histograms(stack.services["writer"].base)))
    if burst.errors:
        print(f"  {len(burst.errors)} bookings failed, first: {burst.errors[0]}")
    if len(times) < len(burst.booked):
        print(f"  only {len(times)} of {len(burst.booked)} appointments within {args.timeout:.0f} s")
    await settle(stack.events, burst.booked)


async def steady_row(stack: Stack, api: httpx.AsyncClient, grid: Grid) -> None:
    args = stack.args
    before, ops = await stack.sim.total_items(), await stack.sim.operations()
    timings = await histograms(stack.services["writer"].base)
    meter = CpuMeter(stack.pids)
    meter.start()
    steady = await paced(api, grid, max(1, int(args.rate * args.seconds)), args.rate, in_flight=256)
    await stack.sim.wait_total(before + len(steady.booked), timeout=args.timeout)
    cpu = meter.stop()
    created = await stack.sim.created_by_slot()
    answered = sorted(b.answered - b.sent for b in steady.booked)
    lags = sorted(min(created[b.slot_id]) - b.answered for b in steady.booked if b.slot_id in created)
    sent = [b.sent for b in steady.booked]
    span = max(sent) - min(sent) if sent else 0.0
    rate = (len(sent) - 1) / span if span > 0 else 0.0
    print(row(f"3 writer: steady {args.rate:g}/s for {args.seconds:g} s (API)", len(lags), span, rate, None, cpu))
    print(ews_line(ops, await stack.sim.operations(), len(lags)))
    print(timings_line(timings, await histograms(stack.services["writer"].base)))
    if steady.errors:
        print(f"  {len(steady.errors)} bookings failed, first: {steady.errors[0]}")
    if len(lags) < len(steady.booked):
        print(f"  only {len(lags)} of {len(steady.booked)} appointments within {args.timeout:.0f} s")
    await settle(stack.events, steady.booked)
    print()
    for label, values in (("API answer (commit)", answered), ("API answer -> appointment", lags)):
        if values:
            ms = {q: percentile(values, q) * 1000 for q in (.5, .95, .99)}
            print(f"{label + ' ms:':<31} p50 {ms[.5]:7.1f}  p95 {ms[.95]:7.1f}  p99 {ms[.99]:7.1f}  "
                  f"max {values[-1] * 1000:7.1f}  mean {statistics.fmean(values) * 1000:7.1f}  (n={len(values)})")
    by_time = [min(created[b.slot_id]) - b.answered for b in sorted(steady.booked, key=lambda b: b.sent)
               if b.slot_id in created]
    if len(by_time) >= 8:  # a latency that grows from the first quarter to the last: the writer fell behind
        quarter = len(by_time) // 4
        early, late = (percentile(sorted(part), .5) for part in (by_time[:quarter], by_time[-quarter:]))
        trend = ("growing: the writer does not keep up with the rate" if late > 2 * early + 0.1 else "steady")
        print(f"{'... in booking order ms:':<31} p50 of the first quarter {early * 1000:7.1f}, of the last quarter "
              f"{late * 1000:7.1f} ({trend})")
    if lags:
        p99 = percentile(lags, .99) * 1000
        print(f"aim: p99 under {AIM_P99_MS:.0f} ms from the API's commit to the appointment in the simulator: "
              f"{'met' if p99 < AIM_P99_MS else 'NOT met'} ({p99:.0f} ms)")


async def settle(events: SyncEvents, booked: list[Booked], timeout: float = 10.0) -> None:
    """Waits (briefly) until every booking's booking.synced is on exchange.sync, so rows do not overlap."""
    deadline = time.monotonic() + timeout
    missing = [b.booking_id for b in booked if b.booking_id not in events.synced]
    while missing and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(events.arrived.wait(), timeout=0.5)
        events.arrived.clear()
        missing = [booking_id for booking_id in missing if booking_id not in events.synced]
    if missing:
        print(f"  {len(missing)} bookings had no booking.synced on exchange.sync {timeout:.0f} s after their "
              f"appointments")


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    connections = args.connections or GatewaySettings().max_connections
    async with Stack(args, workdir, connections) as stack:
        infra = stack.infra
        print(f"infra: Kafka {infra.kafka_bootstrap} ({infra.origin.get('kafka')}), PostgreSQL "
              f"({infra.origin.get('postgres')}); the EWS simulator, booking-service and exchange-writer each in its "
              f"own process on 127.0.0.1, sharing the {os.cpu_count()} cores with Kafka, PostgreSQL and this script")
        print(f"{args.rooms} rooms, each paired with one space (admin API: PUT /v1/admin/locations/{{id}}/exchange, "
              f"PUT /v1/admin/spaces/{{id}}/exchange); writer: max_connections {connections} per server, "
              f"lookup_before_create {args.lookup}")
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(base_url=stack.services["booking"].base, timeout=60, limits=limits) as api:
            spaces = await make_catalog(api, stack.sim)
            first = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
            grid = Grid(spaces, first)
            await warm_up(stack, api, grid, min(args.concurrency, len(spaces)))
            print()
            print(ROW_HEADER)
            base_rate = await baseline_row(stack, args.baseline if args.baseline is not None else args.bookings)
            await burst_row(stack, api, grid, base_rate)
            await steady_row(stack, api, grid)
        stamped = await stack.sim.created_by_slot()
        doubled = sum(1 for times in stamped.values() if len(times) > 1)
        print(f"checks: {doubled} slots with more than one appointment; {len(stack.events.failed)} "
              f"booking.sync_failed events; {len(stack.events.synced)} bookings reported booking.synced")
        print("items: appointments in the simulator; seconds: first booking (first CreateItem) to the last "
              "appointment's `created` in the simulator; CPU: share of one core of the writer, the simulator, "
              "booking-service (bkg), this script (bench: the load, or the baseline's exchangelib client) and "
              "everything else (rest: Kafka, PostgreSQL, other processes); mach.: all cores busy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=2000, help="bookings in the burst (row 2)")
    parser.add_argument("--baseline", type=int, default=None, help="CreateItems of the baseline (default: --bookings)")
    parser.add_argument("--rate", type=float, default=50.0, help="bookings/s of the latency row (row 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency row")
    parser.add_argument("--rooms", type=int, default=40, help="room mailboxes (each paired with one space)")
    parser.add_argument("--concurrency", type=int, default=8, help="POST /v1/bookings in flight during the burst")
    parser.add_argument("--burst-via", choices=("api", "kafka"), default="api",
                        help="api: POST /v1/bookings; kafka: booking.created events straight onto booking.events")
    parser.add_argument("--connections", type=int, default=None,
                        help="the writer's per-server max_connections and the baseline's threads "
                             "(default: SPACESYNC_EXCHANGE_MAX_CONNECTIONS, else the gateway's default)")
    parser.add_argument("--lookup", choices=("always", "unrecorded"), default="always",
                        help="the writer's SPACESYNC_LOOKUP_BEFORE_CREATE: look for a stamped appointment before "
                             "every CreateItem, or only where its records cannot rule one out")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for the appointments of a row")
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    with tempfile.TemporaryDirectory(prefix="spacesync-bench-writer-") as workdir:
        asyncio.run(bench(args, Path(workdir)))


if __name__ == "__main__":
    main()
