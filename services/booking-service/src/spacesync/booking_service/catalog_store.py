"""Postgres adapter for locations, categories and spaces; every change emits catalog.events via the outbox."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from spacesync.booking_service.api.models import ExchangeSettingsView, LocationView
from spacesync.booking_service.domain import SpaceRules
from spacesync.common.db.pool import Conn
from spacesync.common.events.catalog import (
    CategoryState,
    ExchangeConnection,
    LocationState,
    OpeningHours,
    SpaceState,
)
from spacesync.common.exchange import service_endpoint
from spacesync.common.outbox import OutboxEvent, add_to_outbox


def location_state(row: asyncpg.Record) -> LocationState:
    return LocationState(location_id=str(row["id"]), version=row["version"], name=row["name"],
                         timezone=row["timezone"], active=row["active"], exchange=exchange_connection(row),
                         updated_at=row["updated_at"])


def exchange_connection(row: asyncpg.Record) -> ExchangeConnection | None:
    """The location's Exchange settings (password still encrypted); None when it is not connected."""
    if row["exchange_server"] is None:
        return None
    return ExchangeConnection(
        server=row["exchange_server"], username=row["exchange_username"],
        password_encrypted=row["exchange_password_encrypted"], auth_type=row["exchange_auth_type"],
        access=row["exchange_access"], title_rule=row["exchange_title_rule"],
        populate_organizer=row["exchange_populate_organizer"],
        populate_organizer_since=row["exchange_populate_organizer_since"], verified_at=row["exchange_verified_at"])


def location_view(row: asyncpg.Record) -> LocationView:
    """The location for the admin API: its Exchange settings without the (encrypted) password."""
    settings = exchange_connection(row)
    return LocationView(location_id=row["id"], version=row["version"], name=row["name"], timezone=row["timezone"],
                        active=row["active"], updated_at=row["updated_at"],
                        exchange=settings_view(row["id"], settings) if settings else None)


def settings_view(location_id: UUID, settings: ExchangeConnection) -> ExchangeSettingsView:
    return ExchangeSettingsView(
        location_id=location_id, server=settings.server, endpoint=service_endpoint(settings.server),
        username=settings.username, password_set=bool(settings.password_encrypted), auth_type=settings.auth_type,
        access=settings.access, title_rule=settings.title_rule, populate_organizer=settings.populate_organizer,
        populate_organizer_since=settings.populate_organizer_since, verified_at=settings.verified_at)


def category_state(row: asyncpg.Record) -> CategoryState:
    return CategoryState(category_id=str(row["id"]), location_id=str(row["location_id"]),
                         version=row["version"], name=row["name"], public_nicknames=row["public_nicknames"],
                         active=row["active"], updated_at=row["updated_at"])


def space_state(row: asyncpg.Record) -> SpaceState:
    return SpaceState(space_id=str(row["id"]), location_id=str(row["location_id"]),
                      category_id=str(row["category_id"]), version=row["version"], name=row["name"],
                      slot_minutes=row["slot_minutes"], max_booking_minutes=row["max_booking_minutes"],
                      opening_hours=row["opening_hours"], active=row["active"],
                      exchange_resource=row["exchange_resource"], paired_at=row["paired_at"],
                      updated_at=row["updated_at"])


async def insert(conn: Conn, table: str, values: dict[str, Any]) -> asyncpg.Record:
    values = {"id": uuid.uuid4(), **values}
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    row = await conn.fetchrow(f"INSERT INTO {table} ({columns}) VALUES ({params}) RETURNING *", *values.values())
    assert isinstance(row, asyncpg.Record)
    return row


async def update(conn: Conn, table: str, row_id: UUID, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Applies the given columns, bumps the version; None when the row does not exist."""
    assignments = [f"{column} = ${i}" for i, column in enumerate(changes, start=2)]
    assignments += ["version = version + 1", "updated_at = now()"]
    return await conn.fetchrow(
        f"UPDATE {table} SET {', '.join(assignments)} WHERE id = $1 RETURNING *", row_id, *changes.values())


async def emit(conn: Conn, kind: str, row: asyncpg.Record, event_type: str | None = None) -> None:
    """`<kind>.upserted` unless another event type of the aggregate is given (space.paired, space.unpaired)."""
    state = {"location": location_state, "category": category_state, "space": space_state}[kind](row)
    await add_to_outbox(conn, OutboxEvent(event_type or f"{kind}.upserted", kind, state))


async def fetch_all(conn: Conn, table: str, location_id: UUID | None = None) -> list[asyncpg.Record]:
    if location_id is None:
        return await conn.fetch(f"SELECT * FROM {table} ORDER BY name, id")
    column = "id" if table == "locations" else "location_id"
    return await conn.fetch(f"SELECT * FROM {table} WHERE {column} = $1 ORDER BY name, id", location_id)


async def fetch_one(conn: Conn, table: str, row_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", row_id)


SPACE_VIEW = """
    SELECT s.id, s.name, s.location_id, l.name AS location_name, s.category_id, c.name AS category_name,
           l.timezone, s.slot_minutes, s.max_booking_minutes, s.opening_hours, c.public_nicknames,
           (s.active AND c.active AND l.active) AS bookable
      FROM spaces s JOIN categories c ON c.id = s.category_id JOIN locations l ON l.id = s.location_id
"""


async def public_spaces(conn: Conn, location_id: UUID | None) -> list[asyncpg.Record]:
    if location_id is None:
        return await conn.fetch(SPACE_VIEW + " WHERE s.active AND c.active AND l.active ORDER BY s.name, s.id")
    return await conn.fetch(
        SPACE_VIEW + " WHERE s.active AND c.active AND l.active AND s.location_id = $1 ORDER BY s.name, s.id",
        location_id)


async def space_rules(conn: Conn, space_ids: set[UUID]) -> dict[UUID, SpaceRules]:
    rows = await conn.fetch(SPACE_VIEW + " WHERE s.id = ANY($1::uuid[])", list(space_ids))
    return {
        row["id"]: SpaceRules(
            space_id=row["id"], name=row["name"], timezone=row["timezone"], slot_minutes=row["slot_minutes"],
            max_booking_minutes=row["max_booking_minutes"],
            opening_hours=OpeningHours.model_validate(row["opening_hours"]),
            bookable=row["bookable"], public_nicknames=row["public_nicknames"])
        for row in rows
    }
