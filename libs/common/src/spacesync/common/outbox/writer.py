"""Adding events to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import BaseModel

from spacesync.common.events.registry import EVENT_TYPES


@dataclass(frozen=True)
class OutboxEvent:
    type: str
    aggregatetype: str
    data: BaseModel
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def aggregateid(self) -> str:
        key: str = getattr(self.data, EVENT_TYPES[self.type].key)
        return key


async def add_to_outbox(conn: asyncpg.Connection[Any], *events: OutboxEvent) -> None:
    """Must run inside the transaction that commits the state the events describe."""
    if not conn.is_in_transaction():
        raise RuntimeError("add_to_outbox needs an open transaction: the event must commit with the change")
    # One statement for any number of events (unnest), not executemany: one round trip on the hot path.
    await conn.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]::json[])",
        [e.id for e in events], [e.aggregatetype for e in events], [e.aggregateid for e in events],
        [e.type for e in events], [EVENT_TYPES[e.type].topic.value for e in events],
        [e.data.model_dump_json() for e in events],
    )
