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
    await conn.executemany(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload)"
        " VALUES ($1, $2, $3, $4, $5, $6::text::json)",
        [
            (e.id, e.aggregatetype, e.aggregateid, e.type, EVENT_TYPES[e.type].topic.value,
             e.data.model_dump_json())
            for e in events
        ],
    )
