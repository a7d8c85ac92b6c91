"""Postgres: asyncpg pool per service schema and SQL migrations."""

from spacesync.common.db.migrate import Migration, common_migrations, load_migrations, migrate, migrate_service
from spacesync.common.db.pool import Database, create_pool, quote_ident

__all__ = ["Database", "Migration", "common_migrations", "create_pool", "load_migrations", "migrate",
           "migrate_service", "quote_ident"]
