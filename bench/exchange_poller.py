"""exchange-poller: one full reconciliation of --rooms paired rooms (the EWS simulator in its own process).

The simulator runs as its own process with a temporary seed of --rooms room mailboxes; each room gets --meetings
Outlook meetings (every tenth room also a weekly series without end) through the simulator's admin API. The poller
engine runs in this process against PostgreSQL (a fresh schema, the catalog folded straight into it, no Kafka: the
pictures go to the outbox and stay there). Rows, for the calendar view (a delegate account) and then for free/busy
(a free/busy-only account: the view is refused once per room, then 100 rooms per GetUserAvailability):

1. first read: every room read and its picture published (first-seen rows written);
2. steady cycle: a full reconciliation where nothing changed (what runs every reconcile interval);
3. changed cycle: a full reconciliation after --changes rooms got one more meeting.

Each row: seconds, rooms/s, EWS requests per cycle by operation (the simulator's counters), pictures published,
errors, CPU shares (simulator, this process with the poller, the rest of the machine).

    uv run python bench/exchange_poller.py                 # 2,000 rooms
    uv run python bench/exchange_poller.py --rooms 200     # smoke
    uv run python bench/exchange_poller.py --rooms 300 --names   # with organizer names
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from harness import CpuMeter, Processes

from spacesync.common.db import Database, migrate_service
from spacesync.common.events import LocationState, SpaceState
from spacesync.common.events.catalog import OpeningHours
from spacesync.common.exchange import ExchangeGateway, GatewaySettings
from spacesync.common.secrets import SecretBox, generate_key
from spacesync.exchange_poller import store
from spacesync.exchange_poller.engine import Poller, PollerConfig
from spacesync.exchange_poller.watches import Watches
from spacesync.testing.exchange import OUTLOOK_USER, PASSWORD, READONLY, WRITER, room

ALL_WEEK = OpeningHours.model_validate({day: [{"open": "00:00", "close": "24:00"}] for day in OpeningHours.WEEKDAYS})


async def book_meetings(base: str, rooms: int, meetings: int, concurrency: int) -> int:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    limit = asyncio.Semaphore(concurrency)

    async def book(client: httpx.AsyncClient, mailbox: str, body: dict[str, object]) -> None:
        async with limit:
            response = await client.post(f"/mailboxes/{mailbox}/meetings", json=body)
            response.raise_for_status()

    jobs = []
    async with httpx.AsyncClient(base_url=base + "/admin", timeout=60) as client:
        for index in range(rooms):
            for n in range(meetings):
                start = today + timedelta(days=1 + (index + n * 7) % 100, hours=8 + n % 9)
                jobs.append(book(client, room(index), {
                    "organizer": OUTLOOK_USER, "subject": "Outlook meeting", "start": start.isoformat(),
                    "end": (start + timedelta(minutes=45)).isoformat(),
                    "free_busy": ("Busy", "OOF", "Tentative", "WorkingElsewhere")[n % 4]}))
            if index % 10 == 0:
                start = today + timedelta(days=1, hours=18)
                start += timedelta(days=(7 - start.weekday()) % 7)  # a Monday
                jobs.append(book(client, room(index), {
                    "organizer": OUTLOOK_USER, "subject": "Weekly", "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(),
                    "recurrence": {"pattern": "weekly", "weekdays": ["monday"]}}))
        await asyncio.gather(*jobs)
    return len(jobs)


async def requests(base: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base + "/admin", timeout=60) as client:
        response = await client.get("/requests")
        response.raise_for_status()
        return {name: op["count"] for name, op in response.json()["operations"].items()}


async def published(db: Database) -> int:
    async with db.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox")
        return count


async def row(name: str, stack: Processes, db: Database, work: object, rooms: int) -> None:
    base = stack.services["simulator"].base
    before_requests, before_published = await requests(base), await published(db)
    meter = CpuMeter(stack.pids)
    meter.start()
    started = time.monotonic()
    errors = await work  # type: ignore[misc]
    seconds = time.monotonic() - started
    cpu = meter.stop()
    after = await requests(base)
    calls = {op: after[op] - before_requests.get(op, 0) for op in after if after[op] > before_requests.get(op, 0)}
    total = sum(calls.values())
    print(f"{name:<28} {seconds:7.2f} s {rooms / seconds:8.0f} rooms/s  EWS {total:5d} "
          f"({', '.join(f'{op} {n}' for op, n in sorted(calls.items()))})  published "
          f"{await published(db) - before_published:5d}  errors {errors}  CPU sim {cpu.get('simulator', 0):4.0%} "
          f"poller {cpu.get('bench', 0):4.0%} rest {cpu.get('rest', 0):4.0%}")


async def add_meetings(base: str, count: int, day: int) -> None:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day, hours=20)
    async with httpx.AsyncClient(base_url=base + "/admin", timeout=60) as client:
        for index in range(count):
            response = await client.post(f"/mailboxes/{room(index)}/meetings", json={
                "organizer": OUTLOOK_USER, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()})
            response.raise_for_status()


async def mode(args: argparse.Namespace, stack: Processes, db: Database, secrets: SecretBox, username: str,
               label: str) -> None:
    """One location with every room paired to a space of its own; the three rows."""
    base = stack.services["simulator"].base
    gateway = ExchangeGateway(GatewaySettings(max_connections=args.connections, worker_threads=args.connections * 2))
    poller = Poller(db, gateway, secrets, Watches(None, lambda _: None), PollerConfig(concurrency=args.concurrency))
    now = datetime.now(UTC)
    location = LocationState(location_id=f"loc-{label}", version=1, name=label, timezone="UTC", updated_at=now,
                             exchange={"server": base + "/EWS/Exchange.asmx", "username": username,
                                       "password_encrypted": secrets.encrypt(PASSWORD),
                                       "populate_organizer": args.names, "populate_organizer_since": now})
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM spaces")
        await conn.execute("DELETE FROM locations")
        await store.fold_location(conn, location)
        for index in range(args.rooms):
            await store.fold_space(conn, SpaceState(
                space_id=f"{label}-{index}", location_id=location.location_id, category_id="c", version=1,
                name=f"Room {index}", slot_minutes=30, max_booking_minutes=240, opening_hours=ALL_WEEK,
                updated_at=now, exchange_resource=room(index), paired_at=now))
    try:
        await row(f"{label}: first read", stack, db, first_read(poller), args.rooms)
        await row(f"{label}: steady cycle", stack, db, cycle(poller), args.rooms)
        await add_meetings(base, args.changes, 110 if label == "view" else 111)
        await row(f"{label}: {args.changes} rooms changed", stack, db, cycle(poller), args.rooms)
    finally:
        await gateway.close()


async def first_read(poller: Poller) -> int:
    await poller.catch_up()
    return sum(1 for space_id in poller.rooms if poller.last_error(space_id) is not None)


async def cycle(poller: Poller) -> int:
    return (await poller.reconcile()).errors


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    stack = Processes(workdir, "poller")
    try:
        simulator = await stack.simulator(args.rooms)
        started = time.monotonic()
        booked = await book_meetings(simulator.base, args.rooms, args.meetings, 32)
        print(f"{args.rooms} rooms, {booked} Outlook meetings booked in {time.monotonic() - started:.1f} s "
              f"(not timed); poller: concurrency {args.concurrency}, max_connections {args.connections} per server, "
              f"window yesterday + 120 days")
        schema = f"bench_poller_{uuid.uuid4().hex[:6]}"
        stack.schemas.append(schema)
        dsn = stack.infra.postgres_dsn
        await migrate_service(dsn, schema, "spacesync.exchange_poller", "poller")
        db = Database(dsn, schema, max_size=10)
        await db.open()
        try:
            secrets = SecretBox(generate_key())
            await mode(args, stack, db, secrets, WRITER, "view")
            await mode(args, stack, db, secrets, READONLY, "free/busy")
        finally:
            await db.close()
    finally:
        await stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=2000, help="room mailboxes, each paired with one space")
    parser.add_argument("--meetings", type=int, default=3, help="single Outlook meetings per room")
    parser.add_argument("--changes", type=int, default=100, help="rooms that get a new meeting before row 3")
    parser.add_argument("--concurrency", type=int, default=16, help="the poller's room reads in flight")
    parser.add_argument("--connections", type=int, default=8, help="the gateway's max_connections per server")
    parser.add_argument("--names", action="store_true",
                        help="the location's 'Populate Name from Outlook/Exchange' option on (views ask for names)")
    args = parser.parse_args()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    logging.getLogger("spacesync").setLevel(logging.ERROR)  # the free/busy-only account's refused views
    with tempfile.TemporaryDirectory(prefix="spacesync-bench-poller-") as workdir:
        asyncio.run(bench(args, Path(workdir)))


if __name__ == "__main__":
    main()
