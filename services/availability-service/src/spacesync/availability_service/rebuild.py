"""Rebuild: the three topics replayed from the beginning, up to the end offsets taken at the start, into a fresh
schema with the live service's own folds (no consumer group, nothing committed); optionally compared with the
live schema row for row."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spacesync.availability_service.handlers import READERS, Batch, folds
from spacesync.availability_service.settings import AvailabilitySettings
from spacesync.availability_service.store import VIEW_TABLES
from spacesync.common.db import Database, migrate_service, quote_ident
from spacesync.common.db.pool import connect
from spacesync.common.events import InvalidEvent, Topic, parse_event

log = logging.getLogger(__name__)
PACKAGE = "spacesync.availability_service"
FETCH_RECORDS = 5000


@dataclass
class RebuildReport:
    schema: str
    records: int = 0
    folded: int = 0
    skipped: list[str] = field(default_factory=list)  # invalid or refused records: the live service DLQ'd them
    seconds: float = 0.0
    differences: dict[str, tuple[int, int]] | None = None  # table -> (only live, only rebuilt) rows
    # Partitions where the live consumer group had not committed exactly what the rebuild read when compared:
    # "topic/partition" -> (rebuild's end offset, live committed offset). Their differences may be just that.
    live_elsewhere: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def identical(self) -> bool | None:
        if self.differences is None:
            return None
        return not any(live or rebuilt for live, rebuilt in self.differences.values())

    def text(self) -> str:
        lines = [f"rebuilt schema {self.schema}: {self.records} records read, {self.folded} events folded, "
                 f"{len(self.skipped)} skipped (invalid), {self.seconds:.1f} s"]
        lines += [f"  skipped: {reason}" for reason in self.skipped[:20]]
        if self.differences is not None:
            for table, (live, rebuilt) in self.differences.items():
                lines.append(f"  {table}: {live} rows only in the live schema, {rebuilt} only in the rebuilt one")
            for partition, (end, live) in self.live_elsewhere.items():
                lines.append(f"  {partition}: rebuilt up to offset {end}, the live service had folded up to {live}"
                             " (views differ by those records; compare again when the live service is idle)")
            lines.append("views identical" if self.identical else "views DIFFER")
        return "\n".join(lines)


async def rebuild(settings: AvailabilitySettings, *, schema: str | None = None,
                  compare: bool = False, live_wait_seconds: float = 30.0) -> RebuildReport:
    """With `compare`, waits (at most `live_wait_seconds`) for the live consumer group to have committed the end
    offsets the rebuild read to, so a live service still folding is not reported as different."""
    schema = schema or f"{settings.schema_name}_rebuild_{datetime.now(UTC):%Y%m%d_%H%M%S_%f}"
    dsn = settings.postgres.dsn.get_secret_value()
    await _require_fresh(dsn, schema)
    await migrate_service(dsn, schema, PACKAGE, "availability")
    report = RebuildReport(schema)
    started = time.perf_counter()
    db = Database(dsn, schema, min_size=1, max_size=settings.fold_connections + 1)
    await db.open()
    try:
        ends = await _replay(settings, db, report)
        if compare:
            await _live_caught_up(settings, ends, live_wait_seconds)
            async with db.acquire() as conn:
                report.differences = await compare_views(conn, settings.schema_name, schema)
            committed = await _live_committed(settings, ends)
            report.live_elsewhere = {f"{tp.topic}/{tp.partition}": (end, committed[tp])
                                     for tp, end in sorted(ends.items()) if committed[tp] != end}
    finally:
        await db.close()
    report.seconds = time.perf_counter() - started
    return report


async def _require_fresh(dsn: str, schema: str) -> None:
    conn = await connect(dsn, "public")
    try:
        if await conn.fetchval("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema):
            raise SystemExit(f"schema {schema!r} exists already: a rebuild goes into a fresh schema")
    finally:
        await conn.close()


async def _replay(settings: AvailabilitySettings, db: Database, report: RebuildReport,
                  ) -> dict[TopicPartition, int]:
    """Folds every record up to the end offsets taken at the start; returns those offsets."""
    handlers = folds(db, settings.fold_connections)
    topic_of = {settings.kafka.topic(topic.value): topic for topic in handlers}
    # Without a group, aiokafka assigns every partition of the topics and commits nothing.
    consumer = AIOKafkaConsumer(*topic_of, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=FETCH_RECORDS)
            for tp, records in fetched.items():
                wanted = [r for r in records if r.offset < ends[tp]]
                report.records += len(wanted)
                await _fold(handlers[topic_of[tp.topic]], topic_of[tp.topic], wanted, report)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return ends


async def _live_committed(settings: AvailabilitySettings, ends: dict[TopicPartition, int],
                          ) -> dict[TopicPartition, int]:
    """The live consumer group's committed offset of each partition (0 when it committed none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.consumer_group, partitions=list(ends))
    finally:
        await admin.close()
    return {tp: max(0, offsets[tp].offset) if tp in offsets else 0 for tp in ends}


async def _live_caught_up(settings: AvailabilitySettings, ends: dict[TopicPartition, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        committed = await _live_committed(settings, ends)
        if all(committed[tp] >= end for tp, end in ends.items()) or time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.5)  # polling the live group's progress (not a test's synchronisation)


async def _fold(handler: Any, topic: Topic, records: list[ConsumerRecord[Any, Any]], report: RebuildReport) -> None:
    """Like the live consumer: invalid records are skipped (they are in the DLQ), a batch the database refuses
    is folded event by event without the refused one."""
    batch: Batch = []
    for record in records:
        try:
            batch.append(parse_event(record.headers, record.value, topic=topic, readers=READERS))
        except InvalidEvent as error:
            report.skipped.append(f"{record.topic}/{record.partition}@{record.offset}: {error.reason}")
    if not batch:
        return
    try:
        await handler(batch)
        report.folded += len(batch)
    except asyncpg.DataError:
        for event in batch:
            try:
                await handler([event])
                report.folded += 1
            except asyncpg.DataError as refused:
                report.skipped.append(f"{topic.value} {event[0].id}: {refused}")


async def compare_views(conn: Any, live: str, rebuilt: str) -> dict[str, tuple[int, int]]:
    """Rows of each view table in one schema and not the other (as multisets)."""
    differences = {}
    for table in VIEW_TABLES:
        a, b = f"{quote_ident(live)}.{table}", f"{quote_ident(rebuilt)}.{table}"
        only_live = await conn.fetchval(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d")
        only_rebuilt = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}) d")
        differences[table] = (only_live, only_rebuilt)
    return differences
