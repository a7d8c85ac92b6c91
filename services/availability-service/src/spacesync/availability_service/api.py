"""HTTP routes: public slot views (available or not, nothing personal) and the admin view (each slot's state and
why), for one space or every space of a location, over local days of the location."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from spacesync.availability_service import store
from spacesync.availability_service.domain import RangeError, Slot, SlotState, check_range, day_bounds, slot_grid
from spacesync.common.db import Database
from spacesync.common.db.pool import Conn
from spacesync.common.http import Problem
from spacesync.common.http.problems import PROBLEM_RESPONSES

StartDay = Annotated[date, Query(description="First local day of the location (YYYY-MM-DD)")]
EndDay = Annotated[date | None, Query(description="Last local day, inclusive (default: the start day)")]


class PublicSlot(BaseModel):
    start: datetime
    end: datetime
    available: bool


class SlotBooking(BaseModel):
    source: str = Field(description="ce_source of the booking's producer (booking ids are unique per source)")
    booking_id: str
    patron: str = Field(description="The patron's name")
    public_nickname: str | None


class AdminSlot(BaseModel):
    start: datetime
    end: datetime
    state: SlotState
    reason: str | None = Field(description="booked, 'BUSY in Outlook', why it is closed; None when available")
    booking: SlotBooking | None = None
    organizer: str | None = Field(default=None, description="Of the Outlook meeting, when Exchange gives it")


SlotT = TypeVar("SlotT", PublicSlot, AdminSlot)


class SpaceSlots(BaseModel, Generic[SlotT]):
    space_id: str
    name: str
    slots: list[SlotT]


class SpaceView(BaseModel, Generic[SlotT]):
    space_id: str
    location_id: str
    timezone: str = Field(description="The location's IANA zone: days are its local days; times are UTC")
    start: date
    end: date
    slots: list[SlotT]


class LocationView(BaseModel, Generic[SlotT]):
    location_id: str
    timezone: str
    start: date
    end: date
    spaces: list[SpaceSlots[SlotT]]


def public_slot(slot: Slot) -> dict[str, Any]:
    return {"start": slot.start, "end": slot.end, "available": slot.available}


def admin_slot(slot: Slot) -> dict[str, Any]:
    booking = slot.booking
    return {"start": slot.start, "end": slot.end, "state": slot.state, "reason": slot.reason,
            "organizer": slot.organizer,
            "booking": None if booking is None else {"source": booking.source, "booking_id": booking.booking_id,
                                                     "patron": booking.patron, "public_nickname": booking.nickname}}


@dataclass
class SlotViews:
    db: Database
    max_days: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def days(self, start: date, end: date | None) -> tuple[date, date]:
        last = end or start
        try:
            check_range(start, last, self.max_days)
        except RangeError as error:
            raise Problem(422, "Invalid date range", str(error), type="/problems/invalid-range") from None
        return start, last

    async def space(self, space_id: str, first: date, last: date, render: Callable[[Slot], dict[str, Any]],
                    ) -> dict[str, Any]:
        async with self.db.acquire() as conn:
            row = await store.space(conn, space_id)
            if row is None:
                raise Problem(404, "Not Found", f"No space {space_id!r} is known (or not its location yet).")
            spaces = await self._grids(conn, [row], first, last, render)
        return {"space_id": space_id, "location_id": row.location_id, "timezone": row.layout.timezone,
                "start": first, "end": last, "slots": spaces[0]["slots"]}

    async def location(self, location_id: str, first: date, last: date,
                       render: Callable[[Slot], dict[str, Any]]) -> dict[str, Any]:
        async with self.db.acquire() as conn:
            timezone = await store.location_timezone(conn, location_id)
            if timezone is None:
                raise Problem(404, "Not Found", f"No location {location_id!r} is known.")
            rows = await store.spaces_of_location(conn, location_id)
            spaces = await self._grids(conn, rows, first, last, render)
        return {"location_id": location_id, "timezone": timezone, "start": first, "end": last, "spaces": spaces}

    async def _grids(self, conn: Conn, rows: list[store.SpaceRow], first: date, last: date,
                     render: Callable[[Slot], dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        # Spaces of one location share its zone: one range, two queries for them all.
        start, end = day_bounds(rows[0].layout.timezone, first, last)
        ids = [row.layout.space_id for row in rows]
        booked = await store.booked_between(conn, ids, start, end)
        busy = await store.busy_between(conn, ids, start, end)
        now = self.clock()
        return [{"space_id": row.layout.space_id, "name": row.layout.name,
                 "slots": [render(slot) for slot in slot_grid(
                     row.layout, first, last, booked.get(row.layout.space_id, []),
                     busy.get(row.layout.space_id, []), now)]}
                for row in rows]


def public_router(views: SlotViews) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["public"],
                       responses={k: PROBLEM_RESPONSES[k] for k in (404, 422)})

    @router.get("/spaces/{space_id}/slots", summary="A space's slots on local days: available or not",
                response_model=SpaceView[PublicSlot])
    async def space_slots(space_id: str, start: StartDay, end: EndDay = None) -> dict[str, Any]:
        first, last = views.days(start, end)
        return await views.space(space_id, first, last, public_slot)

    @router.get("/locations/{location_id}/slots", summary="Every space of a location: slots on local days",
                response_model=LocationView[PublicSlot])
    async def location_slots(location_id: str, start: StartDay, end: EndDay = None) -> dict[str, Any]:
        first, last = views.days(start, end)
        return await views.location(location_id, first, last, public_slot)

    return router


def admin_router(views: SlotViews, require_admin: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                       responses={k: PROBLEM_RESPONSES[k] for k in (401, 404, 422)})

    @router.get("/spaces/{space_id}/slots", response_model=SpaceView[AdminSlot],
                summary="A space's slots with state and reason: booked (by whom), 'BUSY in Outlook', closed")
    async def space_slots(space_id: str, start: StartDay, end: EndDay = None) -> dict[str, Any]:
        first, last = views.days(start, end)
        return await views.space(space_id, first, last, admin_slot)

    @router.get("/locations/{location_id}/slots", summary="Every space of a location: slots with state and reason",
                response_model=LocationView[AdminSlot])
    async def location_slots(location_id: str, start: StartDay, end: EndDay = None) -> dict[str, Any]:
        first, last = views.days(start, end)
        return await views.location(location_id, first, last, admin_slot)

    return router
