"""Nothing lost, nothing doubled: a writer killed mid-create, throttling, 503s and a server outage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from writer_helpers import Writer, future

from spacesync.common.events import Topic
from spacesync.common.kafka import ensure_topics
from spacesync.common.settings import KafkaSettings
from spacesync.testing import KafkaReader, wait_until
from spacesync.testing.events import booking
from spacesync.testing.exchange import WRITER

# The issue asks for a 2-minute outage; SPACESYNC_TEST_OUTAGE_SECONDS shortens it for a quick local run.
OUTAGE_SECONDS = float(os.environ.get("SPACESYNC_TEST_OUTAGE_SECONDS", "120"))


@asynccontextmanager
async def writer_process(writer: Writer, kafka: KafkaSettings, schema: str, lookup: str,
                         extra: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m spacesync.exchange_writer` as its own process (so it can be SIGKILLed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ,
           "SPACESYNC_SECRET_KEYS": writer.settings.secret_keys.get_secret_value(),
           "SPACESYNC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPACESYNC_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
           "SPACESYNC_KAFKA_TOPIC_PARTITIONS": str(kafka.topic_partitions),
           "SPACESYNC_POSTGRES_DSN": writer.settings.postgres.dsn.get_secret_value(),
           "SPACESYNC_SCHEMA_NAME": schema, "SPACESYNC_HTTP_PORT": str(port),
           "SPACESYNC_CONSUMER_GROUP": f"writer-{schema}", "SPACESYNC_INSTANCE_ID": f"writer-{schema}",
           "SPACESYNC_LOOKUP_BEFORE_CREATE": lookup, **(extra or {}),
           "SPACESYNC_POLL_INTERVAL_SECONDS": "0.2", "SPACESYNC_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "spacesync.exchange_writer", env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return process.returncode is not None
            await wait_until(ready, timeout=60, message="writer process ready")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


@pytest.mark.parametrize("lookup", ["always", "unrecorded"])
async def test_killed_after_exchange_created_the_item_leaves_exactly_one(
        writer: Writer, kafka_settings: Callable[[], KafkaSettings], lookup: str) -> None:
    """With either lookup setting: the intent recorded before CreateItem makes the restarted writer look first."""
    kafka = kafka_settings()
    schema = f"writer_killed_{uuid.uuid4().hex[:6]}"
    killed: list[int] = []
    holder: dict[str, int] = {}

    def kill_on_create(operation: str, payload: bytes) -> None:
        # Runs in the simulator after CreateItem stored the item, before the answer leaves.
        if operation == "CreateItem" and not killed and "pid" in holder and b"NoError" in payload:
            killed.append(holder["pid"])
            os.kill(holder["pid"], signal.SIGKILL)

    writer.sim.state.response_observers.append(kill_on_create)
    await ensure_topics(kafka)
    try:
        async with KafkaReader(kafka.bootstrap_servers, kafka.topic(Topic.EXCHANGE_SYNC.value)) as reader:
            other = Writer(writer.running, writer.settings.model_copy(update={"kafka": kafka}), writer.sim,
                           writer.admin, writer.secrets, reader, writer.rooms_used)
            async with writer_process(writer, kafka, schema, lookup) as process:
                holder["pid"] = process.pid
                place = await other.place()
                made = booking((place.space_id, future(days=20), 60))
                await other.publish("booking.created", made)
                code = await asyncio.wait_for(process.wait(), 60)
            assert code == -signal.SIGKILL
            slot_id = made.slots[0].slot_id
            assert len(await writer.admin.stamped(place.mailbox, slot_id)) == 1, "Exchange has the item"

            async with writer_process(writer, kafka, schema, lookup):
                synced = await other.wait_sync(made.booking_id, "booking.synced", timeout=60)
            [item] = await writer.admin.stamped(place.mailbox, slot_id)
            assert synced["slots"][0]["item_id"] == item["id"]
    finally:
        writer.sim.state.response_observers.remove(kill_on_create)


async def test_throttling_503s_and_an_outage_end_with_every_booking_synced_once(writer: Writer) -> None:
    place = await writer.place()
    busy = await writer.admin.add_fault(kind="server_busy", scope="account", target=WRITER, count=8,
                                        back_off_ms=300)
    unavailable = await writer.admin.add_fault(kind="http_503", scope="account", target=WRITER, count=8,
                                               retry_after_s=1)
    before = [booking((place.space_id, future(days=30, hour=6 + i), 30)) for i in range(6)]
    for made in before:
        await writer.publish("booking.created", made)
    for made in before:
        await writer.wait_sync(made.booking_id, "booking.synced", timeout=60)

    down = await writer.admin.add_fault(kind="down")
    during = [booking((place.space_id, future(days=31, hour=6 + i), 30)) for i in range(6)]
    for made in during:
        await writer.publish("booking.created", made)
    await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: its length is the scenario, not a synchronisation
    await writer.admin.remove_fault(down)
    for made in during:
        await writer.wait_sync(made.booking_id, "booking.synced", timeout=90)

    for made in before + during:
        assert len(await writer.admin.stamped(place.mailbox, made.slots[0].slot_id)) == 1
    assert len(await writer.admin.items(place.mailbox)) == len(before) + len(during)
    outcomes = Counter[str]()
    for operation in (await writer.admin.requests())["operations"].values():
        outcomes.update(operation["outcomes"])
    assert outcomes["ErrorServerBusy"] >= 1, outcomes
    assert outcomes["http_503"] >= 1, outcomes
    assert outcomes["down"] >= 1, outcomes
    for fault in (busy, unavailable):
        await writer.admin.remove_fault(fault)


async def test_sigterm_mid_call_releases_the_booking_and_the_next_run_finishes_it_once(
        writer: Writer, kafka_settings: Callable[[], KafkaSettings]) -> None:
    kafka = kafka_settings()
    schema = f"writer_stopped_{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka)
    slow = await writer.admin.add_fault(kind="latency", latency_ms=3000, operations=["CreateItem"])
    try:
        async with KafkaReader(kafka.bootstrap_servers, kafka.topic(Topic.EXCHANGE_SYNC.value)) as reader:
            other = Writer(writer.running, writer.settings.model_copy(update={"kafka": kafka}), writer.sim,
                           writer.admin, writer.secrets, reader, writer.rooms_used)
            async with writer_process(writer, kafka, schema, "always", extra={
                    "SPACESYNC_SHUTDOWN_GRACE_SECONDS": "0.5", "SPACESYNC_EXCHANGE_TIMEOUT_SECONDS": "5"}) as process:
                place = await other.place()
                made = booking((place.space_id, future(days=21), 60))
                await other.publish("booking.created", made)
                await wait_until(lambda: _lease_of(writer, schema, made.booking_id), timeout=30,
                                 message="a pass holds the booking")
                process.terminate()  # SIGTERM while CreateItem waits out the latency
                # uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM
                assert await asyncio.wait_for(process.wait(), 60) in (0, -signal.SIGTERM)
            assert await _lease_of(writer, schema, made.booking_id) is None, "released at shutdown"
            await writer.admin.remove_fault(slow)
            async with writer_process(writer, kafka, schema, "always"):
                synced = await other.wait_sync(made.booking_id, "booking.synced", timeout=60)
            [item] = await writer.admin.stamped(place.mailbox, made.slots[0].slot_id)
            assert synced["slots"][0]["item_id"] == item["id"]
    finally:
        with contextlib.suppress(Exception):
            await writer.admin.remove_fault(slow)


async def _lease_of(writer: Writer, schema: str, booking_id: str) -> str | None:
    conn = await asyncpg.connect(writer.settings.postgres.dsn.get_secret_value())
    try:
        owner: str | None = await conn.fetchval(
            f'SELECT lease_owner FROM "{schema}".bookings WHERE booking_id = $1', booking_id)
        return owner
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
