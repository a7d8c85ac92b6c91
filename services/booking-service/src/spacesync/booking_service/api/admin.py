"""Admin API: locations, categories and spaces (bearer token). Every change emits catalog.events."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, status

from spacesync.booking_service import catalog_store as store
from spacesync.booking_service.api.models import (
    CategoryCreate,
    CategoryPatch,
    LocationCreate,
    LocationPatch,
    LocationView,
    SpaceCreate,
    SpacePatch,
)
from spacesync.common.db import Database
from spacesync.common.events.catalog import CategoryState, SpaceState
from spacesync.common.http import FieldError, Problem
from spacesync.common.http.problems import PROBLEM_RESPONSES


def admin_router(db: Database, require_admin: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                       responses=PROBLEM_RESPONSES)

    async def create(kind: str, table: str, values: dict[str, Any]) -> asyncpg.Record:
        async with db.acquire() as conn, conn.transaction():
            row = await store.insert(conn, table, values)
            await store.emit(conn, kind, row)
            return row

    async def change(kind: str, table: str, row_id: UUID, changes: dict[str, Any]) -> asyncpg.Record:
        async with db.acquire() as conn, conn.transaction():
            if not changes:
                row = await store.fetch_one(conn, table, row_id)
            else:
                row = await store.update(conn, table, row_id, changes)
                if row is not None:
                    await store.emit(conn, kind, row)
            if row is None:
                raise Problem(404, "Not Found", f"No {kind} {row_id}.")
            return row

    async def one(kind: str, table: str, row_id: UUID) -> asyncpg.Record:
        async with db.acquire() as conn:
            row = await store.fetch_one(conn, table, row_id)
        if row is None:
            raise Problem(404, "Not Found", f"No {kind} {row_id}.")
        return row

    async def parent(table: str, kind: str, field: str, row_id: UUID) -> asyncpg.Record:
        async with db.acquire() as conn:
            row = await store.fetch_one(conn, table, row_id)
        if row is None:
            raise Problem(422, "Invalid request", f"{field}: no {kind} {row_id}", type="/problems/invalid-request",
                          errors=[FieldError(field=f"body.{field}", reason=f"no {kind} {row_id}")])
        return row

    @router.post("/locations", status_code=status.HTTP_201_CREATED, response_model=LocationView)
    async def create_location(body: LocationCreate) -> LocationView:
        return store.location_view(await create("location", "locations", body.model_dump()))

    @router.get("/locations", response_model=list[LocationView])
    async def list_locations() -> list[LocationView]:
        async with db.acquire() as conn:
            return [store.location_view(r) for r in await store.fetch_all(conn, "locations")]

    @router.get("/locations/{location_id}", response_model=LocationView)
    async def get_location(location_id: UUID) -> LocationView:
        return store.location_view(await one("location", "locations", location_id))

    @router.patch("/locations/{location_id}", response_model=LocationView)
    async def patch_location(location_id: UUID, body: LocationPatch) -> LocationView:
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        return store.location_view(await change("location", "locations", location_id, changes))

    @router.post("/categories", status_code=status.HTTP_201_CREATED, response_model=CategoryState)
    async def create_category(body: CategoryCreate) -> CategoryState:
        await parent("locations", "location", "location_id", body.location_id)
        return store.category_state(await create("category", "categories", body.model_dump()))

    @router.get("/categories", response_model=list[CategoryState])
    async def list_categories(location_id: UUID | None = None) -> list[CategoryState]:
        async with db.acquire() as conn:
            return [store.category_state(r) for r in await store.fetch_all(conn, "categories", location_id)]

    @router.patch("/categories/{category_id}", response_model=CategoryState)
    async def patch_category(category_id: UUID, body: CategoryPatch) -> CategoryState:
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        return store.category_state(await change("category", "categories", category_id, changes))

    @router.post("/spaces", status_code=status.HTTP_201_CREATED, response_model=SpaceState)
    async def create_space(body: SpaceCreate) -> SpaceState:
        category = await parent("categories", "category", "category_id", body.category_id)
        values = {**body.model_dump(mode="json"), "category_id": body.category_id,
                  "location_id": category["location_id"]}
        return store.space_state(await create("space", "spaces", values))

    @router.get("/spaces", response_model=list[SpaceState])
    async def list_spaces(location_id: UUID | None = None) -> list[SpaceState]:
        async with db.acquire() as conn:
            return [store.space_state(r) for r in await store.fetch_all(conn, "spaces", location_id)]

    @router.get("/spaces/{space_id}", response_model=SpaceState)
    async def get_space(space_id: UUID) -> SpaceState:
        return store.space_state(await one("space", "spaces", space_id))

    @router.patch("/spaces/{space_id}", response_model=SpaceState)
    async def patch_space(space_id: UUID, body: SpacePatch) -> SpaceState:
        changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        current = await one("space", "spaces", space_id)
        if body.category_id is not None:
            category = await parent("categories", "category", "category_id", body.category_id)
            changes.update(category_id=body.category_id, location_id=category["location_id"])
            if current["exchange_resource"] and category["location_id"] != current["location_id"]:
                # The pairing was tested with this location's Exchange connection.
                raise Problem(409, "Space is paired", "The space is paired with the Exchange resource "
                              f"{current['exchange_resource']}: disconnect it before moving it to another location.",
                              type="/problems/space-paired")
        slot = changes.get("slot_minutes", current["slot_minutes"])
        longest = changes.get("max_booking_minutes", current["max_booking_minutes"])
        if longest < slot or longest % slot:
            raise Problem(422, "Invalid request", "max_booking_minutes must be a multiple of slot_minutes",
                          type="/problems/invalid-request",
                          errors=[FieldError(field="body.max_booking_minutes",
                                             reason="must be a multiple of slot_minutes")])
        return store.space_state(await change("space", "spaces", space_id, changes))

    return router
