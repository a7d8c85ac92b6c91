"""Publishes committed outbox rows to Kafka in order, then marks them.

One active relay per service schema (Leadership: a session advisory lock; other replicas wait as hot standbys).
LISTEN/NOTIFY wakes it when a transaction commits rows; a poll interval is the fallback.
Rows are marked only after Kafka acknowledged them (idempotent producer, acks=all), so a crash or a
Kafka outage re-sends a row with the same ce_id rather than losing it.

Order per aggregate holds whatever the producer does on failure: a batch carries at most one row of each
aggregate (its oldest unpublished one), so version n+1 is not sent before version n was acknowledged.

A row Kafka refuses for good (too large for the producer or the topic) would otherwise be retried first
forever and hold every later row back: it is set aside (refused_at, kept in the table, logged as an error and
counted in spacesync_outbox_refused_total) and the relay goes on. Events carry full state, so the aggregate's
next version supersedes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from prometheus_client import Counter, Gauge

from spacesync.common.db.leadership import Leadership
from spacesync.common.events.cloudevents import CloudEvent
from spacesync.common.settings import EventServiceSettings

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge("spacesync_outbox_backlog", "Outbox rows not yet published", ["schema"])
OUTBOX_OLDEST_AGE = Gauge(
    "spacesync_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row", ["schema"])
OUTBOX_PUBLISHED = Counter("spacesync_outbox_published_total", "Outbox rows published", ["schema", "topic"])
OUTBOX_PUBLISH_ERRORS = Counter(
    "spacesync_outbox_publish_errors_total", "Outbox rows Kafka did not acknowledge", ["schema"])
OUTBOX_REFUSED = Counter(
    "spacesync_outbox_refused_total", "Outbox rows Kafka refused for good (too large): set aside, not sent",
    ["schema", "topic"])
# Errors of the record itself: sending it again can never succeed.
REFUSALS = (MessageSizeTooLargeError, RecordTooLargeError)
REFUSED = "refused: "
OUTBOX_RELAY_LEADER = Gauge("spacesync_outbox_relay_leader", "1 while this replica is the active relay", ["schema"])


class RecordSender(Protocol):
    async def send(
        self, topic: str, *, key: bytes, value: bytes, headers: dict[str, str],
    ) -> Awaitable[Any]:
        """Hands one record to the producer; the returned awaitable resolves when Kafka acknowledged it."""
        ...


class OutboxRelay:
    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        sender: RecordSender,
        source: str,
        topic_name: Callable[[str], str] = lambda topic: topic,
        ready: Callable[[], bool] = lambda: True,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        ack_timeout: float = 30.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._sender = sender
        self._source = source
        self._topic_name = topic_name
        self._ready = ready
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._ack_timeout = ack_timeout
        self._retention = retention
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_purge = 0.0
        self._leadership = Leadership(
            dsn, schema, f"outbox-relay:{schema}", retry_interval=poll_interval,
            on_change=lambda leader: OUTBOX_RELAY_LEADER.labels(schema).set(1 if leader else 0),
            on_error=lambda _: self._forget_backlog())
        OUTBOX_RELAY_LEADER.labels(schema).set(0)

    @classmethod
    def for_service(cls, settings: EventServiceSettings, sender: RecordSender, ready: Callable[[], bool],
                    ) -> OutboxRelay:
        return cls(dsn=settings.postgres.dsn.get_secret_value(), schema=settings.schema_name, sender=sender,
                   source=settings.event_source, topic_name=settings.kafka.topic, ready=ready,
                   batch_size=settings.outbox_batch_size, poll_interval=settings.outbox_poll_interval_seconds)

    @property
    def is_leader(self) -> bool:
        return self._leadership.is_leader

    async def run(self) -> None:
        """Relays until stop(); survives Postgres and Kafka outages."""
        await self._leadership.run(self._relay, standby=self._observe_backlog, ping=False)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._leadership.stop()

    async def _relay(self, conn: asyncpg.Connection[Any]) -> None:
        """The active relay's loop, on the lock's connection (an error there ends the term: the lock is gone)."""
        await conn.add_listener(f"{self._schema}_outbox", self._on_notify)
        log.info("outbox relay active", extra={"schema": self._schema})
        while not self._stopping.is_set():
            self._wake.clear()
            if not self._ready():  # the producer is not connected yet: only keep the gauges current
                await self._observe_backlog(conn)
                await self._pause(self._poll_interval)
                continue
            more, failed = await self._relay_batch(conn)
            await self._observe_backlog(conn)
            await self._purge_published(conn)
            if failed:
                await self._pause(self._poll_interval * 2)
            elif not more:
                await self._pause(self._poll_interval)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _pause(self, seconds: float) -> bool:
        """Waits for a NOTIFY, stop() or the timeout; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        return self._stopping.is_set()

    async def _relay_batch(self, conn: asyncpg.Connection[Any]) -> tuple[bool, int]:
        """Sends one batch; returns whether more rows wait, and how many rows failed."""
        async with conn.transaction():
            fetched = await conn.fetch(
                "SELECT seq, id, aggregatetype, aggregateid, type, topic, created_at, payload::text AS payload"
                " FROM outbox WHERE published_at IS NULL ORDER BY seq"
                " LIMIT $1 FOR UPDATE SKIP LOCKED", self._batch_size)
            rows = _oldest_per_aggregate(fetched)
            if not rows:
                return False, 0
            results = await self._send(rows)
            done = [row["seq"] for row, error in zip(rows, results, strict=True) if error is None]
            refused = [(row, error) for row, error in zip(rows, results, strict=True)
                       if error and error.startswith(REFUSED)]
            failed = [(row["seq"], error) for row, error in zip(rows, results, strict=True)
                      if error and not error.startswith(REFUSED)]
            if refused:
                await self._set_aside(conn, refused)
            if done:
                await conn.execute(
                    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE seq = ANY($1)", done)
                for row, error in zip(rows, results, strict=True):
                    if error is None:
                        OUTBOX_PUBLISHED.labels(self._schema, row["topic"]).inc()
            if failed:
                await conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1",
                    [(seq, error[:1000]) for seq, error in failed])
                OUTBOX_PUBLISH_ERRORS.labels(self._schema).inc(len(failed))
                log.warning("outbox rows not acknowledged by Kafka; will retry",
                            extra={"schema": self._schema, "failed": len(failed), "error": failed[0][1]})
            return len(fetched) == self._batch_size or len(rows) < len(fetched), len(failed)

    async def _set_aside(self, conn: asyncpg.Connection[Any], refused: list[tuple[asyncpg.Record, str]]) -> None:
        await conn.executemany(
            "UPDATE outbox SET published_at = now(), refused_at = now(), attempts = attempts + 1, last_error = $2"
            " WHERE seq = $1", [(row["seq"], error[:1000]) for row, error in refused])
        for row, error in refused:
            OUTBOX_REFUSED.labels(self._schema, row["topic"]).inc()
            log.error("outbox row refused by Kafka for good: set aside, not sent", extra={
                "schema": self._schema, "ce_id": str(row["id"]), "ce_type": row["type"],
                "aggregate": row["aggregateid"], "bytes": len(row["payload"]), "error": error})

    async def _send(self, rows: list[asyncpg.Record]) -> list[str | None]:
        """Sends every row, then waits for all acknowledgements; one error text (or None) per row.

        Futures are never cancelled: the producer's own delivery timeout (shorter than ack_timeout) fails
        them, so a record we count as failed is not still waiting in the producer to be sent twice.
        """
        futures: list[asyncio.Future[Any] | str] = []
        for row in rows:
            event = CloudEvent(id=str(row["id"]), source=self._source, type=row["type"],
                               subject=row["aggregateid"], time=row["created_at"])
            try:
                sent = await asyncio.wait_for(self._sender.send(
                    self._topic_name(row["topic"]), key=row["aggregateid"].encode(),
                    value=row["payload"].encode(), headers=event.to_headers()), timeout=self._ack_timeout)
                futures.append(asyncio.ensure_future(sent))
            except REFUSALS as error:
                futures.append(REFUSED + repr(error))  # this record only: the others still go
            except Exception as error:
                # The producer is full or gone: the rest would wait just as long. They go next round.
                futures.append(repr(error))
                futures.extend(["not sent: an earlier row of the batch failed"] * (len(rows) - len(futures)))
                break
        waiting = [f for f in futures if not isinstance(f, str)]
        if waiting:
            await asyncio.wait(waiting, timeout=self._ack_timeout)
        return [_outcome(f) for f in futures]

    async def _observe_backlog(self, conn: asyncpg.Connection[Any]) -> None:
        row = await conn.fetchrow(
            "SELECT count(*) AS backlog, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest"
            " FROM outbox WHERE published_at IS NULL")
        assert row is not None
        OUTBOX_BACKLOG.labels(self._schema).set(row["backlog"])
        OUTBOX_OLDEST_AGE.labels(self._schema).set(float(row["oldest"]))

    def _forget_backlog(self) -> None:
        """Cut off from Postgres, a replica reports no backlog rather than its last reading frozen on /metrics
        (an old age would keep SpacesyncOutboxStuck firing; the replicas that can read report)."""
        for gauge in (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE):
            with contextlib.suppress(KeyError):
                gauge.remove(self._schema)

    async def _purge_published(self, conn: asyncpg.Connection[Any]) -> None:
        """Published rows are kept a while for inspection, then deleted (at most once a minute)."""
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        await conn.execute("DELETE FROM outbox WHERE published_at < now() - $1::interval AND refused_at IS NULL",
                           self._retention)


def _outcome(future: asyncio.Future[Any] | str) -> str | None:
    if isinstance(future, str):
        return future
    if not future.done():
        return "no acknowledgement from Kafka in time"
    error = future.exception()
    if isinstance(error, REFUSALS):
        return REFUSED + repr(error)
    return None if error is None else (repr(error) or type(error).__name__)


def _oldest_per_aggregate(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """The first (oldest) row of each aggregate, in seq order; later versions wait for the next batch."""
    seen: set[tuple[str, str]] = set()
    chosen = []
    for row in rows:
        aggregate = (row["aggregatetype"], row["aggregateid"])
        if aggregate not in seen:
            seen.add(aggregate)
            chosen.append(row)
    return chosen
