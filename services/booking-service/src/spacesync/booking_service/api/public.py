"""Public API for patrons, panels and other services: spaces and bookings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Response, status

from spacesync.booking_service import catalog_store
from spacesync.booking_service.api.models import BookingCreate, BookingPatch, BookingView, PublicSpace
from spacesync.booking_service.bookings import (
    BookingClosed,
    BookingNotFound,
    BookingService,
    InvalidBooking,
    SlotConflict,
    VersionMismatch,
)
from spacesync.common.db import Database
from spacesync.common.http import FieldError, Problem
from spacesync.common.http.problems import PROBLEM_RESPONSES

IfMatch = Annotated[str | None, Header(description='Optional: the ETag of the version you changed, e.g. "3"')]


def public_router(db: Database, bookings: BookingService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["public"], responses=PROBLEM_RESPONSES)

    @router.get("/spaces", response_model=list[PublicSpace], summary="Bookable spaces")
    async def list_spaces(location_id: UUID | None = None) -> list[PublicSpace]:
        async with db.acquire() as conn:
            rows = await catalog_store.public_spaces(conn, location_id)
        return [PublicSpace.model_validate(dict(row)) for row in rows]

    @router.post("/bookings", status_code=status.HTTP_201_CREATED, response_model=BookingView,
                 summary="Book one or more date/time slots")
    async def create_booking(body: BookingCreate, response: Response) -> BookingView:
        view = await _answer(response, bookings.create(body))
        response.headers["Location"] = f"/v1/bookings/{view.id}"
        return view

    @router.get("/bookings/{booking_id}", response_model=BookingView,
                summary="Booking details, with each slot's Outlook/Exchange Sync ID")
    async def get_booking(booking_id: UUID, response: Response) -> BookingView:
        return await _answer(response, bookings.get(booking_id))

    @router.patch("/bookings/{booking_id}", response_model=BookingView,
                  summary="Change patron details, nickname, or the slots (move, add, remove)")
    async def change_booking(booking_id: UUID, body: BookingPatch, response: Response,
                             if_match: IfMatch = None) -> BookingView:
        return await _answer(response, bookings.change(booking_id, body, _version(if_match)))

    @router.post("/bookings/{booking_id}/cancel", response_model=BookingView,
                 summary="Cancel the whole booking")
    async def cancel_booking(booking_id: UUID, response: Response, if_match: IfMatch = None) -> BookingView:
        return await _answer(response, bookings.cancel(booking_id, _version(if_match)))

    @router.post("/bookings/{booking_id}/slots/{slot_id}/cancel", response_model=BookingView,
                 summary="Cancel one date/time of a booking")
    async def cancel_slot(booking_id: UUID, slot_id: UUID, response: Response,
                          if_match: IfMatch = None) -> BookingView:
        return await _answer(response, bookings.cancel(booking_id, _version(if_match), slot_id))

    return router


async def _answer(response: Response, outcome: Awaitable[BookingView]) -> BookingView:
    """The booking (with its version as ETag), or the outcome as problem+json."""
    async with _problems():
        view = await outcome
    response.headers["ETag"] = f'"{view.version}"'
    return view


def _version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise Problem(400, "Bad Request", f"If-Match must be an ETag such as \"3\", not {if_match!r}")
    return int(value)


@asynccontextmanager
async def _problems() -> AsyncIterator[None]:
    """Booking outcomes as problem+json."""
    try:
        yield
    except BookingNotFound:
        raise Problem(404, "Not Found", "No such booking (or slot).") from None
    except InvalidBooking as error:
        raise Problem(422, "Invalid booking", str(error), type="/problems/invalid-booking",
                      errors=[FieldError(field=f"body.{v.field}", reason=v.reason)
                              for v in error.violations]) from None
    except SlotConflict as error:
        times = [f"{c.space_name} {c.start:%Y-%m-%dT%H:%MZ}-{c.end:%H:%MZ}" for c in error.conflicts]
        detail = ("Already booked: " + ", ".join(times)) if times else "The requested time is already booked."
        raise Problem(409, "Slot already booked", detail, type="/problems/slot-conflict", conflicts=[
            {"space_id": str(c.space_id), "start": c.start.isoformat(), "end": c.end.isoformat()}
            for c in error.conflicts]) from None
    except BookingClosed:
        raise Problem(409, "Booking cancelled", "The booking is cancelled and can no longer change.",
                      type="/problems/booking-cancelled") from None
    except VersionMismatch as error:
        raise Problem(412, "Precondition Failed",
                      f"The booking changed meanwhile; it is now at version {error.current}.",
                      headers={"ETag": f'"{error.current}"'}) from None
