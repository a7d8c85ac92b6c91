"""Forward-only SQL migrations, applied in order into one service schema, once each.

Each migration runs in its own transaction with search_path set to the schema, so the SQL names tables
without a schema. An advisory lock lets several replicas start at once safely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from spacesync.common.db.pool import connect, quote_ident

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def load_migrations(package: str, prefix: str) -> list[Migration]:
    """The *.sql files of a package's `migrations` folder, sorted by name, named `prefix/file`."""
    folder = resources.files(package).joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f"{prefix}/{f.name.removesuffix('.sql')}", f.read_text("utf-8")) for f in files]


def common_migrations() -> list[Migration]:
    """Tables every service with an outbox or an event fold needs."""
    return load_migrations("spacesync.common.db", "common")


async def migrate(conn: asyncpg.Connection[Any], schema: str, migrations: list[Migration]) -> list[str]:
    """Applies the migrations not applied yet; returns their names."""
    quoted = quote_ident(schema)
    # One migrator per schema at a time (replicas start together); the lock also covers CREATE SCHEMA.
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        applied: list[str] = []
        for migration in migrations:
            if await conn.fetchval(f"SELECT 1 FROM {quoted}.schema_migrations WHERE name = $1", migration.name):
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path = {quoted}, public")
                await conn.execute(migration.sql)
                await conn.execute(f"INSERT INTO {quoted}.schema_migrations (name) VALUES ($1)", migration.name)
            applied.append(migration.name)
            log.info("migration applied", extra={"schema": schema, "migration": migration.name})
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")


async def migrate_service(dsn: str, schema: str, package: str, prefix: str) -> list[str]:
    """At a service's start: the common tables and the package's own migrations, on a connection of its own."""
    conn = await connect(dsn, schema)
    try:
        return await migrate(conn, schema, common_migrations() + load_migrations(package, prefix))
    finally:
        await conn.close()
