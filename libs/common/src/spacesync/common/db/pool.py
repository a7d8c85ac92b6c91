"""asyncpg pool whose connections live in one service's schema (search_path), with JSON codecs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson

# asyncpg's classes are generic in its stubs only.
if TYPE_CHECKING:
    Conn: TypeAlias = asyncpg.Connection[Any]
else:
    Conn = asyncpg.Connection

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Schema names come from settings; only plain lower-case identifiers are accepted."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid schema name {name!r}: use lower-case letters, digits and _")
    return f'"{name}"'


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(json_type, schema="pg_catalog", format="text",
                                  encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads)


async def connect(dsn: str, schema: str, *, settings: Mapping[str, str] | None = None) -> asyncpg.Connection[Any]:
    """A single connection outside the pool (for LISTEN and session advisory locks); `settings`: more session
    settings."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, server_settings={"search_path": f"{quote_ident(schema)},public", **(settings or {})})
    await _init_connection(conn)
    return conn


async def _keep_session(conn: Conn) -> None:
    """Pooled connections never change session state (search_path is set when they connect; no SET, LISTEN or
    session locks), so the default RESET ALL round trip on every release is skipped. asyncpg still rolls back
    a transaction left open."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"search_path": f"{quote_ident(schema)},public"},
        command_timeout=30,
    )
    assert pool is not None
    return pool


class Database:
    """A service's pool, opened in the app's lifespan; routes and handlers hold this from the start."""

    def __init__(self, dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self.schema = schema
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool[Any] | None = None

    async def open(self) -> None:
        self._pool = await create_pool(self.dsn, self.schema, min_size=self._sizes[0], max_size=self._sizes[1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError("the database is not open yet (the app has not started)")
        return self._pool

    def acquire(self) -> Any:
        """`async with db.acquire() as conn:` a pooled connection."""
        return self.pool.acquire()

    async def ping(self) -> None:
        """A readiness check: raises unless a pooled connection answers."""
        async with self.acquire() as conn:
            await conn.fetchval("SELECT 1")
