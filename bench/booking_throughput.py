"""Booking throughput: bookings at each concurrency C for D seconds against a booking-service process.

For each C it prints bookings/s, p50/p99 latency, and how long after the load the last booking.created
event was on Kafka; as a baseline in the same run, GET /healthz at the same C: the ceiling of the HTTP
stack and the load generator on this machine, so the booking figure can be read against it.

The load comes from wrk (C; Debian package `wrk`, installed when missing and running as root):
bench/wrk_bookings.lua makes each request a distinct slot, so every booking can succeed.

    uv run python bench/booking_throughput.py --seconds 15 --concurrency 4,8,16,32

Kafka and PostgreSQL come from the environment, a Docker engine, or scripts/ (as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from spacesync.common.secrets import generate_key
from spacesync.testing.infra import resolve_infra
from spacesync.testing.kafka import delete_topics

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
SPACES = 40
THREADS = 2


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)


async def make_spaces(client: httpx.AsyncClient) -> list[str]:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    location = (await client.post("/v1/admin/locations", headers=admin,
                                  json={"name": "Bench", "timezone": "UTC"})).json()
    category = (await client.post("/v1/admin/categories", headers=admin,
                                  json={"location_id": location["location_id"], "name": "Rooms"})).json()
    hours = {d: [{"open": "00:00", "close": "24:00"}] for d in
             ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
    spaces = []
    for i in range(SPACES):
        space = (await client.post("/v1/admin/spaces", headers=admin, json={
            "category_id": category["category_id"], "name": f"Room {i}", "slot_minutes": 30,
            "max_booking_minutes": 120, "opening_hours": hours})).json()
        spaces.append(space["space_id"])
    return spaces


def wrk(args: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(["wrk", f"-t{THREADS}", "--timeout", "30s", *args], env=env, check=True,
                          capture_output=True, text=True, timeout=3600).stdout


def healthz_baseline(base: str, concurrency: int, seconds: int) -> tuple[float, float, float]:
    output = wrk([f"-c{concurrency}", f"-d{seconds}s", "--latency", f"{base}/healthz"])
    rate = float(next(line for line in output.splitlines() if line.startswith("Requests/sec:")).split()[1])
    percentiles = {line.split()[0]: _ms(line.split()[1]) for line in output.splitlines()
                   if line.strip().startswith(("50%", "99%"))}
    return rate, percentiles["50%"], percentiles["99%"]


def bookings_load(base: str, spaces: list[str], concurrency: int, seconds: int, first: datetime) -> dict[str, float]:
    spaces_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"spacesync-bench-{uuid.uuid4().hex[:6]}.txt"
    spaces_file.write_text("\n".join(spaces) + "\n")
    env = {**os.environ, "SPACES_FILE": str(spaces_file), "START_EPOCH": str(int(first.timestamp())),
           "THREADS": str(THREADS)}
    try:
        output = wrk([f"-c{concurrency}", f"-d{seconds}s", "-s", str(Path(__file__).with_name("wrk_bookings.lua")),
                      base], env)
    finally:
        spaces_file.unlink()
    line = next(line for line in output.splitlines() if line.startswith("WRK_RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("WRK_RESULT "))
    return result


def _ms(value: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


async def last_event_arrival(bootstrap: str, topic: str, count: int, timeout: float) -> float:
    """Reads the topic until `count` booking.created events are there; returns when the last one arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(1 for records in batches.values() for r in records
                        if dict(r.headers).get("ce_type") == b"booking.created")
        if seen < count:
            raise SystemExit(f"only {seen} of {count} events reached Kafka within {timeout} s")
        return time.perf_counter()
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="length of each bookings run")
    parser.add_argument("--concurrency", default="4,8,16,32", help="comma-separated levels")
    parser.add_argument("--port", type=int, default=18181)
    args = parser.parse_args()
    ensure_wrk()

    infra = resolve_infra(ROOT)
    schema, prefix = f"bench_{uuid.uuid4().hex[:6]}", f"bench{uuid.uuid4().hex[:6]}."
    env = {**os.environ, "SPACESYNC_ADMIN_TOKEN": TOKEN, "SPACESYNC_HTTP_PORT": str(args.port),
           "SPACESYNC_SCHEMA_NAME": schema, "SPACESYNC_KAFKA_TOPIC_PREFIX": prefix,
           "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "SPACESYNC_POSTGRES_DSN": infra.postgres_dsn,
           "SPACESYNC_POSTGRES_POOL_MAX_SIZE": "20", "SPACESYNC_LOG_LEVEL": "WARNING",
           "SPACESYNC_SECRET_KEYS": generate_key()}
    service = subprocess.Popen([sys.executable, "-m", "spacesync.booking_service"], env=env)
    base = f"http://127.0.0.1:{args.port}"
    db = await asyncpg.connect(infra.postgres_dsn)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(240):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
            spaces = await make_spaces(client)
        levels = [int(level) for level in args.concurrency.split(",")]
        print(f"booking-service (1 process) on {base}; {os.cpu_count()} cores shared with Kafka, PostgreSQL and wrk; "
              f"{args.seconds} s per run; one distinct slot per booking")
        print(f"{'C':>4} | {'healthz/s':>9} {'p99 ms':>7} | {'bookings/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'bookings':>8} {'errors':>6} | {'last event':>10} | {'vs healthz':>10}")
        first = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        for level in levels:
            rate, _, baseline_p99 = healthz_baseline(base, level, 5)
            before = await db.fetchval(f'SELECT count(*) FROM "{schema}".bookings')
            result = bookings_load(base, spaces, level, args.seconds, first)
            load_ended = time.perf_counter()
            total = await db.fetchval(f'SELECT count(*) FROM "{schema}".bookings')
            created = total - before
            arrived = await last_event_arrival(infra.kafka_bootstrap, f"{prefix}booking.events", total, timeout=120)
            bookings_rate = created / result["seconds"]
            errors = int(result["conflicts"] + result["other"] + result["socket_errors"])
            print(f"{level:>4} | {rate:>9.0f} {baseline_p99:>7.1f} | {bookings_rate:>10.0f} {result['p50_ms']:>7.1f} "
                  f"{result['p99_ms']:>7.1f} {created:>8} {errors:>6} | {arrived - load_ended:>8.2f} s | "
                  f"{bookings_rate / rate:>10.2f}")
            # The next run books later slots (each run books at most ~1 month of half-hours in 40 spaces).
            first += timedelta(days=31 + (created // (SPACES * 48)))
        print("last event: seconds from the end of the load until the last booking.created was on Kafka")
    finally:
        service.terminate()
        service.wait(timeout=30)
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.close()
        await delete_topics(infra.kafka_bootstrap, [prefix])
        infra.close()


if __name__ == "__main__":
    asyncio.run(main())
