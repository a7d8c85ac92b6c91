"""Dead-letter queue: an event that can never be processed goes to `<topic>.dlq`, and the consumer goes on.

Invalid events (InvalidEvent: bad CloudEvents headers, unknown type, payload that fails its contract; or
data PostgreSQL refuses, asyncpg.DataError) are copied to the DLQ with the reason in headers, counted, and
acknowledged. Any other error is treated as transient: the handler is retried after a back-off, and the
offset is not committed. Batch subscribers dead-letter single records themselves (`dead_letter`); the
middleware gives them the same back-off.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from faststream import BaseMiddleware
from faststream._internal.basic_types import AsyncFuncAny
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from prometheus_client import Counter

from spacesync.common.events.cloudevents import InvalidEvent

log = logging.getLogger(__name__)

DLQ_EVENTS = Counter("spacesync_dlq_events_total", "Events sent to a dead-letter topic", ["topic", "group"])
HANDLER_RETRIES = Counter(
    "spacesync_consumer_retries_total", "Handler failures that will be retried", ["topic", "group"])

MAX_BACKOFF_SECONDS = 30.0


def count_dead_letters_from_zero(topic: str, group: str) -> None:
    """Creates the subscription's DLQ counter at 0: a child born at its first increment shows as 1 in its first
    scrape, an increase Prometheus cannot see (SpacesyncDeadLettersReceived would miss a process's first one)."""
    DLQ_EVENTS.labels(topic, group)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def refusal_reason(error: asyncpg.DataError) -> str:
    return f"the database refused the event's data: {error}"


class DeadLetterMiddleware(BaseMiddleware):
    # Consecutive transient failures per (topic, group): back off instead of spinning on a dead dependency.
    _failures: dict[tuple[str, str], int] = {}

    async def consume_scope(self, call_next: AsyncFuncAny, msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        record = raw[0] if isinstance(raw, tuple) and raw else raw
        if not isinstance(record, ConsumerRecord):
            return await call_next(msg)
        group = str(getattr(self.context.get("handler_"), "group_id", None) or "-")
        key = (record.topic, group)
        try:
            result = await call_next(msg)
        except (InvalidEvent, asyncpg.DataError) as refused:
            if isinstance(raw, tuple):
                raise  # a batch handler dead-letters single records itself; this is a bug: retry, loudly
            reason = refused.reason if isinstance(refused, InvalidEvent) else refusal_reason(refused)
            await dead_letter(self.context.get("broker"), record, reason, group)
            self._failures.pop(key, None)
            return None
        except Exception:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            HANDLER_RETRIES.labels(record.topic, group).inc()
            delay = min(MAX_BACKOFF_SECONDS, 0.2 * 2 ** min(failures, 10))
            log.exception("event handler failed; retrying", extra={
                "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "records": len(raw) if isinstance(raw, tuple) else 1, "retry_in_seconds": delay})
            await asyncio.sleep(delay)
            raise
        self._failures.pop(key, None)
        return result


async def dead_letter(broker: KafkaBroker, record: ConsumerRecord[Any, Any], reason: str, group: str) -> None:
    """Copies the record to its topic's DLQ with the reason and where it came from in headers."""
    # The original headers as text (a value that is not UTF-8 keeps its characters as replacements).
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}
    headers.update({
        "dlq_reason": reason[:2000],
        "dlq_source_topic": record.topic,
        "dlq_source_partition": str(record.partition),
        "dlq_source_offset": str(record.offset),
        "dlq_consumer_group": group,
        "dlq_failed_at": datetime.now(UTC).isoformat(),
    })
    try:
        await broker.publish(record.value or b"", dlq_topic(record.topic), key=record.key, headers=headers)
    except MessageSizeTooLargeError:
        # The added headers pushed a record that was just under the limit over it: keep the facts, not the value
        # (it is still at its offset in the source topic).
        headers["dlq_reason"] = f"{headers['dlq_reason']} (value left out: too large with the DLQ headers)"[:2000]
        await broker.publish(b"", dlq_topic(record.topic), key=record.key, headers=headers)
    DLQ_EVENTS.labels(record.topic, group).inc()
    log.warning("invalid event sent to the dead-letter topic", extra={
        "topic": record.topic, "partition": record.partition, "offset": record.offset, "reason": reason})
